"""Latency you can bank on: a latency-aware search against a FLOPs-aware one, by measured latency.

Both arms search ResNet-20's channels (all groups, pretrained, CIFAR-10; accuracy on 1,000
*training* images after BN recalibration) with NSGA-II for ``--candidates`` candidates, and
both measure every candidate on ``onnxruntime-cpu`` (1 thread, batch 1):

- **FLOPs-aware**: objectives accuracy and MACs, channels rounded to multiples of 8
  (``round_to: 8``, the README's advice for latency);
- **latency-aware**: objectives accuracy and measured latency, channels rounded per group to
  the counts ``automc profile widths`` measured on this CPU (``widths:``).

Each arm's front is then taken in the (measured latency, accuracy) plane — the FLOPs arm's
too, from its measured latencies, which favours it — and compared at equal accuracy: for
accuracy levels over the range both fronts cover, the fastest model of each arm reaching it.
Also printed, per front model: measured speedup over the uncompressed model divided by its
FLOPs reduction (1.0: latency falls as fast as FLOPs).

Resumable (the widths file and both run folders are kept under ``--out``; rerun to continue)::

    nohup .venv/bin/python benchmarks/latency_aware.py --data-dir ../shared/data > lat.log &

Writes ``OUT/latency_aware.json`` and ``benchmarks/results/latency_aware_resnet20.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from recovery_headline import REPO, _cli, _cpu

ORT = {"name": "onnxruntime-cpu", "config": {"threads": 1}}


def config(arm: str, widths: Path, candidates: int, data_dir: str, seed: int) -> dict[str, Any]:
    """The experiment of one arm."""
    space = {"mode": "all", "lbound": 0.2, "round_to": 8} if arm == "flops" else {"mode": "all", "lbound": 0.2, "widths": str(widths)}
    cost = "macs" if arm == "flops" else "latency_ms"
    return {
        "name": f"latency_aware_{arm}",
        "seed": seed,
        "model": {"name": "resnet20", "weights": "pretrained"},
        "data": {"dataset": "cifar10", "data_dir": data_dir, "eval_split": "train-exact", "calibration_split": "train-exact", "validation": 1000, "calibration_batches": 8},
        "space": {"name": "channel_pruning", "config": space},
        "profiles": [{"name": "flops"}, ORT],
        "reward": {"name": "accuracy"},
        "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": cost, "direction": "minimize"}],
        "agent": {"name": "optuna-nsga2", "config": {"population_size": 20}},
        "budget": {"candidates": candidates},
    }


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


def arm_result(run_dir: Path) -> dict[str, Any]:
    """The arm's candidates in the (measured latency, accuracy) plane, its front, and per
    front model the speedup / FLOPs-reduction ratio."""
    from automc.results.report import build_report

    report = build_report(run_dir)
    base = report["run"]["base_metrics"]
    done = [c for c in report["candidates"] if c["state"] == "complete" and "latency_ms" in c["metrics"]]
    front = latency_front([(c["metrics"]["latency_ms"], c["metrics"]["accuracy"], c) for c in done])
    rows = []
    for lat, acc, c in front:
        speedup = base["base_latency_ms"] / lat
        flops = base["base_macs"] / c["metrics"]["macs"]
        rows.append({"number": c["number"], "accuracy": acc, "latency_ms": lat, "macs_ratio": c["metrics"]["macs"] / base["base_macs"], "speedup": speedup, "flops_reduction": flops, "speedup_per_flops_reduction": speedup / flops})
    return {"candidates": len(done), "base_latency_ms": base["base_latency_ms"], "base_accuracy": base.get("base_accuracy"), "front": rows, "seconds": report["run"]["elapsed_s"]}


def compare(flops: dict[str, Any], latency: dict[str, Any], levels: int = 20) -> dict[str, Any]:
    """Latency reduction of the latency-aware arm at equal accuracy, over the accuracies both
    fronts reach (from the higher of their least accurate models to the lower of their most
    accurate ones)."""
    f = [(r["latency_ms"], r["accuracy"], r) for r in flops["front"]]
    g = [(r["latency_ms"], r["accuracy"], r) for r in latency["front"]]
    lo, hi = max(f[0][1], g[0][1]), min(f[-1][1], g[-1][1])
    grid = list(np.linspace(lo, hi, levels)) if hi > lo else [hi]
    reductions = [1.0 - fastest_reaching(g, a) / fastest_reaching(f, a) for a in grid]
    return {"accuracy_range": [lo, hi], "levels": len(grid), "latency_reduction_median": statistics.median(reductions), "latency_reduction_min": min(reductions), "latency_reduction_max": max(reductions), "per_level": [{"accuracy": a, "flops_arm_ms": fastest_reaching(f, a), "latency_arm_ms": fastest_reaching(g, a)} for a in grid]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latency_aware")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the searches (the latency profile uses 1)")
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    args.out.mkdir(parents=True, exist_ok=True)
    widths = args.out / "widths.json"
    if not widths.is_file():  # written atomically: present means complete
        _cli("profile", "widths", "--model", "resnet20", "--weights", "pretrained", "--space", "channel_pruning", "--space-arg", "mode=all", "--space-arg", "lbound=0.2", "--device", ORT["name"], "--device-arg", "threads=1", "--out", str(widths), env=env)
    arms: dict[str, Any] = {}
    for arm in ("flops", "latency"):
        cfg = config(arm, widths, args.candidates, args.data_dir, args.seed)
        exp = args.out / f"{arm}.yaml"
        exp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_dir = args.out / arm
        _cli("search", str(exp), "--run-dir", str(run_dir), "--no-report", env=env)
        arms[arm] = arm_result(run_dir)
    summary = {
        "task": "resnet20, channel pruning (all groups), NSGA-II, 1,000 validation images (train-exact), onnxruntime-cpu 1 thread batch 1",
        "candidates": args.candidates,
        "widths": {g: e["widths"] for g, e in json.loads(widths.read_text())["groups"].items()},
        "arms": arms,
        "latency_aware_vs_flops_aware": compare(arms["flops"], arms["latency"]),
        "cpu": _cpu(),
    }
    text = json.dumps(summary, indent=2) + "\n"
    (args.out / "latency_aware.json").write_text(text)
    if args.candidates >= 100:
        (REPO / "benchmarks" / "results" / "latency_aware_resnet20.json").write_text(text)
    cmp_ = summary["latency_aware_vs_flops_aware"]
    print(f"ResNet-20, {args.candidates} NSGA-II candidates per arm, measured on onnxruntime-cpu (1 thread)")
    for arm, a in arms.items():
        ratios = [r["speedup_per_flops_reduction"] for r in a["front"]]
        print(f"{arm:>8}: {a['candidates']} candidates, front of {len(a['front'])}; speedup / FLOPs reduction on the front: median {statistics.median(ratios):.2f} (min {min(ratios):.2f})")
    print(f"latency-aware vs FLOPs-aware at equal accuracy ({100 * cmp_['accuracy_range'][0]:.1f}-{100 * cmp_['accuracy_range'][1]:.1f}%): latency {100 * cmp_['latency_reduction_median']:.1f}% lower (median over {cmp_['levels']} levels; min {100 * cmp_['latency_reduction_min']:.1f}%, max {100 * cmp_['latency_reduction_max']:.1f}%)")


if __name__ == "__main__":
    main()
