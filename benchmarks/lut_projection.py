"""What projecting onto an analytic target costs: building each step vs reading the policy.

A target on a lookup table's latency (``lut``) or on the accelerator model's latency or
energy (``accelerator``) holds for every candidate. Until those profiles could be read off a
policy's channel counts (their ``policy_estimate``), each proposal's projection built the
pruned model several times to settle on the target (``policy_path.largest_near``). This
projects the same random proposals both ways, side by side (alternating, one proposal at a
time): ResNet-20, channel pruning on all groups, ``lbound: 0.2``, ``round_to: 8`` (for
``accelerator``: random weights, none zero — the reading needs them all stored; the table
reads shapes only). It prints the time per projection, the builds per projection, and where
the projected policies land against the target (checked on the built model)::

    .venv/bin/python benchmarks/lut_projection.py [--lut r20_lut.json] [--target 0.6]
    .venv/bin/python benchmarks/lut_projection.py --profile accelerator --metric energy_mj

Without ``--lut`` a table is built first on ``onnxruntime-cpu`` (one thread, step 8, ~40 s).
Writes ``benchmarks/results/lut_projection_resnet20_<cpu>.json`` (the accelerator:
``accelerator_projection_<metric>_resnet20_<cpu>.json``; ``--result`` to name another).
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
from automc.device_profiles.accelerator import AcceleratorProfile
from automc.device_profiles.lut import LookupTableProfile, build_lut
from automc.measure.profiles import build_profile
from automc.models import build_model
from automc.search.projection import Projector
from automc.search_spaces.channel_pruning import ChannelPruningSpace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="lut", choices=("lut", "accelerator"))
    ap.add_argument("--metric", default="latency_ms", choices=("latency_ms", "energy_mj"), help="the target's metric (energy_mj: accelerator only)")
    ap.add_argument("--lut", type=Path, help="a table for this model and space (default: build one, ~40 s)")
    ap.add_argument("--target", type=float, default=0.6, help="the target, a fraction of the unpruned model's figure")
    ap.add_argument("--proposals", type=int, default=30)
    ap.add_argument("--interpolation", default="ceil", choices=("ceil", "linear"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", type=Path, help="JSON to write (default: benchmarks/results/lut_projection_resnet20_<cpu>.json)")
    args = ap.parse_args()
    if args.metric == "energy_mj" and args.profile == "lut":
        ap.error("--metric energy_mj needs --profile accelerator (a table gives latency only)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, x = build_model("resnet20").eval(), torch.zeros(1, 3, 32, 32)
    space = ChannelPruningSpace(model, x, mode="all", lbound=0.2, round_to=8)
    profile: LookupTableProfile | AcceleratorProfile
    if args.profile == "accelerator":
        profile = AcceleratorProfile()
    elif args.lut:
        profile = LookupTableProfile(str(args.lut), interpolation=args.interpolation)
    else:
        t0 = time.perf_counter()
        table = build_lut(model, space, build_profile("onnxruntime-cpu", {"threads": 1}), x, step=8)
        print(f"table: {table['provenance']['measurements']} layer measurements in {time.perf_counter() - t0:.0f} s")
        profile = LookupTableProfile(table, interpolation=args.interpolation)
    metric = args.metric
    base = {k: float(v) for k, v in profile.measure(model, x).values.items()}
    limits = [{"metric": metric, "max": args.target * base[metric], "spec": f"{args.target:.0%}", "fraction": args.target}]
    builds = [0]

    def exact(params: Mapping[str, Any]) -> Mapping[str, float]:
        builds[0] += 1
        return profile.measure(space.apply(model, params), x).values

    reading = profile.policy_estimate(model, space, x)
    assert reading is not None, f"{args.profile} cannot be read off this space's policies"
    arms = {
        "build each step": Projector(space, limits, base, analytic=[metric], exact=exact),
        "read the policy": Projector(space, limits, base, analytic=[metric], exact=exact, estimates={metric: lambda p: reading(p)[metric] / base[metric]}),
    }
    assert arms["build each step"].verify == {metric} and arms["read the policy"].verify == set()
    rng = np.random.default_rng(args.seed)
    stats: dict[str, dict[str, list[float]]] = {a: {"ms": [], "builds": [], "of_target": []} for a in arms}
    for _ in range(args.proposals):
        proposal = space.sample(rng)
        for name, projector in arms.items():
            before, t0 = builds[0], time.perf_counter()
            projected = projector(proposal)
            stats[name]["ms"].append((time.perf_counter() - t0) * 1e3)
            stats[name]["builds"].append(builds[0] - before)
            stats[name]["of_target"].append(float(exact(projected)[metric]) / limits[0]["max"])
    summary = {
        name: {
            "ms_per_projection_median": statistics.median(s["ms"]),
            "builds_per_projection_mean": statistics.fmean(s["builds"]),
            "figure_of_target": {"min": min(s["of_target"]), "median": statistics.median(s["of_target"]), "max": max(s["of_target"])},
            "over_target": sum(v > 1.0 for v in s["of_target"]),
            **s,
        }
        for name, s in stats.items()
    }
    speedup = summary["build each step"]["ms_per_projection_median"] / summary["read the policy"]["ms_per_projection_median"]
    doc = {"cpu": _cpu(), "profile": args.profile, "metric": metric, "target": args.target, "interpolation": args.interpolation, "proposals": args.proposals, "seed": args.seed, "arms": summary, "speedup": speedup}
    stem = "lut_projection" if args.profile == "lut" else f"accelerator_projection_{metric}"
    path = args.result or REPO / "benchmarks" / "results" / f"{stem}_resnet20_{_cpu_kind(doc['cpu'])}.json"
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    print(f"ResNet-20, all groups, round_to 8, target {args.target:.0%} of {args.profile}'s {metric}, {args.proposals} proposals, {doc['cpu']}")
    print(f"{'projection':>16}{'ms / proposal':>15}{'builds':>8}{'figure / target: min':>23}{'median':>8}{'max':>7}{'over':>6}")
    for name, s in summary.items():
        lat = s["figure_of_target"]
        print(f"{name:>16}{s['ms_per_projection_median']:>15.1f}{s['builds_per_projection_mean']:>8.1f}{lat['min']:>23.3f}{lat['median']:>8.3f}{lat['max']:>7.3f}{s['over_target']:>6}")
    print(f"reading the policy is {speedup:.0f}× faster per projection (median); wrote {path}")


if __name__ == "__main__":
    main()
