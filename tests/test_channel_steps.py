"""Channel steps chosen from measured whole models (``automc profile widths --context step``)."""

from __future__ import annotations

import json
import os
import statistics
import textwrap
from pathlib import Path

import pytest
import torch

from automc.device_profiles.steps import fitting_step, paired_efficiency, probe_count, settled, step_widths
from automc.device_profiles.widths import derive_widths
from automc.models import build_model
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from tests.conftest import run_cli

BLOCKED_PROFILE = '''
import math
from torch import nn
from automc.measure.profiles import DeviceProfile, Measurement


class Blocked(DeviceProfile):
    """A runtime computing in blocks of BLOCK channels: a layer costs ceil(in/BLOCK) x
    ceil(out/BLOCK) units, and a fixed 0.01 ms per model."""

    name = "blocked"
    metrics = ("latency_ms",)
    block = 8

    def measure(self, model, example_input):
        b = self.block
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        units = sum(math.ceil(getattr(m, "in_channels", getattr(m, "in_features", 0)) / b) * math.ceil(getattr(m, "out_channels", getattr(m, "out_features", 0)) / b) for m in layers)
        return Measurement({"latency_ms": 0.01 + 0.1 * units}, {}, 1, {"profile": self.name})


class Blocked16(Blocked):
    name = "blocked16"
    block = 16


class NoisyBlocked(Blocked):
    """Blocks of 8 on a machine that now and then runs a measurement 1.6x slow (seeded)."""

    name = "noisy_blocked"

    def __init__(self) -> None:
        import random

        self._rng = random.Random(2)

    def measure(self, model, example_input):
        m = super().measure(model, example_input)
        slow = 1.6 if self._rng.random() < 0.25 else 1.0
        return Measurement({"latency_ms": m.values["latency_ms"] * slow}, {}, 1, {"profile": self.name})
'''


