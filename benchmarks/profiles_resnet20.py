"""Device-profile benchmark on ResNet-20 (CIFAR input, batch 1, onnxruntime on 1 CPU thread).

Prints, from one run on this machine:
  1. LUT fidelity: a per-layer latency table built for the channel-pruning space, against
     measured latency over 50 random candidates — Kendall tau and MAPE (goal: tau >= 0.9,
     MAPE <= 10%), for candidates across compression levels and for i.i.d. per-group draws;
  2. uniform pruning to 75/50/25% of the FLOPs: measured speedup next to the FLOPs ratio,
     with free channel counts and with counts rounded to 8 (AVX2's vector width; ``--round-to``
     adds e.g. 16, AVX-512's);
  3. the same model measured twice (fresh sessions, no cache): agreement (goal: within 5%).

    .venv/bin/python benchmarks/profiles_resnet20.py [--n 50] [--round-to 1 8 16] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from automc.compress.analysis import analyze
from automc.models import build_model
from automc.measure.profiles import build_profile
from automc.device_profiles.lut import LookupTableProfile, build_lut, fidelity
from automc.search_spaces.channel_pruning import ChannelPruningSpace


def uniform_ratio_for(space: ChannelPruningSpace, model: torch.nn.Module, x: torch.Tensor, fraction: float) -> float:
    """Bisection on the uniform preserve ratio so that MACs ≈ fraction × original."""
    full = analyze(model, x).macs
    lo, hi = space.lbound, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        if analyze(space.apply(model, space.uniform(mid)), x).macs > fraction * full:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--step", type=int, default=8)
    ap.add_argument("--round-to", type=int, nargs="+", default=[1, 8], metavar="N", help="channel roundings of part 2 (default 1 8; 16 is AVX-512's vector width)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, x = build_model("resnet20").eval(), torch.zeros(1, 3, 32, 32)
    measured = build_profile("onnxruntime-cpu", {"threads": 1, "sessions": 3})
    results: dict = {"machine": measured.describe()}

    print("== 1. LUT fidelity (channel_pruning, round_to=8) ==")
    space = ChannelPruningSpace(model, x, round_to=args.step)
    t0 = time.perf_counter()
    table = build_lut(model, space, measured, x, step=args.step, n_fit=20, seed=0)
    build_s = time.perf_counter() - t0
    results["lut"] = {"measurements": table["provenance"]["measurements"], "build_seconds": round(build_s, 1), "constant_ms": table["constant_ms"]}
    print(f"built: {table['provenance']['measurements']} layer measurements in {build_s:.0f} s, constant {table['constant_ms']:.3f} ms")
    from scipy.stats import kendalltau

    for sampler in ("budgets", "iid"):
        for fit in ("constant", "affine"):
            r = fidelity(LookupTableProfile(table, fit=fit), measured, model, space, x, n=args.n, seed=1, sampler=sampler)
            results[f"fidelity_{sampler}_{fit}"] = {k: r[k] for k in ("n", "kendall_tau", "mape_percent")}
            lo, hi = min(r["measured_ms"]), max(r["measured_ms"])
            print(f"{args.n} candidates ({sampler:7}, {fit:8} fit): Kendall tau {r['kendall_tau']:.3f}   MAPE {r['mape_percent']:5.2f}%   (measured {lo:.3f}-{hi:.3f} ms)")
        # the noise ceiling: the same candidates measured again, from scratch
        remeasure = build_profile("onnxruntime-cpu", {"threads": 1, "sessions": 3})  # no run cache: measured every time
        again = fidelity(LookupTableProfile(table), remeasure, model, space, x, n=args.n, seed=1, sampler=sampler)["measured_ms"]
        tau = float(kendalltau(r["measured_ms"], again).statistic)
        mape = float(sum(abs(a - b) / b for a, b in zip(again, r["measured_ms"])) / len(again) * 100)
        results[f"noise_ceiling_{sampler}"] = {"kendall_tau": tau, "mape_percent": mape}
        print(f"{args.n} candidates ({sampler:7}) measured twice:   Kendall tau {tau:.3f}   MAPE {mape:5.2f}%   <- the ceiling any predictor can reach here")

    print("\n== 2. uniform pruning: measured speedup vs FLOPs ratio ==")
    base = measured.measure(model, x).values["latency_ms"]
    full_macs = analyze(model, x).macs
    print(f"unpruned: {full_macs / 1e6:.1f} MMACs, {base:.3f} ms")
    print(f"{'FLOPs kept':>10} {'round_to':>8} {'ratio':>6} {'MMACs':>7} {'FLOPs x':>8} {'latency ms':>11} {'speedup x':>10}")
    rows = []
    for round_to in args.round_to:
        sp = ChannelPruningSpace(model, x, round_to=round_to)
        for fraction in (0.75, 0.5, 0.25):
            r = uniform_ratio_for(sp, model, x, fraction)
            pruned = sp.apply(model, sp.uniform(r))
            macs = analyze(pruned, x).macs
            lat = measured.measure(pruned, x).values["latency_ms"]
            row = {"target": fraction, "round_to": round_to, "ratio": r, "macs": macs, "flops_speedup": full_macs / macs, "latency_ms": lat, "speedup": base / lat}
            rows.append(row)
            print(f"{fraction:>10.0%} {round_to:>8} {r:>6.3f} {macs / 1e6:>7.1f} {row['flops_speedup']:>8.2f} {lat:>11.3f} {row['speedup']:>10.2f}")
    results["uniform"] = rows

    print("\n== 3. repeatability: the same model measured twice, back to back (fresh sessions, no cache) ==")
    nocache = build_profile("onnxruntime-cpu", {"threads": 1, "sessions": 3})  # no run cache: measured every time
    pairs = []
    for i in range(5):
        a = nocache.measure(model, x).values["latency_ms"]
        b = nocache.measure(model, x).values["latency_ms"]
        diff = abs(a - b) / min(a, b) * 100
        pairs.append({"first_ms": a, "second_ms": b, "difference_percent": diff})
        print(f"pair {i + 1}: {a:.3f} ms vs {b:.3f} ms: {diff:.1f}% apart")
    all_ms = [p[k] for p in pairs for k in ("first_ms", "second_ms")]
    within = sum(p["difference_percent"] <= 5 for p in pairs)
    results["repeatability"] = {"pairs": pairs, "pairs_within_5_percent": within, "spread_all_percent": (max(all_ms) - min(all_ms)) / min(all_ms) * 100}
    print(f"{within}/5 pairs within 5% (goal); all 10 figures span {results['repeatability']['spread_all_percent']:.1f}%")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
