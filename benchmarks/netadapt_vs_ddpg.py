"""NetAdapt against DDPG on ResNet-20's latency target, at an equal number of evaluated
candidates: which gives the faster and more accurate model once both are recovered?

1. ``experiments/netadapt_resnet20_latency.yaml``: NetAdapt shrinks the pretrained ResNet-20
   until its measured latency (onnxruntime, 1 thread) is at most 60% of the base model's;
   every proposal is fine-tuned 100 KD steps before it is scored; the best is recovered by KD.
2. The DDPG twin: the same file with ``agent: ddpg`` and the budget set to the number of
   candidates NetAdapt evaluated — same space, target (projected for every agent), proposal
   fine-tune, validation images and recovery.
3. Both recovered models and the base model are measured again side by side (``--rounds``
   interleaved rounds, median) and evaluated on ``test-exact`` (1,000 pixel-exact test images
   no search step saw) and all 10,000 ``test-jpeg`` images, with McNemar's exact paired test
   of DDPG's model against NetAdapt's on each.

Resumable (run folders under ``--out``; rerun after any interruption). Writes
``benchmarks/results/netadapt_vs_ddpg_resnet20.json``::

    nohup .venv/bin/python benchmarks/netadapt_vs_ddpg.py --data-dir ../shared/data > na.log &
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import yaml
from mnas_cifar10 import _mcnemar, tested
from recovery_headline import REPO, _cli, _cpu, _recovered

EXPERIMENT = REPO / "experiments" / "netadapt_resnet20_latency.yaml"


def _twin(out: Path, candidates: int) -> Path:
    """The experiment with DDPG in NetAdapt's place and NetAdapt's candidate count."""
    raw = yaml.safe_load(EXPERIMENT.read_text())
    raw.update(name="ddpg_resnet20_latency", agent={"name": "ddpg", "config": {"warmup_episodes": max(4, candidates // 5)}}, budget={"candidates": candidates})
    path = out / "ddpg.yaml"
    if not path.is_file() or yaml.safe_load(path.read_text()) != raw:
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _models(runs: dict[str, tuple[Path, int, str]]) -> tuple[list[tuple[str, Any]], Any]:
    """The base model and each arm's recovered model (in that order), and an example input."""
    from automc.config import parse_config
    from automc.run import RunDir
    from automc.search.context import build_context

    models: list[tuple[str, Any]] = []
    x = None
    for arm, (run, number, key) in runs.items():
        rd = RunDir(run)
        ctx = build_context(parse_config(rd.read_config()), rd, measure_base=False, cache=False, train=False)
        x = ctx.example_input
        if not models:
            models.append(("base", ctx.model.eval()))
        models.append((arm, _recovered(ctx, rd, number, key).eval()))
    return models, x


def _remeasure(models: list[tuple[str, Any]], x: Any, rounds: int) -> dict[str, float]:
    """Every model on one onnxruntime profile, ``rounds`` interleaved rounds, the median (ms)."""
    from automc.measure.profiles import build_profile

    profile = build_profile("onnxruntime-cpu", {"threads": 1, "sessions": 3})
    times: dict[str, list[float]] = {name: [] for name, _ in models}
    for r in range(rounds):
        for name, model in models if r % 2 == 0 else models[::-1]:
            times[name].append(profile.measure(model, x).values["latency_ms"])
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "netadapt_vs_ddpg")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    args.out.mkdir(parents=True, exist_ok=True)

    arms: dict[str, dict[str, Any]] = {}
    na = _cli("search", str(EXPERIMENT), "--run-dir", str(args.out / "netadapt"), "--no-report", env=env)
    arms["netadapt"] = {"run": args.out / "netadapt", "search": na}
    dd = _cli("search", str(_twin(args.out, int(na["finished"]))), "--run-dir", str(args.out / "ddpg"), "--no-report", env=env)
    arms["ddpg"] = {"run": args.out / "ddpg", "search": dd}
    for arm in arms.values():
        rec = arm["search"]["recovered"][0]
        arm["number"], arm["key"] = int(rec["number"]), rec["key"]
    models, x = _models({name: (a["run"], a["number"], a["key"]) for name, a in arms.items()})
    latency = _remeasure(models, x, args.rounds)
    tests = {name: tested(model, args.data_dir, args.threads) for name, model in models}
    result: dict[str, Any] = {"cpu": _cpu(), "threads": args.threads, "rounds": args.rounds, "base_latency_ms": latency["base"], "arms": {}}
    for name, a in arms.items():
        result["arms"][name] = {
            "candidates": a["search"]["finished"],
            "search_elapsed_s": a["search"].get("elapsed_s"),
            "best": a["number"],
            "latency_ms": latency[name],
            "latency_ratio": latency[name] / latency["base"],
            "test_exact_after_recovery": tests[name]["test"],
            "test_jpeg_after_recovery": tests[name]["test_jpeg"],
        }
    result["ddpg_vs_netadapt_mcnemar"] = _mcnemar(tests["ddpg"], tests["netadapt"])
    result["base_test_exact"], result["base_test_jpeg"] = tests["base"]["test"], tests["base"]["test_jpeg"]
    (REPO / "benchmarks" / "results" / "netadapt_vs_ddpg_resnet20.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"ResNet-20, latency <= 60% ({_cpu()}, onnxruntime 1 thread, median of {args.rounds} interleaved rounds)")
    print(f"{'':12}{'candidates':>12}{'latency ms':>12}{'vs base':>9}{'test-exact':>12}{'test-jpeg':>11}")
    print(f"{'base':12}{'':>12}{latency['base']:>12.3f}{'':>9}{100 * result['base_test_exact']:>11.1f}%{100 * result['base_test_jpeg']:>10.2f}%")
    for name, r in result["arms"].items():
        print(f"{name:12}{r['candidates']:>12}{r['latency_ms']:>12.3f}{100 * r['latency_ratio']:>8.0f}%{100 * r['test_exact_after_recovery']:>11.1f}%{100 * r['test_jpeg_after_recovery']:>10.2f}%")
    for split, m in result["ddpg_vs_netadapt_mcnemar"].items():
        print(f"{split}: only DDPG's right on {m['only_it_right']}, only NetAdapt's on {m['only_baseline_right']}; McNemar exact p = {m['p']:.3f}")


if __name__ == "__main__":
    main()