def _profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str):  # noqa: ANN202
    (tmp_path / "blocked_profiles.py").write_text(textwrap.dedent(BLOCKED_PROFILE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("blocked_profiles")
    return getattr(module, name)()


def test_probe_counts_sit_on_one_grid_and_off_the_next() -> None:
    """A step's probe count is an odd multiple of it (on its grid, off the doubled one), within
    the group's reach; steps too coarse for a group fall back to one that halves it."""
    assert probe_count(64, 8, 13) == 40 and probe_count(64, 16, 13) == 48 and probe_count(64, 1, 13) == 41
    assert probe_count(16, 16, 3) is None and probe_count(16, 8, 3) == 8 and probe_count(16, 4, 3) == 12
    assert probe_count(16, 8, 9) is None  # 8 is below what the space reaches
    assert fitting_step(16, 16) == 8 and fitting_step(64, 16) == 16 and fitting_step(3, 8) == 1
    assert step_widths(64, 16, 13) == [16, 32, 48, 64] and step_widths(40, 16, 13) == [16, 32, 40] and step_widths(16, 16, 3) == [16]


@pytest.mark.parametrize(("name", "block"), [("Blocked", 8), ("Blocked16", 16)])
def test_step_is_the_runtime_block_and_narrow_groups_that_save_nothing_stay_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, block: int) -> None:
    """On a runtime computing in blocks of 8 the step chosen is 8: half-blocks of 4 channels
    are padded away, 8 channels pay. In blocks of 16 it is 16, and a group narrower than 32 —
    which at half its channels still fills a whole block — keeps its full width. The space
    then builds only those counts."""
    profile = _profile(tmp_path, monkeypatch, name)
    torch.manual_seed(0)
    model, x = build_model("small_cnn", in_channels=1, kwargs={"width": 16}).eval(), torch.zeros(1, 1, 8, 8)
    space = ChannelPruningSpace(model, x, lbound=0.2)
    data = derive_widths(profile, model, space, x, context="step", rounds=1)
    where = data["measured_on"]
    assert data["context"] == "step" and where["step"] == block, where["probes"]
    effs = {int(b): p["efficiency"] for b, p in where["probes"].items()}
    assert effs[block] == pytest.approx(0.0, abs=1e-9) and all(effs[b] >= 0.5 for b in effs if b > block), effs
    groups = data["groups"]
    for group, entry in groups.items():
        c = entry["channels"]
        lowest = int(0.2 * c + 0.5)  # lbound 0.2
        if c >= 2 * block:
            assert entry["step"] == block and entry["widths"] == list(range(-(-lowest // block) * block, c + 1, block)), (group, entry)
        else:  # too narrow for the step: its half still fills one block, so it stays whole
            assert entry["check"]["latency_saved"] == pytest.approx(0.0, abs=1e-9) and entry["widths"] == [c], (group, entry)
    assert [e["channels"] for e in groups.values()] == [16, 32, 32, 64]
    assert sum(len(e["widths"]) > 1 for e in groups.values()) == (4 if block == 8 else 3)
    sp = ChannelPruningSpace(model, x, lbound=0.2, widths=data)
    pruned = sp.apply(model, sp.uniform(0.45))
    for dim, root in sp._roots.items():  # noqa: SLF001
        assert pruned.get_submodule(root).out_channels in groups[root]["widths"]


def test_efficiency_is_paired_round_by_round_and_a_split_verdict_is_not_settled() -> None:
    """Each round's probe is divided by its neighbouring twin (a slow spell that hits both
    divides out); a verdict stands when 80% of the rounds agree with the median's."""
    median, per_round = paired_efficiency([1.0, 2.0, 1.5], [2.0, 4.0, 1.5], 0.5)
    assert per_round == [1.0, 1.0, 0.0] and median == 1.0
    assert settled([0.6, 0.7, 0.8, 0.9, 0.1], 0.5) and not settled([0.6, 0.7, 0.1, 0.9, 0.2], 0.5)
    assert settled([0.0, 0.1, -0.2, 0.3, 0.9], 0.5)  # 4 of 5 below: does not pay, settled


def test_noisy_measurements_get_more_rounds_and_the_step_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a runtime computing in blocks of 8 whose measurements are now and then 1.6x slow,
    verdicts split by the slow rounds are measured again (5 rounds more, up to 15) and the step
    is still 8; the file keeps every round."""
    profile = _profile(tmp_path, monkeypatch, "NoisyBlocked")
    torch.manual_seed(0)
    model, x = build_model("small_cnn", in_channels=1, kwargs={"width": 16}).eval(), torch.zeros(1, 1, 8, 8)
    data = derive_widths(profile, model, ChannelPruningSpace(model, x, lbound=0.2), x, context="step", rounds=5)
    where = data["measured_on"]
    assert where["step"] == 8, where["probes"]
    assert where["rounds_asked"] == 5 and where["rounds"] in (10, 15), where["rounds"]
    for probe in where["probes"].values():
        assert len(probe["per_round"]) == where["rounds"] and probe["efficiency"] == pytest.approx(statistics.median(probe["per_round"]), abs=1e-4)
    assert all(len(ts) == where["rounds"] for ts in where["rounds_ms"].values())


def test_profile_widths_step_from_the_command_line(tmp_path: Path) -> None:
    """``automc profile widths --context step`` writes the step, its probes and per-group widths
    a ``channel_pruning`` space reads."""
    (tmp_path / "blocked_profiles.py").write_text(textwrap.dedent(BLOCKED_PROFILE))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "steps.json"
    proc = run_cli("profile", "widths", "--model", "small_cnn", "--model-arg", "width=16", "--dataset", "digits", "--device", "blocked_profiles:Blocked16", "--context", "step", "--rounds", "2", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "step 16 measured" in proc.stdout and "block 16: the last 8 channels per group save 0.00" in proc.stdout and "padded away" in proc.stdout, proc.stdout
    data = json.loads(out.read_text())
    assert data["measured_on"]["rounds"] == 2 and data["measured_on"]["measurements"] == 2 * (1 + 2 * len(data["measured_on"]["probes"])) + 2 * 2  # rounds x (full + probe and twin per block) + the narrow group's pair
    assert {g: e["widths"] for g, e in data["groups"].items()} == {"features.0.0": [16], "features.1.0": [16, 32], "features.2.0": [16, 32], "features.3.0": [16, 32, 48, 64]}
