"""Seconds per candidate and how much of it is not model forward passes (issue 14's targets:
≤ 1.5 s per ResNet-20 candidate with 1,000 validation images and 8 calibration batches of
64 on 2 cores, ≤ 10% outside forward passes, ≤ 2 GiB resident for a 100-candidate search).

One in-process search of the pretrained CIFAR-10 ResNet-20 (channel pruning, FLOPs profile,
``--agent``, ``--candidates``) into a fresh run folder, timed from inside:

* **forward**: BN recalibration's and evaluation's forward passes (the work a candidate must
  do), summed by wrapping :func:`automc.measure.evaluator.recalibrate_batchnorm` and
  :meth:`Evaluator.__call__`;
* **compress**: the space's ``apply`` (copy, prune, least-squares re-fit) — and the target
  projection, when ``--target`` is given;
* **profile**: the profiles' measurements;
* **loop**: everything else of the search loop's wall time (agent, store, ledger, saving the
  agent's state).

Prints a breakdown per candidate, the fraction outside forward passes, and the process's peak
resident memory, beside a second search for a ratio measured in the same run (``--compare``:
the evaluator in NCHW, or channel pruning tracing a fresh copy of the model per candidate)::

    .venv/bin/python benchmarks/candidate_overhead.py --data-dir ../shared/data [--candidates 100] [--compare retrace]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from agents_resnet20 import resnet_config
from recovery_headline import REPO, _cpu

import automc.measure.evaluator as evaluator_mod
import automc.search.context as context_mod
from automc.config import parse_config
from automc.search.loop import run_experiment


class Clock:
    """Wall-time sums of the wrapped calls, by label; ``inner`` ones count only while an
    ``outer`` call runs (forward passes of candidates, not of the setup's base model)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.outer = 0

    def wrap(self, label: str, fn: Any, *, outer: bool = False) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not outer and not self.outer:
                return fn(*args, **kwargs)
            self.outer += outer
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.outer -= outer
                self.total[label] = self.total.get(label, 0.0) + time.perf_counter() - t0

        return timed


def experiment(args: argparse.Namespace) -> dict[str, Any]:
    """The agents benchmark's ResNet-20 task (its target replaced by ``--target``)."""
    cfg = resnet_config("overhead", args.agent, {}, args.mode, args.seed, args.candidates, args.data_dir)
    cfg["name"] = "overhead"
    cfg.pop("target")
    if args.target:
        cfg["target"] = {"macs": args.target}
    return cfg


def one_search(args: argparse.Namespace, clock: Clock, *, nhwc: bool = True, retrace: bool = False) -> dict[str, Any]:
    """One search into a fresh folder; its per-candidate breakdown. For the side-by-side
    ratios: ``nhwc=False`` keeps the evaluator in NCHW; ``retrace=True`` makes channel pruning
    copy and trace the model for every candidate (as before the traced copy was kept)."""
    import functools

    import automc.build as build_mod
    from automc.search_spaces.channel_pruning import ChannelPruningSpace

    build_mod.EvaluatorConfig = functools.partial(evaluator_mod.EvaluatorConfig, channels_last=None if nhwc else False)
    if not hasattr(ChannelPruningSpace, "_kept_traced_for"):
        ChannelPruningSpace._kept_traced_for = ChannelPruningSpace._traced_for
    ChannelPruningSpace._traced_for = (lambda self, model: None) if retrace else ChannelPruningSpace._kept_traced_for
    clock.total.clear()
    cfg = parse_config(experiment(args))
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_experiment(cfg, Path(tmp) / "run")
        from automc.results.report import open_run

        cands = [c for c in open_run(Path(tmp) / "run").store.candidates() if c.state == "complete"]
    n = max(1, summary["finished"])
    loop_s = float(summary["elapsed_s"])  # the loop's own clock: setup and the base model's measurement excluded
    sums = {k: sum(float(c.timings.get(k, 0.0)) for c in cands) for k in ("compress_s", "evaluate_s", "profile_s")}
    forward = clock.total.get("forward", 0.0)
    # compress_s includes BN recalibration (a forward): what remains is the copy and the pruning
    compress = sums["compress_s"] - (forward - sums["evaluate_s"])
    projection = clock.total.get("projection", 0.0)
    rows = {
        "forward passes (BN recalibration + evaluation)": forward,
        "compress (copy, prune, re-fit)": compress,
        "target projection": projection,
        "profiles": sums["profile_s"],
        "loop (agent, store, ledger, agent state)": loop_s - clock.total.get("candidate", 0.0) - projection,
    }
    return {"candidates": n, "seconds_per_candidate": loop_s / n, "breakdown_s_per_candidate": {k: v / n for k, v in rows.items()}, "outside_forward": 1.0 - forward / loop_s, "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--agent", default="random")
    ap.add_argument("--mode", default="all", choices=("all", "inner_only"))
    ap.add_argument("--target", type=float, default=0.5, help="MACs target (fraction; 0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compare", choices=("nchw", "retrace", "none"), default="nchw", help="a second search side by side: evaluated in NCHW, or pruning a fresh copy traced per candidate")
    ap.add_argument("--out", type=Path, help="also write the figures here (JSON)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = Clock()
    evaluator_mod.recalibrate_batchnorm = clock.wrap("forward", evaluator_mod.recalibrate_batchnorm)
    evaluator_mod.Evaluator.__call__ = clock.wrap("forward", evaluator_mod.Evaluator.__call__)
    context_mod.evaluate_candidate = clock.wrap("candidate", context_mod.evaluate_candidate, outer=True)
    import automc.search.executors as executors_mod
    import automc.search.projection as projection_mod

    executors_mod.evaluate_candidate = context_mod.evaluate_candidate
    projection_mod.Projector.__call__ = clock.wrap("projection", projection_mod.Projector.__call__, outer=True)
    runs = {"nhwc": one_search(args, clock)}
    if args.compare != "none":
        runs[args.compare] = one_search(args, clock, nhwc=args.compare != "nchw", retrace=args.compare == "retrace")
    heads = {"nhwc": "NHWC (default)", "nchw": "NCHW", "retrace": "traced per cand."}
    print(f"ResNet-20, {runs['nhwc']['candidates']} candidates ({args.agent}, {args.mode} groups" + (f", target macs {args.target:g}" if args.target else "") + f"), {args.threads} threads, {_cpu()}")
    print(f"{'s/candidate':48}" + "".join(f"{heads[k]:>18}" for k in runs))
    for label in runs["nhwc"]["breakdown_s_per_candidate"]:
        print(f"{label:48}" + "".join(f"{r['breakdown_s_per_candidate'][label]:>18.3f}" for r in runs.values()))
    print(f"{'total (the loop wall time)':48}" + "".join(f"{r['seconds_per_candidate']:>18.3f}" for r in runs.values()))
    print(f"{'outside forward passes':48}" + "".join(f"{r['outside_forward']:>18.1%}" for r in runs.values()))
    if len(runs) > 1:
        other = runs[args.compare]
        print(f"{heads['nhwc']} vs {heads[args.compare]}: {other['seconds_per_candidate'] / runs['nhwc']['seconds_per_candidate']:.2f}x candidates per second")
    print(f"peak resident memory (the first search): {runs['nhwc']['peak_rss_gib']:.2f} GiB")
    if args.out:
        args.out.write_text(json.dumps({"agent": args.agent, "mode": args.mode, "target": args.target, "threads": args.threads, "cpu": _cpu(), **runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
