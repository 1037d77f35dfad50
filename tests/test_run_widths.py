"""A run's channel widths are frozen when it starts: a file copied, ``measure`` measured once."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import torch

from automc.compress.saved import load_compressed
from automc.config import parse_config
from automc.models import build_model
from automc.run import RunDir
from automc.search.context import build_context
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from tests.conftest import run_cli
from tests.search_support import TINY, write_config
from tests.test_channel_steps import BLOCKED_PROFILE

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it


def _groups(width: int) -> dict[str, int]:
    """Channel group → channels of ``small_cnn`` at ``width`` on digits."""
    sp = ChannelPruningSpace(build_model("small_cnn", num_classes=10, in_channels=1, kwargs={"width": width}).eval(), torch.zeros(1, 1, 8, 8))
    return {sp._roots[d]: sp._channels[d] for d in sp.dimensions}


def _widths_file(path: Path, groups: dict[str, int], *, halves: bool) -> Path:
    from automc.compress.widths_file import FORMAT

    path.write_text(json.dumps({"format": FORMAT, "groups": {g: {"widths": [c // 2, c] if halves else [c]} for g, c in groups.items()}}))
    return path


def _reader_widths(run_dir: Path) -> dict[str, list[int]]:
    """The widths every other context of the run (Ray workers, export, finetune) builds."""
    cfg = parse_config(RunDir(run_dir).read_config())
    space = build_context(cfg, run_dir, measure_base=False, cache=False, train=False).space
    return {space._roots[d]: counts for d, counts in space.widths.items()}


def test_a_widths_file_is_frozen_into_the_run_and_a_changed_one_refused(tmp_path: Path) -> None:
    """``widths: FILE`` is copied when the run starts; a resume whose file changed is one line
    (exit 2) naming both files; restored it resumes; gone, the run, its readers and its exported
    models keep the counts it started with."""
    groups = _groups(8)
    file = _widths_file(tmp_path / "steps.json", groups, halves=True)
    cfg = {**TINY, "model": {**TINY["model"], "kwargs": {"width": 8}}, "space": {"name": "channel_pruning", "config": {"widths": str(file)}}, "budget": {"candidates": 3}}
    run_dir = tmp_path / "run"
    first = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--no-report", "--json")
    assert first.returncode == 0, first.stderr
    frozen = json.loads((run_dir / "widths.json").read_text())
    assert frozen["frozen_from"]["widths"] == str(file) and {g: e["widths"] for g, e in frozen["groups"].items()} == {g: [c // 2, c] for g, c in groups.items()}
    assert RunDir(run_dir).read_config()["space"]["config"]["widths"] == str(file)  # the config keeps what the user wrote

    saved = file.read_text()
    _widths_file(file, groups, halves=False)  # measured again, say, on another machine
    more = {**cfg, "budget": {"candidates": 4}}
    changed = run_cli("search", str(write_config(tmp_path, more)), "--run-dir", str(run_dir), "--no-report")
    assert changed.returncode == 2, changed.stderr
    lines = changed.stderr.strip().splitlines()
    assert len(lines) == 1 and "has changed since this run started" in lines[0] and str(file) in lines[0] and "Traceback" not in changed.stderr
    file.write_text(saved)
    assert run_cli("search", str(write_config(tmp_path, more)), "--run-dir", str(run_dir), "--no-report").returncode == 0

    file.unlink()
    assert _reader_widths(run_dir) == {g: [c // 2, c] for g, c in groups.items()}
    out = tmp_path / "export"
    exported = run_cli("export", str(run_dir), "--candidate", "0", "--out", str(out), "--json")
    assert exported.returncode == 0, exported.stderr
    card = json.loads((out / "compression.json").read_text())
    assert card["space"]["config"]["widths"]["groups"] == {g: {"widths": [c // 2, c]} for g, c in groups.items()}  # the counts, not the file
    model = load_compressed(out)  # the file is gone: the card alone rebuilds the model
    assert sum(p.numel() for p in model.parameters()) > 0


def test_widths_measure_measures_the_step_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``widths: measure`` reads the runtime's channel step off the experiment's timed latency
    profile when the run first starts (8 on a runtime that computes in blocks of 8), searches
    on multiples of it, and never measures again on resume; without a timed latency profile it
    is one line before anything is trained."""
    (tmp_path / "blocked_profiles.py").write_text(textwrap.dedent(BLOCKED_PROFILE))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    space = {"name": "channel_pruning", "config": {"widths": "measure", "lbound": 0.2}}
    # device models time nothing
    flops_only = {**TINY, "space": space, "profiles": [{"name": "flops"}, {"name": "accelerator"}]}
    refused = run_cli("search", str(write_config(tmp_path, flops_only, "flops.yaml")), "--run-dir", str(tmp_path / "refused"))
    assert refused.returncode == 2 and "timed latency profile" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not (tmp_path / "refused" / "base_model.pt").exists()  # said before the base model was trained

    cfg = {**TINY, "model": {**TINY["model"], "kwargs": {"width": 16}}, "space": space, "profiles": [{"name": "flops"}, {"name": "blocked_profiles:Blocked"}], "budget": {"candidates": 3}}
    run_dir = tmp_path / "run"
    check = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--check", env=env)
    assert check.returncode == 0 and "widths     the channel step, measured on blocked when the search starts" in check.stdout, check.stdout + check.stderr
    assert not (run_dir / "widths.json").exists()  # --check writes nothing
    first = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--no-report", env=env)
    assert first.returncode == 0, first.stderr
    assert "measuring the channel step on blocked" in first.stderr
    frozen_file = run_dir / "widths.json"
    frozen = json.loads(frozen_file.read_text())
    assert frozen["measured_on"]["step"] == 8 and frozen["frozen_from"]["widths"] == "measure"
    monkeypatch.syspath_prepend(str(tmp_path))  # the profile plugin, for this process's reader
    widths = _reader_widths(run_dir)
    assert widths and all(w % 8 == 0 or w == max(ws) for ws in widths.values() for w in ws), widths
    stamp = frozen_file.stat().st_mtime_ns
    resumed = run_cli("search", str(write_config(tmp_path, {**cfg, "budget": {"candidates": 4}})), "--run-dir", str(run_dir), "--no-report", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "measuring the channel step" not in resumed.stderr and frozen_file.stat().st_mtime_ns == stamp
