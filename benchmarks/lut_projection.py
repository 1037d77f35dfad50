"""What projecting onto a lookup-table latency target costs: building each step vs reading the policy.

A ``target: {latency_ms: ...}`` on the ``lut`` profile holds for every candidate. Until the
table could be read off a policy's channel counts (``LookupTableProfile.policy_estimate``),
each proposal's projection built the pruned model several times to settle on the target
(``policy_path.largest_near``). This projects the same random proposals both ways, side by
side (alternating, one proposal at a time): ResNet-20, channel pruning on all groups,
``lbound: 0.2``, ``round_to: 8`` (shapes only: untrained weights). It prints the time per
projection, the builds per projection, and where the projected policies land against the
target (their table latency, checked on the built model). Seconds, plus the table::

    .venv/bin/python benchmarks/lut_projection.py [--lut r20_lut.json] [--target 0.6]

Without ``--lut`` a table is built first on ``onnxruntime-cpu`` (one thread, step 8, ~40 s).
Writes ``benchmarks/results/lut_projection_resnet20_<cpu>.json`` (``--result`` to name another).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from recovery_headline import REPO, _cpu, _cpu_kind

from automc.atomic import atomic_write_text
from automc.device_profiles.lut import LookupTableProfile, build_lut
from automc.measure.profiles import build_profile
from automc.models import build_model
from automc.search.projection import Projector
from automc.search_spaces.channel_pruning import ChannelPruningSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lut", type=Path, help="a table for this model and space (default: build one, ~40 s)")
    ap.add_argument("--target", type=float, default=0.6, help="latency target, fraction of the unpruned model's")
    ap.add_argument("--proposals", type=int, default=30)
    ap.add_argument("--interpolation", default="ceil", choices=("ceil", "linear"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", type=Path, help="JSON to write (default: benchmarks/results/lut_projection_resnet20_<cpu>.json)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, x = build_model("resnet20").eval(), torch.zeros(1, 3, 32, 32)
    space = ChannelPruningSpace(model, x, mode="all", lbound=0.2, round_to=8)
    if args.lut:
        table: Any = str(args.lut)
    else:
        t0 = time.perf_counter()
        table = build_lut(model, space, build_profile("onnxruntime-cpu", {"threads": 1}), x, step=8)
        print(f"table: {table['provenance']['measurements']} layer measurements in {time.perf_counter() - t0:.0f} s")
    lut = LookupTableProfile(table, interpolation=args.interpolation)
    base = {"latency_ms": lut.measure(model, x).values["latency_ms"]}
    limits = [{"metric": "latency_ms", "max": args.target * base["latency_ms"], "spec": f"{args.target:.0%}", "fraction": args.target}]
    builds = [0]

    def exact(params: Mapping[str, Any]) -> Mapping[str, float]:
        builds[0] += 1
        return lut.measure(space.apply(model, params), x).values

    reading = lut.policy_estimate(model, space, x)
    assert reading is not None, "the table cannot be read off this space's policies"
    arms = {
        "build each step": Projector(space, limits, base, analytic=["latency_ms"], exact=exact),
        "read the policy": Projector(space, limits, base, analytic=["latency_ms"], exact=exact, estimates={"latency_ms": lambda p: reading(p)["latency_ms"] / base["latency_ms"]}),
    }
    assert arms["build each step"].verify == {"latency_ms"} and arms["read the policy"].verify == set()
    rng = np.random.default_rng(args.seed)
    stats: dict[str, dict[str, list[float]]] = {a: {"ms": [], "builds": [], "of_target": []} for a in arms}
    for _ in range(args.proposals):
        proposal = space.sample(rng)
        for name, projector in arms.items():
            before, t0 = builds[0], time.perf_counter()
            projected = projector(proposal)
            stats[name]["ms"].append((time.perf_counter() - t0) * 1e3)
            stats[name]["builds"].append(builds[0] - before)
            stats[name]["of_target"].append(float(exact(projected)["latency_ms"]) / limits[0]["max"])
    summary = {
        name: {
            "ms_per_projection_median": statistics.median(s["ms"]),
            "builds_per_projection_mean": statistics.fmean(s["builds"]),
            "latency_of_target": {"min": min(s["of_target"]), "median": statistics.median(s["of_target"]), "max": max(s["of_target"])},
            "over_target": sum(v > 1.0 for v in s["of_target"]),
            **s,
        }
        for name, s in stats.items()
    }
    speedup = summary["build each step"]["ms_per_projection_median"] / summary["read the policy"]["ms_per_projection_median"]
    doc = {"cpu": _cpu(), "target": args.target, "interpolation": args.interpolation, "proposals": args.proposals, "seed": args.seed, "arms": summary, "speedup": speedup}
    path = args.result or REPO / "benchmarks" / "results" / f"lut_projection_resnet20_{_cpu_kind(doc['cpu'])}.json"
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    print(f"ResNet-20, all groups, round_to 8, target {args.target:.0%} of the table's latency, {args.proposals} proposals, {doc['cpu']}")
    print(f"{'projection':>16}{'ms / proposal':>15}{'builds':>8}{'latency / target: min':>24}{'median':>8}{'max':>7}{'over':>6}")
    for name, s in summary.items():
        lat = s["latency_of_target"]
        print(f"{name:>16}{s['ms_per_projection_median']:>15.1f}{s['builds_per_projection_mean']:>8.1f}{lat['min']:>24.3f}{lat['median']:>8.3f}{lat['max']:>7.3f}{s['over_target']:>6}")
    print(f"reading the policy is {speedup:.0f}× faster per projection (median); wrote {path}")


if __name__ == "__main__":
    main()
