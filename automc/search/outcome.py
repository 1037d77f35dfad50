"""A candidate's outcome as the store keeps it: one JSON trial attribute, ``outcome``, and
the trial state and value it maps to (a repeat is PRUNED, a finite reward COMPLETE, anything
else FAIL). Runs written before ``outcome`` was one attribute are read back too."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import optuna

from automc.search.candidate import Candidate

_STATE = optuna.trial.TrialState


def outcome_record(candidate: Candidate, duplicate_of: int | None) -> dict[str, Any]:
    """The ``outcome`` attribute of ``candidate`` (JSON-safe: numpy numbers become floats)."""
    record = {
        "params": dict(candidate.params),
        "metrics": dict(candidate.metrics),
        "reward": candidate.reward,
        "timings": dict(candidate.timings),
        "error": candidate.error,
        "ok": candidate.ok,
        "duplicate_of": duplicate_of,
    }
    return json.loads(json.dumps(record, default=float))


def verdict(outcome: Mapping[str, Any]) -> tuple[optuna.trial.TrialState, list[float] | None]:
    """The trial state and values an outcome is stored as."""
    reward = outcome.get("reward")
    if outcome.get("duplicate_of") is not None:
        return _STATE.PRUNED, None
    if outcome.get("ok") and reward is not None and math.isfinite(reward):
        return _STATE.COMPLETE, [float(reward)]
    return _STATE.FAIL, None


def legacy_outcome(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The outcome of a trial written before ``outcome`` was one attribute."""
    a = t.user_attrs
    return {"params": a.get("automc_params", dict(t.params)), "metrics": a.get("metrics", {}), "reward": a.get("reward"), "timings": a.get("timings", {}), "error": a.get("error")}
