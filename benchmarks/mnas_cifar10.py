"""MNasNet at this machine's scale: is a searched architecture more accurate than MobileNetV2
at equal or lower measured latency, when both get the same proxy training?

Runs ``experiments/mnas_cifar10.yaml`` (the controller on the ``architecture`` space over
MobileNetV2-0.5, every candidate trained on the proxy task, latency measured with
onnxruntime on this CPU), then trains MobileNetV2 at width 0.5 and 1.0 with the very same
proxy recipe (the space's default policy at that width), and measures the front and both
baselines on the validation images the search used (``train-exact``, 1,000), on ``test-exact``
(1,000 pixel-exact test images no search step saw) and ``test-jpeg`` (all 10,000, lossy; a
standard error near 0.5 points instead of 1.5), with every latency measured again side by
side (``--rounds`` interleaved rounds, median) and McNemar's paired test against each
baseline a found network is as fast as. Prints the table, writes
``benchmarks/results/<experiment name>.json`` and a PNG of the front against the baselines.

Resumable: the search is a run folder (rerun after any interruption); proxy-trained weights
are kept by architecture, so nothing is trained twice::

    nohup .venv/bin/python benchmarks/mnas_cifar10.py --data-dir ../shared/data > mnas.log &

``--experiment experiments/mnas_cifar10_near_mbv2.yaml`` runs the same comparison on the space
narrowed to MobileNetV2's neighbourhood; results go to ``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from pathlib import Path
from typing import Any

from recovery_headline import REPO, _cpu

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
    return {"width": width, "params": cand.params, "metrics": dict(cand.metrics), **_test(ctx, cand.params, threads)}


SPLITS = {"test": "test-exact", "test_jpeg": "test-jpeg"}


def _test(ctx: Any, params: dict[str, Any], threads: int) -> dict[str, Any]:
    """``test`` (``test-exact``) and ``test_jpeg`` accuracy of the proxy-trained network; also,
    not written out, which images it gets right (``hits``, for the paired test) and the
    network itself (``net``, timed side by side)."""
    from automc.search.context import materialize

    model = materialize(ctx, params).eval()
    return {**tested(model, ctx.config.data.data_dir, threads), "net": model}


def tested(model: Any, data_dir: str, threads: int) -> dict[str, Any]:
    """``model``'s accuracy on every split of :data:`SPLITS` (``test-exact`` and all of
    ``test-jpeg``) and, under ``hits``, which images it gets right (for :func:`_mcnemar`)."""
    import torch

    out: dict[str, Any] = {"hits": {}}
    with _threads(threads), torch.no_grad():
        for key, split in SPLITS.items():
            hits = torch.cat([model(x).argmax(1) == y for x, y in _split(data_dir, split).batches(batch_size=500)])
            out[key], out["hits"][key] = float(hits.float().mean()), hits
    return out


@functools.lru_cache(maxsize=len(SPLITS))
def _split(data_dir: str, split: str) -> Any:
    """A CIFAR-10 test split, loaded once for every network tested on it."""
    from automc.datasets import get_dataset

    return get_dataset("cifar10", data_dir).load(split)


def _mcnemar(found: dict[str, Any], base: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per test split: the images only ``found`` gets right, only ``base`` does, and McNemar's
    exact two-sided p-value (a binomial test on those discordant images)."""
    from scipy.stats import binomtest

    out = {}
    for key, split in SPLITS.items():
        a, b = found["hits"][key], base["hits"][key]
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        out[split] = {"only_it_right": only_a, "only_baseline_right": only_b, "p": float(p)}
    return out


def _remeasure(ctx: Any, entries: list[dict[str, Any]], rounds: int) -> None:
    """Every entry's network timed again on the run's onnxruntime profile, all side by side
    (``rounds`` interleaved rounds, alternating order), the median as ``latency_ms_side_by_side``."""
    import statistics

    from automc.measure.profiles import build_profile

    spec = next(p for p in ctx.config.profiles if p.name == "onnxruntime-cpu")
    profile = build_profile(spec.name, dict(spec.config))
    times: list[list[float]] = [[] for _ in entries]
    for r in range(rounds):
        for i in range(len(entries)) if r % 2 == 0 else reversed(range(len(entries))):
            times[i].append(profile.measure(entries[i]["net"], ctx.example_input).values["latency_ms"])
    for e, ts in zip(entries, times):
        e["latency_ms_side_by_side"] = statistics.median(ts)


