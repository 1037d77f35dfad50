"""The store: Optuna studies (new trials written in one transaction, SQLite in WAL mode),
interrupted trials, other storages."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from automc.search.candidate import COMPLETE, FAILED, Candidate
from tests.conftest import run_cli
from tests.search_support import TINY, write_config

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it


def test_a_kill_between_enqueue_and_ask_leaves_no_waiting_trial_to_mismatch(tmp_path: Path) -> None:
    """Runs written by earlier automc (begin enqueued, then asked): a kill in between left a
    WAITING trial (today's begin writes the trial whole, in one transaction). On resume it
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
    assert resumed.recover(dists) == [{"x": 0.2}]
    waiting = resumed.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting == []
    number = resumed.next_number()
    resumed.begin(number, {"x": 0.3}, dists)
    assert resumed.study.trials[number].params == {"x": 0.3}
    assert [c.params for c in resumed.candidates(include_interrupted=True) if c.state == FAILED] == [{"x": 0.2}]


def test_a_kill_between_outcome_and_state_keeps_the_evaluation(tmp_path: Path) -> None:
    """The outcome is one attribute written before the trial's state: a run killed between
    the two left a RUNNING trial whose evaluation is done; recover() completes it from the
    record instead of evaluating it again."""
    import optuna

    from automc.search.store import Store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(url, "s")
    store.begin(0, {"x": 0.1}, dists)
    store.study.trials  # noqa: B018 - the trial is RUNNING
    trial = optuna.trial.Trial(store.study, store._open[0])  # noqa: SLF001 - the trial id begin recorded
    trial.set_user_attr("outcome", {"params": {"x": 0.1}, "metrics": {"accuracy": 0.7}, "reward": 0.7, "timings": {}, "error": None, "ok": True, "duplicate_of": None})
    resumed = Store(url, "s")
    assert resumed.recover(dists) == []
    (cand,) = resumed.candidates()
    assert cand.state == COMPLETE and cand.reward == 0.7 and cand.metrics == {"accuracy": 0.7}
    assert resumed.counts() == {"finished": 1, "failed": 0, "running": 0, "interrupted": 0, "duplicates": 0}


def test_a_kill_inside_optunas_ask_retries_the_whole_proposal(tmp_path: Path) -> None:
    """Runs written by earlier automc: Optuna's ask writes a trial's params one at a time, so a
    kill in between left a RUNNING trial with some params. The retried proposal is the whole enqueued one, never a partial
    policy (found by benchmarks/fault_injection.py: a DDPG resume crashed replaying one)."""
    import optuna

    from automc.search.store import Store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0), "y": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(url, "s")
    store.study.enqueue_trial({"x": 0.2, "y": 0.7}, skip_if_exists=False)
    store.study.ask({"x": dists["x"]})  # the kill came before y was written
    assert store.study.trials[0].params == {"x": 0.2}
    resumed = Store(url, "s")
    assert resumed.recover(dists) == [{"x": 0.2, "y": 0.7}]
    assert resumed.interrupted() == {0}


def test_duplicates_are_recorded_apart_and_cost_no_budget(tmp_path: Path) -> None:
    import optuna

    from automc.search.store import Store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(url, "s")
    store.begin(0, {"x": 0.1}, dists)
    original = Candidate(0, {"x": 0.1}, metrics={"accuracy": 0.5}, reward=0.5, state=COMPLETE)
    store.finish(original)
    store.begin(1, {"x": 0.1}, dists)
    store.finish(Candidate(1, {"x": 0.1}, metrics={"accuracy": 0.5}, reward=0.5, state=COMPLETE, duplicate_of=0), duplicate_of=0)
    assert [c.number for c in store.candidates()] == [0]
    told = store.candidates(include_duplicates=True)
    assert [(c.number, c.duplicate_of, c.reward) for c in told] == [(0, None, 0.5), (1, 0, 0.5)]
    assert store.counts()["finished"] == 1 and store.counts()["duplicates"] == 1


def test_a_second_writer_is_caught_by_the_trial_numbers(tmp_path: Path) -> None:
    """begin checks that Optuna numbered the trial as counted (from its cache, no query): a
    trial another process added in between makes it stop instead of mislabelling candidates."""
    import optuna

    from automc.search.store import Store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(url, "s")
    store.begin(store.next_number(), {"x": 0.1}, dists)
    assert store.next_number() == 1
    other = Store(url, "s")
    other.begin(other.next_number(), {"x": 0.2}, dists)  # trial 1, behind the first store's back
    with pytest.raises(RuntimeError, match="expected trial 1, Optuna gave 2"):
        store.begin(store.next_number(), {"x": 0.3}, dists)


