"""Paired latency: candidates timed next to the base model, so a slow machine state divides out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automc.config import parse_config
from automc.errors import UserError
from automc.measure.paired import paired_timing
from automc.measure.profiles import build_profile
from automc.models import build_model
from automc.run import RunDir
from automc.search.loop import run_experiment
from tests.search_support import TINY

FAST = {"min_repeats": 20, "max_seconds": 0.5, "warmup": 5, "sessions": 1}


class Machine:
    """A fake CPU whose speed changes in states: ``slow(k)`` says whether call ``k`` runs
    1.6x slow; a candidate costs 1 ms, the reference 2 ms. ``clock`` is its time."""

    def __init__(self, slow) -> None:  # noqa: ANN001 - a predicate on the call index
        self.t, self.calls, self.slow = 0.0, 0, slow

    def _run(self, ms: float) -> None:
        self.t += ms * (1.6 if self.slow(self.calls) else 1.0) / 1e3
        self.calls += 1

    def candidate(self) -> None:
        self._run(1.0)

    def reference(self) -> None:
        self._run(2.0)

    def clock(self) -> float:
        return self.t


@pytest.mark.parametrize("slow", [lambda k: True, lambda k: (k // 130) % 2 == 1, lambda k: k > 400], ids=["slow-throughout", "states-of-130-calls", "slows-midway"])
def test_the_ratio_to_a_reference_timed_alongside_ignores_the_machine_state(slow) -> None:
    m = Machine(slow)
    t = paired_timing(m.candidate, m.reference, warmup=5, chunk=20, min_repeats=300, max_repeats=2000, max_seconds=100.0, clock=m.clock)
    assert t.ratio_min == pytest.approx(0.5) and t.ratio_median == pytest.approx(0.5)
    assert t.repeats >= 300 and t.rounds * 20 == t.repeats and m.calls > 600  # past the states above
    # timed alone, the candidate's fastest call is the machine's state: 1.6 ms slow throughout
    assert t.reference_min_ms == pytest.approx(3.2 if m.slow(0) and m.slow(10_000) else 2.0)


def test_paired_timing_rejects_empty_chunks() -> None:
    m = Machine(lambda k: False)
    with pytest.raises(ValueError, match="chunk"):
        paired_timing(m.candidate, m.reference, chunk=0, clock=m.clock)


def test_a_paired_profile_scales_its_ratio_by_the_base_figures_and_measures_plainly_without() -> None:
    torch.manual_seed(0)
    model, x = build_model("small_cnn", num_classes=10, in_channels=1, kwargs={"width": 8}).eval(), torch.zeros(1, 1, 8, 8)
    prof = build_profile("onnxruntime-cpu", {**FAST, "paired": True})
    assert prof.config()["paired"] is True and "paired" not in build_profile("onnxruntime-cpu", FAST).config()
    plain = prof.measure(model, x)  # no reference yet: `automc profile`, the base model itself
    assert "paired" not in plain.provenance and plain.values["latency_ms"] > 0
    prof.set_reference(model, x, {"latency_ms": 10.0, "latency_ms_median": 12.0})
    same = prof.measure(model, x)  # the base model against itself: a ratio near 1 of the base figure
    info = same.provenance["paired"]
    assert info["reference"] == {"latency_ms": 10.0, "latency_ms_median": 12.0}
    assert same.values["latency_ms"] == pytest.approx(10.0 * info["ratio_min"]) and 0.5 < info["ratio_min"] < 2.0
    assert same.values["latency_ms_median"] == pytest.approx(12.0 * info["ratio_median"])
    with pytest.raises(UserError, match="paired must be true or false"):
        build_profile("onnxruntime-cpu", {"paired": "yes"})


def test_a_search_times_candidates_against_the_base_figures_the_driver_measured(tmp_path: Path) -> None:
    cfg = {**TINY, "profiles": [{"name": "flops"}, {"name": "onnxruntime-cpu", "config": {**FAST, "paired": True}}], "budget": {"candidates": 3}}
    run_dir = tmp_path / "run"
    summary = run_experiment(parse_config(cfg), run_dir)
    assert summary["finished"] == 3
    entries = [json.loads(line)["measurement"] for line in RunDir(run_dir).measure_cache.read_text().splitlines()]
    base = [e for e in entries if "paired" not in e["provenance"]]
    paired = [e for e in entries if "paired" in e["provenance"]]
    assert len(base) == 1 and paired  # the base model measured plainly once; candidates against it
    for e in paired:
        info = e["provenance"]["paired"]
        assert info["reference"]["latency_ms"] == base[0]["values"]["latency_ms"]
        assert e["values"]["latency_ms"] == pytest.approx(info["ratio_min"] * base[0]["values"]["latency_ms"])
