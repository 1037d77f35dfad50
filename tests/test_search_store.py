"""The store: Optuna through its public API, interrupted trials, other storages."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from automc.search.candidate import COMPLETE, FAILED, Candidate
from tests.conftest import run_cli
from tests.search_support import TINY, write_config


def test_a_kill_between_enqueue_and_ask_leaves_no_waiting_trial_to_mismatch(tmp_path: Path) -> None:
    """Store.begin enqueues then asks; a kill in between leaves a WAITING trial. On resume it
    is failed as interrupted and its params proposed again, so the next candidate's trial
    holds the next candidate's params (Optuna would otherwise hand it the stale one)."""
    import optuna

    from automc.search.store import Store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(url, "s")
    first = store.next_number()
    store.begin(first, {"x": 0.1}, dists)
    store.finish(Candidate(first, {"x": 0.1}, metrics={"accuracy": 0.5}, reward=0.5, state=COMPLETE))
    store.study.enqueue_trial({"x": 0.2}, skip_if_exists=False)  # killed before the ask
    resumed = Store(url, "s")
    assert resumed.mark_interrupted(dists) == [{"x": 0.2}]
    waiting = resumed.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting == []
    number = resumed.next_number()
    resumed.begin(number, {"x": 0.3}, dists)
    assert resumed.study.trials[number].params == {"x": 0.3}
    assert [c.params for c in resumed.candidates(include_interrupted=True) if c.state == FAILED] == [{"x": 0.2}]


def test_postgresql_storage(tmp_path: Path) -> None:
    """Runs against a real server when AUTOMC_TEST_POSTGRES holds its URL."""
    url = os.environ.get("AUTOMC_TEST_POSTGRES")
    if not url:
        pytest.skip("set AUTOMC_TEST_POSTGRES=postgresql://user@host:port/db to test a PostgreSQL store")
    cfg = {**TINY, "name": f"pg_{os.getpid()}_{int(time.time())}", "storage": url, "budget": {"candidates": 4}}
    run_dir = tmp_path / "run"
    first = json.loads(run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--json").stdout)
    assert first["finished"] == 4 and not (run_dir / "study.db").exists()
    cfg["budget"] = {"candidates": 6}
    second = json.loads(run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--json").stdout)
    assert second["finished"] == 6 and second["evaluated_now"] == 2