def test_begin_writes_the_trial_optunas_own_path_writes(tmp_path: Path) -> None:
    """begin's one-transaction trial (automc.search.trial_rows) reads back as the trial
    Optuna's create_new_trial makes from the same template: number, state, params and
    distributions; a distribution incompatible with the study's earlier one for the same
    name is refused, as Optuna refuses it, and writes nothing."""
    import optuna

    from automc.search.store import Store

    dists = {"x": optuna.distributions.FloatDistribution(0.2, 1.0), "k": optuna.distributions.IntDistribution(1, 9, step=2), "op": optuna.distributions.CategoricalDistribution(["conv", "skip"])}
    params = {"x": 0.37, "k": 5, "op": "skip"}
    ours = Store(f"sqlite:///{tmp_path / 'ours.db'}", "s")
    ours.begin(0, params, dists)
    ours.begin(1, {**params, "x": 0.9}, dists)
    theirs = optuna.create_study(storage=f"sqlite:///{tmp_path / 'theirs.db'}", study_name="s")
    template = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=params, distributions=dists)
    theirs._storage.create_new_trial(theirs._study_id, template_trial=template)  # noqa: SLF001
    a, b = Store(f"sqlite:///{tmp_path / 'ours.db'}", "s", readonly=True).study.trials[0], theirs.trials[0]
    assert (a.number, a.state, a.params, a.distributions) == (b.number, b.state, b.params, b.distributions)
    assert ours.study.trials[1].params["x"] == 0.9
    with pytest.raises(ValueError, match="does not support dynamic value space"):
        ours.begin(2, {"op": "conv"}, {"op": optuna.distributions.CategoricalDistribution(["conv", "pool"])})
    fresh = Store(f"sqlite:///{tmp_path / 'ours.db'}", "s")  # a new process checks against the file
    with pytest.raises(ValueError, match="does not support dynamic value space"):
        fresh.begin(2, {"op": "conv"}, {"op": optuna.distributions.CategoricalDistribution(["conv", "pool"])})
    assert len(fresh.study.get_trials()) == 2
    fresh.begin(2, params, dists)  # the refusal left the store usable
    assert fresh.next_number() == 3


def test_sqlite_store_logs_ahead_and_folds_the_log_in_on_close(tmp_path: Path) -> None:
    """The writer puts study.db in WAL mode (one sync per commit); a kill leaves the log,
    which the next writer and readers read; close() folds it back, leaving one whole file."""
    import shutil
    import sqlite3

    import optuna

    from automc.search.snapshot import open_store
    from automc.search.store import Store

    db = tmp_path / "study.db"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(f"sqlite:///{db}", "s")
    for n in range(3):
        store.begin(n, {"x": n / 10}, dists)
        store.finish(Candidate(n, {"x": n / 10}, metrics={"accuracy": 0.5}, reward=0.5, state=COMPLETE))
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert Path(f"{db}-wal").stat().st_size > 0  # the commits are in the log (as a kill -9 would leave them)
    killed = tmp_path / "killed"
    killed.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{db}{suffix}", killed / f"study.db{suffix}")
    assert len(open_store(f"sqlite:///{killed / 'study.db'}", "s").candidates()) == 3
    store.close()
    assert not Path(f"{db}-wal").exists()
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copyfile(db, alone / "study.db")  # the file by itself is the whole record
    assert [c.reward for c in open_store(f"sqlite:///{alone / 'study.db'}", "s").candidates()] == [0.5] * 3


def test_readers_open_a_snapshot_and_write_nothing(tmp_path: Path) -> None:
    """status/report/export read through a backup copy: the run's study.db is not touched
    (no journal, same bytes), also while another connection holds it open for writing."""
    import hashlib

    import optuna

    from automc.search.snapshot import open_store
    from automc.search.store import Store

    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    writer = Store(url, "s")
    writer.begin(0, {"x": 0.3}, dists)
    writer.finish(Candidate(0, {"x": 0.3}, metrics={"accuracy": 0.9}, reward=0.9))
    writer.begin(1, {"x": 0.4}, dists)  # still running
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    listing = sorted(p.name for p in tmp_path.iterdir())
    reader = open_store(url, "s")
    assert [c.state for c in reader.candidates()] == [COMPLETE, "running"]
    assert reader.counts()["running"] == 1
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


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
