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
from typing import Any

import optuna

from automc.compress.spaces import Choice, Float, Int, SearchSpace
from automc.search.candidate import COMPLETE, FAILED, RUNNING, Candidate
from automc.errors import UserError

optuna.logging.set_verbosity(optuna.logging.WARNING)

INTERRUPTED = "interrupted by a stopped run; its params are proposed again"


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
        self._open: dict[int, optuna.trial.Trial] = {}  # candidates begun by this process

    def next_number(self) -> int:
        """The number the next :meth:`begin` records (the run directory has one writer)."""
        return len(self.study.get_trials(deepcopy=False))

    def begin(self, number: int, params: Mapping[str, Any], distributions: Mapping[str, Any]) -> None:
        """Record candidate ``number`` as a RUNNING trial with ``params``.

        The params are enqueued and then asked for, which is how Optuna records given values
        as the trial's params; the Trial object is kept for :meth:`finish`.
        """
        self.study.enqueue_trial(dict(params), skip_if_exists=False)
        trial = self.study.ask(dict(distributions))
        if trial.number != number:
            raise RuntimeError(f"store {self.url}: expected trial {number}, Optuna gave {trial.number}; another process writes to this study")
        self._open[number] = trial

    def finish(self, candidate: Candidate) -> None:
        """Record the outcome of a candidate :meth:`begin` started in this process."""
        trial = self._open.pop(candidate.number)
        for key, value in (("metrics", dict(candidate.metrics)), ("reward", candidate.reward), ("timings", dict(candidate.timings)), ("error", candidate.error), ("automc_params", dict(candidate.params))):
            trial.set_user_attr(key, json.loads(json.dumps(value, default=float)))
        if candidate.ok and candidate.reward is not None and math.isfinite(candidate.reward):
            self.study.tell(trial, candidate.reward)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def mark_interrupted(self, distributions: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Fail trials a stopped run left unfinished; returns their params (to propose again).

        That is RUNNING trials (killed mid-evaluation) and WAITING ones: :meth:`begin`
        enqueues, then asks, and a kill between the two leaves a WAITING trial that the next
        ``ask`` would otherwise pop — pairing its params with a different candidate. Their
        numbers are kept in the study's ``interrupted`` attribute.
        """
        unfinished: dict[int, dict[str, Any]] = {}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            popped = self.study.ask(dict(distributions))  # Optuna pops the oldest WAITING trial: this one
            if popped.number != t.number:
                raise RuntimeError(f"store {self.url}: popped trial {popped.number} instead of waiting trial {t.number}")
            popped.set_user_attr("automc_params", dict(popped.params))
            unfinished[t.number] = dict(popped.params)
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            unfinished.setdefault(t.number, dict(t.params))
        if unfinished:
            self.study.set_user_attr("interrupted", sorted(self.interrupted() | set(unfinished)))
            for number in sorted(unfinished):
                self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        return [unfinished[n] for n in sorted(unfinished)]

    def interrupted(self) -> set[int]:
        """Numbers of the trials stopped runs left unfinished (failed, then proposed again)."""
        legacy = {t.number for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("interrupted")}
        return set(self.study.user_attrs.get("interrupted", [])) | legacy

    def counts(self) -> dict[str, int]:
        """Trials by what happened to them (interrupted ones are not failures)."""
        interrupted = self.interrupted()
        trials = self.study.get_trials(deepcopy=False)
        state = optuna.trial.TrialState
        return {
            "finished": sum(1 for t in trials if t.state == state.COMPLETE),
            "failed": sum(1 for t in trials if t.state == state.FAIL and t.number not in interrupted),
            "running": sum(1 for t in trials if t.state == state.RUNNING),
            "interrupted": len(interrupted),
        }

    def candidates(self, *, include_interrupted: bool = False) -> list[Candidate]:
        """Every finished candidate, in number order."""
        interrupted = self.interrupted()
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state == optuna.trial.TrialState.RUNNING:
                out.append(Candidate(t.number, dict(t.params), state=RUNNING))
                continue
            if t.number in interrupted and not include_interrupted:
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
                    error=INTERRUPTED if t.number in interrupted else t.user_attrs.get("error"),
                    timings=t.user_attrs.get("timings", {}),
                )
            )
        return out

    def set_meta(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, json.loads(json.dumps(value, default=str)))

    def meta(self) -> dict[str, Any]:
        return dict(self.study.user_attrs)

    @property
    def name(self) -> str:
        return self.study.study_name


def space_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions of a space's dimensions (how the store records params)."""
    out: dict[str, Any] = {}
    for name, d in space.dimensions.items():
        if isinstance(d, Float):
            out[name] = optuna.distributions.FloatDistribution(d.low, d.high)
        elif isinstance(d, Int):
            out[name] = optuna.distributions.IntDistribution(d.low, d.high)
        elif isinstance(d, Choice):
            out[name] = optuna.distributions.CategoricalDistribution(list(d.values))
    return out
