"""The analysis behind the latency-aware benchmark's figures (benchmarks/latency_fronts.py):
fronts, the equal-accuracy comparison and the latency fit, on hand-made numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "latency_fronts.py"


@pytest.fixture(scope="module")
def fronts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("latency_fronts", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("latency_fronts", module)
    spec.loader.exec_module(module)
    return module


def _rows(points: list[tuple[float, float]]) -> dict:
    return {"front": [{"latency_ms": lat, "accuracy": acc} for lat, acc in points]}


def test_front_keeps_only_models_no_faster_one_matches(fronts: ModuleType) -> None:
    points = [(1.0, 0.9, "a"), (0.5, 0.6, "b"), (0.7, 0.6, "c"), (0.8, 0.85, "d"), (0.5, 0.5, "e")]
    assert [c for _, _, c in fronts.latency_front(points)] == ["b", "d", "a"]
    front = fronts.latency_front(points)
    assert fronts.fastest_reaching(front, 0.7) == 0.8
    assert fronts.fastest_reaching(front, 0.6) == 0.5


def test_compare_reads_the_reduction_at_equal_accuracy(fronts: ModuleType) -> None:
    flops = _rows([(1.0, 0.5), (2.0, 0.7), (4.0, 0.9)])
    faster = _rows([(0.8, 0.5), (1.6, 0.7), (3.2, 0.9)])  # 20% faster at every accuracy
    out = fronts.compare(flops, faster, levels=9)
    assert out["accuracy_range"] == [0.5, 0.9]
    assert out["latency_reduction_median"] == pytest.approx(0.2)
    assert out["latency_reduction_min"] == pytest.approx(0.2)
    assert out["latency_reduction_median_upper_half"] == pytest.approx(0.2)
    slower = fronts.compare(flops, _rows([(1.1, 0.5), (2.2, 0.7), (4.4, 0.95)]), levels=9)
    assert slower["accuracy_range"] == [0.5, 0.9]  # only the accuracies both fronts reach
    assert slower["latency_reduction_median"] == pytest.approx(-0.1)


def test_compare_upper_half_is_the_more_accurate_levels(fronts: ModuleType) -> None:
    flops = _rows([(1.0, 0.5), (2.0, 0.9)])
    latency = _rows([(1.0, 0.5), (1.0, 0.6), (1.5, 0.9)])  # equal at the bottom, 25% faster at the top
    out = fronts.compare(flops, latency, levels=6)  # levels 0.5, 0.58, …, 0.9; the upper half from 0.7
    assert out["upper_half_levels"] == 3
    assert out["latency_reduction_median_upper_half"] == pytest.approx(0.25)
    assert out["latency_reduction_min"] == pytest.approx(0.0)


def test_latency_fit_recovers_the_fixed_share(fronts: ModuleType) -> None:
    macs = [0.3, 0.5, 0.7, 0.9, 1.0]
    fit = fronts.latency_fit(macs, [0.3 + 0.7 * m for m in macs])
    assert fit["fixed"] == pytest.approx(0.3)
    assert fit["per_macs"] == pytest.approx(0.7)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["ratio_cap_at_half_macs"] == pytest.approx(0.5 / 0.65)


def test_depths_only_for_candidates_that_search_depth(fronts: ModuleType) -> None:
    assert fronts._depths({"layer1:depth": 2, "conv1:ratio": 0.5}) == {"depth": {"layer1": 2}}
    assert fronts._depths({"conv1:ratio": 0.5}) == {}
