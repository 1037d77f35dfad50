"""The run's record: every candidate as a trial of one Optuna study in an RDB storage.

SQLite in the run directory by default; any Optuna storage URL (e.g. PostgreSQL for many
machines) works the same. A candidate becomes a RUNNING trial before it is evaluated (so a
killed run leaves a trace) and COMPLETE or FAIL after, with params, every metric, the reward,
timings and the error as trial attributes. The study's value is the reward.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from automc.search.candidate import COMPLETE, FAILED, RUNNING, Candidate
from automc.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)

INTERRUPTED = "interrupted by a stopped run; its params are proposed again"


def storage_url(run_dir: Path, storage: str | None) -> str:
    return storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


class Store:
    """Append-only record of candidates, backed by an Optuna study."""

    def __init__(self, url: str, study_name: str) -> None:
        try:
            self.study = optuna.create_study(
                storage=url,
                study_name=study_name,
                direction="maximize",
                sampler=optuna.samplers.RandomSampler(),  # params are always enqueued
                load_if_exists=True,
            )
        except (ImportError, ModuleNotFoundError) as exc:
            raise UserError(f"storage {url.split(':', 1)[0]!r} needs a driver that is not installed ({exc}): pip install 'automc[postgres]'") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors vary
            raise UserError(f"cannot open storage {url!r}: {str(exc).splitlines()[0]}") from None
        self.url = url

    def begin(self, params: Mapping[str, Any], distributions: Mapping[str, Any]) -> int:
        """Record a RUNNING trial with ``params``; returns its number."""
        self.study.enqueue_trial(dict(params), skip_if_exists=False)
        trial = self.study.ask(dict(distributions))
        return int(trial.number)

    def finish(self, candidate: Candidate) -> None:
        trial_id = self._trial_id(candidate.number)
        storage = self.study._storage
        for key, value in (("metrics", dict(candidate.metrics)), ("reward", candidate.reward), ("timings", dict(candidate.timings)), ("error", candidate.error), ("automc_params", dict(candidate.params))):
            storage.set_trial_user_attr(trial_id, key, json.loads(json.dumps(value, default=float)))
        if candidate.ok and candidate.reward is not None and math.isfinite(candidate.reward):
            self.study.tell(candidate.number, candidate.reward)
        else:
            self.study.tell(candidate.number, state=optuna.trial.TrialState.FAIL)

    def _trial_id(self, number: int) -> int:
        return int(self.study._storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number))

    def mark_interrupted(self) -> list[dict[str, Any]]:
        """Fail trials a stopped run left unfinished; returns their params (to propose again).

        That is RUNNING trials (killed mid-evaluation) and WAITING ones: :meth:`begin`
        enqueues, then asks, and a kill between the two leaves a WAITING trial that the next
        ``ask`` would otherwise pop — pairing its params with a different candidate.
        """
        unfinished: dict[int, dict[str, Any]] = {}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            popped = self.study.ask()  # Optuna pops the oldest WAITING trial: this one
            assert popped.number == t.number, (popped.number, t.number)
            fixed = dict(t.system_attrs.get("fixed_params", {}))
            self.study._storage.set_trial_user_attr(popped._trial_id, "automc_params", fixed)
            self._fail_interrupted(popped._trial_id, popped.number)
            unfinished[t.number] = fixed
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.number not in unfinished:
                self._fail_interrupted(t._trial_id, t.number)
                unfinished[t.number] = dict(t.params)
        return [unfinished[n] for n in sorted(unfinished)]

    def _fail_interrupted(self, trial_id: int, number: int) -> None:
        self.study._storage.set_trial_user_attr(trial_id, "error", INTERRUPTED)
        self.study._storage.set_trial_user_attr(trial_id, "interrupted", True)
        self.study.tell(number, state=optuna.trial.TrialState.FAIL)

    def candidates(self, *, include_interrupted: bool = False) -> list[Candidate]:
        """Every finished candidate, in number order."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.RUNNING:
                out.append(Candidate(t.number, dict(t.params), state=RUNNING))
                continue
            if t.user_attrs.get("interrupted") and not include_interrupted:
                continue
            if t.state not in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL):
                continue
            out.append(
                Candidate(
                    number=t.number,
                    params=t.user_attrs.get("automc_params", dict(t.params)),
                    metrics=t.user_attrs.get("metrics", {}),
                    reward=t.user_attrs.get("reward"),
                    state=COMPLETE if t.state == optuna.trial.TrialState.COMPLETE else FAILED,
                    error=t.user_attrs.get("error"),
                    timings=t.user_attrs.get("timings", {}),
                )
            )
        return out

    def set_meta(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, json.loads(json.dumps(value, default=str)))

    def meta(self) -> dict[str, Any]:
        return dict(self.study.user_attrs)
