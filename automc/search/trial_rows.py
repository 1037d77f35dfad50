"""The store's two hot writes made cheap: a RUNNING trial with all its params in one
transaction, and SQLite's write-ahead log.

Optuna's ``create_new_trial(template_trial=...)`` checks each param's distribution against the
study's earlier trials with two queries per param (the trial, then a join over the study's
params) before adding it: ~7 ms of ORM work for the 12 params of a ResNet-20 policy, most of
the store's share of a candidate's time outside forward passes (issue 14). Here the check is
made once per param name per process (as Optuna's cached storage does for ``set_trial_param``)
and the rows are added together. The rows are Optuna's own models, written inside Optuna's
session helper and under the same study lock, so Optuna reads the trial back as one of its own
(tested against ``create_new_trial``). This leans on Optuna's RDB internals, pinned to 5.x in
``pyproject.toml``.

SQLite in its default rollback-journal mode syncs a journal, the database and the journal's
removal per transaction; with ``journal_mode=WAL`` a commit appends to the log and syncs it once
(``synchronous`` stays FULL: a committed candidate survives a power loss as before). The mode is
kept in the file, so a resumed older run switches on its first write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json, json_to_distribution
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session

_RUNNING = optuna.trial.TrialState.RUNNING


def backend_of(storage: optuna.storages.BaseStorage) -> RDBStorage:
    """The RDB storage under a study's storage (Optuna wraps it in a cache)."""
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage):
        raise TypeError(f"the store needs an Optuna RDB storage, got {type(backend).__name__}")
    return backend


def use_wal(backend: RDBStorage) -> None:
    """Put an SQLite database in write-ahead-log mode (a no-op for other databases; SQLite
    keeps its old mode where WAL is impossible)."""
    if backend.engine.dialect.name == "sqlite":
        with backend.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


class TrialWriter:
    """Creates RUNNING trials of one study, params included, one transaction each."""

    def __init__(self, backend: RDBStorage, study_id: int) -> None:
        self.backend = backend
        self.study_id = study_id
        self._checked: dict[str, BaseDistribution] = {}  # param name → distribution seen compatible

    def create(self, params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]) -> tuple[int, int]:
        """Write a RUNNING trial with ``params`` (each in its ``distributions`` entry); returns
        (trial id, trial number). Raises ValueError, writing nothing, where a distribution is
        incompatible with one the study's trials used for the same name."""
        with _create_scoped_session(self.backend.scoped_session) as session:
            # Optuna's lock for numbering a new trial (trial numbers count the study's trials)
            models.StudyModel.find_or_raise_by_id(self.study_id, session, for_update=True)
            try:
                for name in params:
                    self._check(session, name, distributions[name])
            except ValueError:
                session.rollback()  # nothing written; the lock's transaction ends here
                raise
            trial = models.TrialModel(study_id=self.study_id, number=None, state=_RUNNING, datetime_start=datetime.now())
            session.add(trial)
            session.flush()  # assigns the trial id the param rows refer to
            session.add_all(
                [
                    models.TrialParamModel(trial_id=trial.trial_id, param_name=name, param_value=distributions[name].to_internal_repr(value), distribution_json=distribution_to_json(distributions[name]))
                    for name, value in params.items()
                ]
            )
            trial.number = trial.count_past_trials(session)
            return int(trial.trial_id), int(trial.number)

    def _check(self, session: Any, name: str, distribution: BaseDistribution) -> None:
        """Optuna's compatibility check of ``name``'s distribution, once per name."""
        known = self._checked.get(name)
        if known is None:
            previous = (
                session.query(models.TrialParamModel.distribution_json)
                .join(models.TrialModel)
                .filter(models.TrialModel.study_id == self.study_id, models.TrialParamModel.param_name == name)
                .first()
            )
            known = json_to_distribution(previous[0]) if previous is not None else distribution
        check_distribution_compatibility(known, distribution)
        self._checked[name] = known