def _threads(n: int) -> Any:
    from automc.measure.evaluator import torch_threads

    return torch_threads(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from benchmarks/results/<name>.json")
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--experiment", type=Path, default=EXPERIMENT, help="an MNasNet experiment (architecture space, proxy, latency profile)")
    ap.add_argument("--out", type=Path, default=None, help="run folders (default benchmarks/results/<name>)")
    ap.add_argument("--candidates", type=int, default=None, help="override the experiment's budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds of the side-by-side latency measurement")
    args = ap.parse_args()
    name = args.experiment.stem
    results = REPO / "benchmarks" / "results"
    if args.plot_only:
        saved = json.loads((results / f"{name}.json").read_text())
        _plot(saved["front"], saved["baselines"], results / f"{name}.png")
        return
    out_dir = args.out or results / name
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
    found = [{"number": c.number, "metrics": dict(c.metrics), "params": dict(c.params), **_test(ctx, dict(c.params), args.threads)} for c in members]
    baselines = [_baseline(cfg, out_dir, w, args.threads) for w in (0.5, 1.0)]
    _remeasure(ctx, baselines + found, args.rounds)
    for f in found:  # the paired test against each baseline it is at least as fast as
        f["mcnemar"] = {f"mobilenetv2-{b['width']}": _mcnemar(f, b) for b in baselines if f["latency_ms_side_by_side"] <= b["latency_ms_side_by_side"]}
    for e in baselines + found:
        del e["hits"], e["net"]
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
    print(f"{'':18}{'ms (search)':>12}{'ms (side by side)':>18}{'MMACs':>7}{'val':>7}{'test-exact':>12}{'test-jpeg':>11}")
    for label, e in [(f"MobileNetV2-{b['width']}", b) for b in baselines] + [(f"front #{f['number']}", f) for f in found]:
        m = e["metrics"]
        print(f"{label:18}{m['latency_ms']:>12.3f}{e['latency_ms_side_by_side']:>18.3f}{m['macs'] / 1e6:>7.1f}{100 * m['accuracy']:>6.1f}%{100 * e['test']:>11.1f}%{100 * e['test_jpeg']:>10.1f}%")
    for b in baselines:
        faster = [f for f in found if f["latency_ms_side_by_side"] <= b["latency_ms_side_by_side"]]
        for split, key in (("test-exact", "test"), ("test-jpeg", "test_jpeg")):
            versus = f"mobilenetv2-{b['width']}"
            better = [f"#{f['number']} (McNemar p = {f['mcnemar'][versus][split]['p']:.3f})" for f in faster if f[key] > b[key]]
            print(f"more accurate on {split} than MobileNetV2-{b['width']} at <= its latency (side by side): {', '.join(better) or 'none'}")
    _plot(found, baselines, results / f"{name}.png")


def _plot(found: list[dict[str, Any]], baselines: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def ms(e: dict[str, Any]) -> float:  # side by side where measured so (older results: during the search)
        return float(e.get("latency_ms_side_by_side", e["metrics"]["latency_ms"]))

    splits = [("test", "test-exact (1,000)")] + ([("test_jpeg", "test-jpeg (10,000)")] if all("test_jpeg" in e for e in found + baselines) else [])
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], splits):
        ax.plot([ms(f) for f in found], [100 * f[key] for f in found], "o", label="searched front (chosen on validation)")
        for f in found:
            ax.annotate(f"#{f['number']}", (ms(f), 100 * f[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        for b in baselines:
            ax.plot(ms(b), 100 * b[key], "s", label=f"MobileNetV2-{b['width']}, same proxy training")
        ax.set_title(title)
        ax.set_xlabel("measured latency, ms (onnxruntime, 1 thread)")
        ax.set_ylabel("top-1 after proxy training, %")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
