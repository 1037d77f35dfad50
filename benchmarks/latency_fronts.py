"""The analysis of ``latency_aware.py``: fronts in the (measured latency, accuracy) plane, how
far latency falls with MACs, and one arm against another at equal accuracy."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import numpy as np


def latency_front(points: list[tuple[float, float, dict[str, Any]]]) -> list[tuple[float, float, dict[str, Any]]]:
    """Points (latency, accuracy, candidate) not beaten by a faster-or-equal, at-least-as-accurate one; by latency."""
    front: list[tuple[float, float, dict[str, Any]]] = []
    for lat, acc, c in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((lat, acc, c))
    return front


def fastest_reaching(front: list[tuple[float, float, dict[str, Any]]], accuracy: float) -> float:
    """Latency of the fastest front model with at least ``accuracy``."""
    return min(lat for lat, acc, _ in front if acc >= accuracy)


def arm_result(run_dir: Path, latency: dict[str, float], base_ms: float) -> dict[str, Any]:
    """The arm's candidates in the (re-measured latency, accuracy) plane, its front, and per
    front model the speedup / FLOPs-reduction ratio."""
    from automc.results.report import build_report

    report = build_report(run_dir)
    base = report["run"]["base_metrics"]
    done = [c for c in report["candidates"] if c["state"] == "complete"]
    front = latency_front([(latency[str(c["number"])], c["metrics"]["accuracy"], c) for c in done])
    rows = []
    for lat, acc, c in front:
        speedup = base_ms / lat
        flops = base["base_macs"] / c["metrics"]["macs"]
        rows.append({"number": c["number"], "accuracy": acc, "latency_ms": lat, "search_latency_ms": c["metrics"]["latency_ms"], "macs_ratio": c["metrics"]["macs"] / base["base_macs"], "speedup": speedup, "flops_reduction": flops, "speedup_per_flops_reduction": speedup / flops, **_depths(c["params"])})
    fit = latency_fit([c["metrics"]["macs"] / base["base_macs"] for c in done], [latency[str(c["number"])] / base_ms for c in done])
    # what the search recorded against the side-by-side re-measurement: how far its latency objective could be trusted
    agree = sorted(c["metrics"]["latency_ms"] / latency[str(c["number"])] for c in done)
    quantiles = {f"p{q}": agree[round(q / 100 * (len(agree) - 1))] for q in (10, 25, 50, 75, 90)}
    search_vs_remeasured = {**quantiles, "share_over_1.2": sum(r > 1.2 for r in agree) / len(agree), "share_under_0.8": sum(r < 0.8 for r in agree) / len(agree)}
    return {"candidates": len(done), "base_latency_ms": base_ms, "base_accuracy": base.get("base_accuracy"), "front": rows, "latency_fit": fit, "search_vs_remeasured": search_vs_remeasured, "seconds": report["run"]["elapsed_s"]}


def _depths(params: dict[str, Any]) -> dict[str, Any]:
    """The blocks each stage keeps, for a candidate of an arm that searches depth (else nothing)."""
    depth = {k.rpartition(":")[0]: v for k, v in params.items() if k.endswith(":depth")}
    return {"depth": depth} if depth else {}


def latency_fit(macs: list[float], latency: list[float]) -> dict[str, float]:
    """Least-squares ``latency / base = fixed + per_macs * macs / base`` over an arm's candidates.

    ``fixed`` is the share of the unpruned model's latency that pruning channels does not
    remove as this arm prunes them (per-operator dispatch, memory traffic, the unpruned stem
    and classifier). A model kept at ``m`` of the MACs then runs at a speedup / FLOPs reduction
    near ``m / (fixed + per_macs * m)``: with ``fixed`` 0.25 and ``per_macs`` 0.75, under 0.8 below ``m`` of
    0.5, however well the search picks its channels."""
    fixed_, per_macs = np.polyfit(np.asarray(macs), np.asarray(latency), 1)[::-1]
    predicted = fixed_ + per_macs * np.asarray(macs)
    residual = float(np.sum((np.asarray(latency) - predicted) ** 2))
    spread = float(np.sum((np.asarray(latency) - np.mean(latency)) ** 2))
    return {"fixed": float(fixed_), "per_macs": float(per_macs), "r2": 1.0 - residual / spread if spread > 0 else 1.0, "ratio_cap_at_half_macs": 0.5 / float(fixed_ + 0.5 * per_macs)}


def compare(flops: dict[str, Any], latency: dict[str, Any], levels: int = 20) -> dict[str, Any]:
    """Latency reduction of the latency-aware arm at equal accuracy, over the accuracies both
    fronts reach (from the higher of their least accurate models to the lower of their most
    accurate ones)."""
    f = [(r["latency_ms"], r["accuracy"], r) for r in flops["front"]]
    g = [(r["latency_ms"], r["accuracy"], r) for r in latency["front"]]
    lo, hi = max(f[0][1], g[0][1]), min(f[-1][1], g[-1][1])
    grid = list(np.linspace(lo, hi, levels)) if hi > lo else [hi]
    reductions = [1.0 - fastest_reaching(g, a) / fastest_reaching(f, a) for a in grid]
    upper = [r for a, r in zip(grid, reductions) if a >= (lo + hi) / 2]  # the more accurate half: the models one would ship
    return {"accuracy_range": [lo, hi], "levels": len(grid), "latency_reduction_median": statistics.median(reductions), "latency_reduction_min": min(reductions), "latency_reduction_max": max(reductions), "upper_half_levels": len(upper), "latency_reduction_median_upper_half": statistics.median(upper), "latency_reduction_min_upper_half": min(upper), "per_level": [{"accuracy": a, "flops_arm_ms": fastest_reaching(f, a), "latency_arm_ms": fastest_reaching(g, a)} for a in grid]}
