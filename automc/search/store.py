"""The run's record: every candidate as a trial of one Optuna study in an RDB storage.

SQLite in the run directory by default; any Optuna storage URL (e.g. PostgreSQL for many
machines) works the same. A candidate becomes a RUNNING trial before it is evaluated (so a
killed run leaves a trace) and COMPLETE, FAIL or PRUNED after. Its outcome (params as
evaluated, every metric, the reward, timings, the error) is one trial attribute, ``outcome``,
written in one transaction before the trial's state: a kill between the two leaves a RUNNING
trial whose outcome is known, which :meth:`Store.recover` completes instead of evaluating it
again. The study's value is the reward.

A proposal equal to a finished candidate (see :meth:`SearchSpace.canonical`) is not evaluated
again: it is recorded as a PRUNED trial whose outcome names the candidate it repeats
(``duplicate_of``) and costs no budget.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import optuna

from automc.compress.spaces import Choice, Float, Int, SearchSpace
from automc.errors import UserError, notice
from automc.search.candidate import COMPLETE, FAILED, RUNNING, Candidate
from automc.search.outcome import legacy_outcome, outcome_record, verdict
from automc.search.trial_rows import TrialWriter, backend_of, use_wal

optuna.logging.set_verbosity(optuna.logging.WARNING)

INTERRUPTED = "interrupted by a stopped run; its params are proposed again"
_STATE = optuna.trial.TrialState


@contextlib.contextmanager
def _writing(url: str) -> Iterator[None]:
    """Turn the database's "disk full" / "read-only" into the OSError they are (the CLI says
    them in one line; what was recorded before stays whole: each write is a transaction)."""
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except (OperationalError, optuna.exceptions.StorageInternalError) as exc:
        cause = exc if isinstance(exc, OperationalError) else exc.__cause__  # Optuna wraps SQLAlchemy's
        if not isinstance(cause, OperationalError):
            raise
        text = str(cause.orig if cause.orig is not None else cause).lower()
        where = url.split("///", 1)[-1]
        if "disk is full" in text or "disk i/o error" in text:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where) from exc
        if "readonly database" in text or "read-only" in text:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), where) from exc
        raise


class Store:
    """Append-only record of candidates, backed by an Optuna study.

    ``readonly`` opens an existing study without creating anything (``status``, ``report``,
    ``export``); see :func:`automc.search.snapshot.open_store` for read-only folders.
    """

    def __init__(self, url: str, study_name: str, *, readonly: bool = False, pruner: optuna.pruners.BasePruner | None = None) -> None:
        try:
            if readonly:
                self.study = optuna.load_study(storage=url, study_name=study_name, sampler=optuna.samplers.RandomSampler())
            else:
                self.study = optuna.create_study(
                    storage=url,
                    study_name=study_name,
                    direction="maximize",
                    sampler=optuna.samplers.RandomSampler(),  # never samples: begin writes the params given
                    pruner=pruner,  # decides promotions between fidelities (report)
                    load_if_exists=True,
                )
        except ImportError as exc:
            raise _driver_missing(url, exc) from None
        except KeyError:
            raise UserError(f"storage {url!r} has no study {study_name!r}: the search has not recorded anything yet") from None
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy/driver errors vary
            text = str(exc).splitlines()[0]
            fix = "; the folder is read-only or full: pass a writable --run-dir" if "readonly" in text or "disk" in text or "unable to open" in text else ""
            raise UserError(f"cannot open storage {url!r}: {text}{fix}") from None
        self.url = url
        self._backend = backend_of(self.study._storage)  # noqa: SLF001 - Optuna exposes no public handle to a study's storage
        self._writer: TrialWriter | None = None
        if not readonly:
            with _writing(url):
                use_wal(self._backend)
            self._writer = TrialWriter(self._backend, self.study._study_id)  # noqa: SLF001
        self._open: dict[int, int] = {}  # candidates begun by this process → their trial ids
        self._trials: dict[int, optuna.trial.Trial] = {}  # their Trial objects, made when a pruner needs one
        self._retries: dict[int, list[str]] = {}  # their lost evaluations (note_retry)
        self._next: int | None = None  # next_number, once counted (begin checks it)

    def next_number(self) -> int:
        """The number the next :meth:`begin` records: counted once, then kept (the run
        directory has one writer; :meth:`begin` verifies it against what Optuna assigns)."""
        if self._next is None:
            self._next = len(self.study.get_trials(deepcopy=False))
        return self._next

    def begin(self, number: int, params: Mapping[str, Any], distributions: Mapping[str, Any]) -> None:
        """Record candidate ``number`` as a RUNNING trial with ``params``, in one transaction
        (Optuna's ``ask`` would write each param in its own: 12 commits for a ResNet-20
        policy, a quarter of a second; see :mod:`automc.search.trial_rows`).
        Runs written before (enqueue, then ask) are still recovered: see :meth:`recover`."""
        if self._writer is None:
            raise RuntimeError(f"store {self.url} was opened read-only")
        dists = {k: distributions[k] for k in params if k in distributions}
        with _writing(self.url):
            trial_id, got = self._writer.create({k: params[k] for k in dists}, dists)
        if got != number:
            raise RuntimeError(f"store {self.url}: expected trial {number}, Optuna gave {got}; another process writes to this study")
        self._next = number + 1
        self._open[number] = trial_id

    def report(self, number: int, value: float, step: int) -> bool:
        """Record ``value`` as candidate ``number``'s intermediate value at ``step`` and ask
        the study's pruner whether to stop there (True) or go on to the next fidelity."""
        trial = self._trials.get(number)
        if trial is None:
            trial = self._trials[number] = optuna.trial.Trial(self.study, self._open[number])
        with _writing(self.url):
            trial.report(value, step)
            return bool(trial.should_prune())

    def finish(self, candidate: Candidate, *, duplicate_of: int | None = None) -> None:
        """Record the outcome of a candidate :meth:`begin` started in this process: the
        outcome attribute first (one write), then the state."""
        trial_id = self._open.pop(candidate.number)
        self._trials.pop(candidate.number, None)
        outcome = outcome_record(candidate, duplicate_of)
        storage = self.study._storage  # noqa: SLF001 - see __init__
        state, values = verdict(outcome)
        with _writing(self.url):
            storage.set_trial_user_attr(trial_id, "outcome", outcome)
            # what study.tell stores for these three cases, without its two reads of the trial
            storage.set_trial_state_values(trial_id, state, values)

    def note_retry(self, number: int, reason: str) -> None:
        """Record that candidate ``number``'s evaluation was lost through no fault of its own
        (its Ray node died) and is being done again; also said on stderr."""
        self._retries.setdefault(number, []).append(reason)
        with _writing(self.url):
            self.study._storage.set_trial_user_attr(self._open[number], "retries", self._retries[number])  # noqa: SLF001
        notice(f"candidate {number}: {reason}; evaluating it again")

    def _tell(self, number: int, outcome: Mapping[str, Any]) -> None:
        state, values = verdict(outcome)
        self.study.tell(number, values[0] if values else None, state=state)

    def recover(self, distributions: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Settle what a stopped run left unfinished; returns the params to propose again.

        A RUNNING trial whose outcome was written is completed from it (the evaluation was
        done). Others — RUNNING without outcome (killed mid-evaluation) and WAITING ones
        (runs written by earlier automc, whose :meth:`begin` enqueued, then asked: a kill
        between left a WAITING trial that the next ``ask`` would pair with a different
        candidate) — are failed as interrupted, their
        numbers kept in the study's ``interrupted`` attribute, and their params returned.
        """
        self._next = None
        with _writing(self.url):
            return self._recover(distributions)

    def _recover(self, distributions: Mapping[str, Any]) -> list[dict[str, Any]]:
        unfinished: dict[int, dict[str, Any]] = {}
        for t in self.study.get_trials(deepcopy=False, states=(_STATE.WAITING,)):
            popped = self.study.ask(dict(distributions))  # Optuna pops the oldest WAITING trial: this one
            if popped.number != t.number:
                raise RuntimeError(f"store {self.url}: popped trial {popped.number} instead of waiting trial {t.number}")
            unfinished[t.number] = dict(popped.params)
        for t in self.study.get_trials(deepcopy=False, states=(_STATE.RUNNING,)):
            if "outcome" in t.user_attrs:
                self._tell(t.number, t.user_attrs["outcome"])
            else:
                # Optuna writes an asked trial's params one by one: a kill inside ``ask``
                # leaves some unwritten; the enqueued proposal is whole in its fixed params
                fixed = dict(t.system_attrs.get("fixed_params") or {})
                unfinished.setdefault(t.number, fixed if set(fixed) >= set(distributions) else dict(t.params))
        if unfinished:
            self.study.set_user_attr("interrupted", sorted(self.interrupted() | set(unfinished)))
            for number in sorted(unfinished):
                self.study.tell(number, state=_STATE.FAIL)
        # a proposal that cannot be recovered whole is not retried (it was never evaluated)
        return [unfinished[n] for n in sorted(unfinished) if set(unfinished[n]) >= set(distributions)]

    def interrupted(self) -> set[int]:
        """Numbers of the trials stopped runs left unfinished (failed, then proposed again)."""
        return set(self.study.user_attrs.get("interrupted", []))

    def counts(self) -> dict[str, int]:
        """Trials by what happened to them (interrupted ones are not failures)."""
        interrupted = self.interrupted()
        trials = self.study.get_trials(deepcopy=False)
        return {
            "finished": sum(1 for t in trials if t.state == _STATE.COMPLETE),
            "failed": sum(1 for t in trials if t.state == _STATE.FAIL and t.number not in interrupted),
            "running": sum(1 for t in trials if t.state == _STATE.RUNNING),
            "interrupted": len(interrupted),
            "duplicates": sum(1 for t in trials if t.state == _STATE.PRUNED),
        }

    def candidates(self, *, include_interrupted: bool = False, include_duplicates: bool = False) -> list[Candidate]:
        """Every candidate, in number order: finished and failed ones, and RUNNING ones with
        their params. Duplicates (told to the agent, never evaluated) only on request."""
        interrupted = self.interrupted()
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state == _STATE.RUNNING:
                out.append(Candidate(t.number, dict(t.params), state=RUNNING))
                continue
            if t.number in interrupted:
                if include_interrupted:
                    out.append(Candidate(t.number, dict(t.params), state=FAILED, error=INTERRUPTED))
                continue
            if t.state == _STATE.PRUNED and not include_duplicates:
                continue
            if t.state not in (_STATE.COMPLETE, _STATE.FAIL, _STATE.PRUNED):
                continue
            o = t.user_attrs.get("outcome") or legacy_outcome(t)
            ok = t.state == _STATE.COMPLETE or (t.state == _STATE.PRUNED and bool(o.get("ok")))
            out.append(
                Candidate(
                    number=t.number,
                    params=dict(o.get("params") or t.params),
                    metrics=dict(o.get("metrics") or {}),
                    reward=o.get("reward"),
                    state=COMPLETE if ok else FAILED,
                    error=o.get("error"),
                    timings=dict(o.get("timings") or {}),
                    duplicate_of=o.get("duplicate_of"),
                )
            )
        return out

    def close(self) -> None:
        """Close the database connections; SQLite then folds its write-ahead log back into
        ``study.db`` (a finished run's record is that one file)."""
        self._backend.scoped_session.remove()
        self._backend.engine.dispose()

    def set_meta(self, key: str, value: Any) -> None:
        with _writing(self.url):
            self.study.set_user_attr(key, json.loads(json.dumps(value, default=str)))

    def meta(self) -> dict[str, Any]:
        return dict(self.study.user_attrs)

    @property
    def name(self) -> str:
        return self.study.study_name


def check_storage(url: str) -> None:
    """One line unless ``url`` is a database URL whose driver is installed (checked before
    anything is spent; opening it is left to :class:`Store`)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"storage {url!r} is not a database URL: use e.g. sqlite:///path/study.db or postgresql://user@host/db", field="storage") from None
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise UserError(f"storage {url!r}: {parsed.drivername!r} is not a database kind SQLAlchemy knows (sqlite, postgresql, mysql, ...)", field="storage") from None
    except ImportError as exc:
        raise _driver_missing(url, exc) from None


def _driver_missing(url: str, exc: ImportError) -> UserError:
    return UserError(f"storage {url.split(':', 1)[0]!r} needs a driver that is not installed ({exc}): pip install 'automc[postgres]'", field="storage")


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
