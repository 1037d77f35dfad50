"""MNasNet at this machine's scale: is a searched architecture more accurate than MobileNetV2
at equal or lower measured latency, when both get the same proxy training?

Runs ``experiments/mnas_cifar10.yaml`` (the controller on the ``architecture`` space over
MobileNetV2-0.5, every candidate trained on the proxy task, latency measured with
onnxruntime on this CPU), then trains MobileNetV2 at width 0.5 and 1.0 with the very same
proxy recipe (the space's default policy at that width), and measures the front and both
baselines on the validation images the search used (``train-exact``, 1,000) and on
``test-exact`` (no search step saw it). Prints the table, writes
``benchmarks/results/mnas_cifar10.json`` and a PNG of the front against the baselines.

Resumable: the search is a run folder (rerun after any interruption); proxy-trained weights
are kept by architecture, so nothing is trained twice::

    nohup .venv/bin/python benchmarks/mnas_cifar10.py --data-dir ../shared/data > mnas.log &

``--experiment experiments/mnas_cifar10_near_mbv2.yaml`` runs the same comparison on the space
narrowed to MobileNetV2's neighbourhood; results go to ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from recovery_headline import REPO, _cpu, _test_accuracy

EXPERIMENT = REPO / "experiments" / "mnas_cifar10.yaml"


def _baseline(cfg: Any, run: Path, width: float, threads: int) -> dict[str, Any]:
    """MobileNetV2 at ``width`` trained with the run's proxy recipe (the architecture space's
    default policy at that width, its weights kept beside the run's), scored like a candidate."""
    from automc.run import RunDir
    from automc.search.context import build_context, evaluate_candidate

    plain = {k: v for k, v in cfg.space.config.items() if k != "choices"}  # the default policy is MobileNetV2 itself
    spec = cfg.model_copy(update={"space": cfg.space.model_copy(update={"config": {**plain, "width": width}})})
    folder = run / f"mobilenetv2-{width}"
    folder.mkdir(parents=True, exist_ok=True)
    ctx = build_context(spec, RunDir(folder))
    with _threads(threads):
        cand = evaluate_candidate(ctx, -1, ctx.space.default_params())
    if not cand.ok:
        raise SystemExit(f"MobileNetV2-{width} failed: {cand.error}")
    return {"width": width, "params": cand.params, "metrics": dict(cand.metrics), "test": _test(ctx, cand.params, threads)}


def _test(ctx: Any, params: dict[str, Any], threads: int) -> float:
    from automc.search.context import materialize

    with _threads(threads):
        return _test_accuracy(materialize(ctx, params), ctx.config.data.data_dir, "test-exact")


def _threads(n: int) -> Any:
    from automc.measure.evaluator import torch_threads

    return torch_threads(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from benchmarks/results/<name>.json")
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--experiment", type=Path, default=EXPERIMENT, help="an MNasNet experiment (architecture space, proxy, latency profile)")
    ap.add_argument("--out", type=Path, default=None, help="run folders (default benchmarks/results/mnas for mnas_cifar10, else .../<name>)")
    ap.add_argument("--candidates", type=int, default=None, help="override the experiment's budget")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    name = args.experiment.stem
    results = REPO / "benchmarks" / "results"
    if args.plot_only:
        saved = json.loads((results / f"{name}.json").read_text())
        _plot(saved["front"], saved["baselines"], results / f"{name}.png")
        return
    out_dir = args.out or results / ("mnas" if name == "mnas_cifar10" else name)  # the first run's folder kept its name
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir
    import yaml

    from automc.config import parse_config
    from automc.results.pareto import pareto_front
    from automc.run import RunDir
    from automc.search.context import build_context
    from automc.search.loop import run_experiment
    from automc.search.snapshot import open_store

    raw = yaml.safe_load(args.experiment.read_text())
    raw["data"]["data_dir"] = args.data_dir
    if args.candidates:
        raw["budget"] = {"candidates": args.candidates}
    cfg = parse_config(raw)
    run = out_dir / "run"
    t0 = time.perf_counter()
    def progress(cand: Any, done: int, target: Any) -> None:
        m = cand.metrics
        what = f"accuracy {100 * m['accuracy']:.1f}%, {m['latency_ms']:.3f} ms, {m['macs'] / 1e6:.1f} MMACs" if cand.ok else f"failed: {cand.error}"
        print(f"[{done}] candidate #{cand.number}: {what}", flush=True)

    with _threads(args.threads):
        summary = run_experiment(cfg, run, on_candidate=progress)
    wall = time.perf_counter() - t0
    rd = RunDir(run)
    cands = [c for c in open_store(rd.storage_url(cfg.storage), cfg.name).candidates() if c.ok]
    front = pareto_front(cands, cfg.objectives, [])
    members = sorted((cands[i] for i in front.front_indices()), key=lambda c: c.metrics["latency_ms"])
    ctx = build_context(cfg, rd, measure_base=False, cache=False, train=False)
    found = [{"number": c.number, "metrics": dict(c.metrics), "params": dict(c.params), "test": _test(ctx, dict(c.params), args.threads)} for c in members]
    baselines = [_baseline(cfg, out_dir, w, args.threads) for w in (0.5, 1.0)]
    seconds = [sum(v for k, v in c.timings.items() if k.endswith("_s")) for c in cands]
    result = {
        "cpu": _cpu(),
        "threads": args.threads,
        "candidates": len(cands),
        "search_wall_s_this_call": wall,
        "seconds_per_candidate": sum(seconds) / max(1, len(seconds)),
        "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))},
        "front": found,
        "baselines": baselines,
    }
    out = results / f"{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nMNasNet-style search, {len(cands)} candidates, {result['seconds_per_candidate']:.0f} s each ({_cpu()}, {args.threads} threads)")
    print(f"{'':24}{'latency ms':>12}{'MMACs':>8}{'val':>8}{'test-exact':>12}")
    for b in baselines:
        m = b["metrics"]
        print(f"{'MobileNetV2-' + str(b['width']):24}{m['latency_ms']:>12.3f}{m['macs'] / 1e6:>8.1f}{100 * m['accuracy']:>7.1f}%{100 * b['test']:>11.1f}%")
    for f in found:
        m = f["metrics"]
        print(f"{'front #' + str(f['number']):24}{m['latency_ms']:>12.3f}{m['macs'] / 1e6:>8.1f}{100 * m['accuracy']:>7.1f}%{100 * f['test']:>11.1f}%")
    for b in baselines:
        better = [f for f in found if f["metrics"]["latency_ms"] <= b["metrics"]["latency_ms"] and f["test"] > b["test"]]
        print(f"more accurate on test-exact than MobileNetV2-{b['width']} at <= its latency: {[f['number'] for f in better] or 'none'}")
    _plot(found, baselines, results / f"{name}.png")


def _plot(found: list[dict[str, Any]], baselines: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([f["metrics"]["latency_ms"] for f in found], [100 * f["test"] for f in found], "o", label="searched front (chosen on validation; test-exact shown)")
    for f in found:
        ax.annotate(f"#{f['number']}", (f["metrics"]["latency_ms"], 100 * f["test"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for b in baselines:
        ax.plot(b["metrics"]["latency_ms"], 100 * b["test"], "s", label=f"MobileNetV2-{b['width']}, same proxy training")
    ax.set_xlabel("measured latency, ms (onnxruntime, 1 thread)")
    ax.set_ylabel("top-1 after proxy training, %")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
