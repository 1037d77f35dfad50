"""Faults: damaged state files, read-only runs, a full disk. Each leaves the record whole and
ends in one line or a rebuilt file — never a traceback, a lost or a repeated evaluation.

(Random kill -9 points over whole searches are in benchmarks/fault_injection.py; the kill
tests here are in test_search_runs.py and test_search_store.py.)
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from automc.cli import main
from automc.search.store import Store
from tests.conftest import run_cli
from tests.search_support import TINY, write_config

NSGA = {**TINY, "agent": {"name": "optuna-nsga2", "config": {"population_size": 4}}}


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _policies(run_dir: Path) -> list[tuple]:
    cands = Store(f"sqlite:///{run_dir / 'study.db'}", "tiny").candidates()
    return [tuple(sorted(c.params.items())) for c in cands]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faults")
    proc = run_cli("search", str(write_config(root, {**NSGA, "budget": {"candidates": 5}})), "--run-dir", str(root / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def test_truncated_state_files_are_detected_and_rebuilt(finished_run: Path, tmp_path: Path) -> None:
    """agent_state.pt and base_model.pt cut short: the rerun says so in one line each, trains
    the base model again from the recorded seed (same figures), rebuilds the agent from the
    store, and continues without repeating a policy."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    base_before = Store(f"sqlite:///{run / 'study.db'}", "tiny").meta()["base_metrics"]
    for name in ("agent_state.pt", "base_model.pt"):
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
    proc = run_cli("search", str(write_config(tmp_path, {**NSGA, "budget": {"candidates": 8}})), "--run-dir", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "base_model.pt its checksum does not match" in proc.stderr and "training the base model again (seed 0)" in proc.stderr
    assert "agent_state.pt cannot be used: its checksum does not match" in proc.stderr and "rebuilding the agent" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] == 8 and summary["evaluated_now"] == 3
    assert summary["base_metrics"] == base_before  # the retrained base model is the same model
    policies = _policies(run)
    assert len(policies) == len(set(policies)) == 8


@pytest.mark.one_pass
def test_readers_write_nothing_and_work_on_a_read_only_file_system(finished_run: Path, tmp_path: Path) -> None:
    """status and report --out read a run without touching it; on a read-only mount (when this
    machine lets the test mount one) they work, and report into the run itself is one line."""
    before = _tree(finished_run)
    assert run_cli("status", str(finished_run), "--json").returncode == 0
    assert run_cli("report", str(finished_run), "--out", str(tmp_path / "rep"), "--no-png").returncode == 0
    assert _tree(finished_run) == before
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not let the test mount a file system (checked above without one)")
    try:
        shutil.copytree(finished_run, mnt / "run")
        assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0
        status = run_cli("status", str(mnt / "run"), "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["finished"] == 5
        rep = run_cli("report", str(mnt / "run"), "--out", str(tmp_path / "rep2"), "--no-png")
        assert rep.returncode == 0, rep.stderr
        into_run = run_cli("report", str(mnt / "run"), "--no-png")
        assert into_run.returncode == 2 and len(into_run.stderr.strip().splitlines()) == 1
        assert "Read-only file system" in into_run.stderr and "writable" in into_run.stderr
        search = run_cli("search", str(write_config(tmp_path, {**NSGA, "budget": {"candidates": 6}})), "--run-dir", str(mnt / "run"))
        assert search.returncode == 2 and len(search.stderr.strip().splitlines()) == 1, search.stderr
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.one_pass
@pytest.mark.parametrize("files", [("study.db", "study.db-wal", "study.db-shm"), ("study.db", "study.db-wal")])
def test_a_killed_runs_log_is_read_on_a_read_only_file_system(tmp_path: Path, files: tuple[str, ...]) -> None:
    """A search killed mid-run leaves its last commits in study.db's write-ahead log; archived
    on a read-only mount, readers still see them: SQLite reads the log itself where its
    shared-memory index came along, else the snapshot copies file and log out and opens that."""
    import optuna

    from automc.search.candidate import COMPLETE, Candidate

    live = tmp_path / "live"
    live.mkdir()
    store = Store(f"sqlite:///{live / 'study.db'}", "tiny")  # never closed: as a kill leaves it
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for n in range(4):
        store.begin(n, {"x": n / 10}, dists)
        store.finish(Candidate(n, {"x": n / 10}, metrics={"accuracy": 0.5}, reward=0.5, state=COMPLETE))
    assert (live / "study.db-wal").stat().st_size > 0
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("this machine does not let the test mount a file system")
    try:
        (mnt / "run").mkdir()
        for name in files:
            shutil.copyfile(live / name, mnt / "run" / name)
        assert subprocess.run(["mount", "-o", "remount,ro", str(mnt)], capture_output=True).returncode == 0
        from automc.search.snapshot import open_store

        assert [c.number for c in open_store(f"sqlite:///{mnt / 'run' / 'study.db'}", "tiny").candidates()] == [0, 1, 2, 3]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.one_pass
def test_disk_full_while_reporting_keeps_the_previous_report(finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert main(["report", str(run), "--no-png"]) == 0
    before = _tree(run / "report")
    capsys.readouterr()

    import automc.results.html as html

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(run / "report" / "report.html"))

    monkeypatch.setattr(html, "write_html_report", full)
    assert main(["report", str(run), "--no-png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "free some space" in err[0]
    assert _tree(run / "report") == before  # the previous report, whole
    assert not [p for p in run.iterdir() if p.name.startswith(".report.staging")]


@pytest.mark.one_pass
def test_disk_full_mid_search_is_one_line_and_the_rerun_continues(finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The store's write of a candidate's outcome fails (disk full): one line, exit 2; rerun
    once there is space: that candidate is evaluated again (it was never recorded), nothing
    recorded is lost or repeated."""
    from automc.search import store as store_mod

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = write_config(tmp_path, {**NSGA, "budget": {"candidates": 7}})
    real_finish = store_mod.Store.finish
    calls = {"n": 0}

    def finish(self: Store, candidate: object, **kw: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(run / "study.db"))
        real_finish(self, candidate, **kw)

    monkeypatch.setattr(store_mod.Store, "finish", finish)
    assert main(["search", str(path), "--run-dir", str(run), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[-1]
    monkeypatch.setattr(store_mod.Store, "finish", real_finish)
    assert main(["search", str(path), "--run-dir", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["finished"] == 7 and summary["interrupted"] == 1
    policies = _policies(run)
    assert len(policies) == len(set(policies)) == 7
