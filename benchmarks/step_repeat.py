"""How reproducible the channel step is: ``automc profile widths --context step`` repeated.

The step (``device_profiles/steps.py``) is a property of the CPU and the runtime, so measuring
it again on the same machine should give the same answer. This runs the measurement ``--runs``
times per onnxruntime thread count (ResNet-20, pretrained, all channel groups, ``lbound``
0.2 — what ``benchmarks/latency_aware.py`` measures) and counts the steps chosen. Each file
keeps every round of its measurement, so the same rounds are also read the way the step was
decided before paired rounds (per-model median of the first ``rounds`` rounds, then probe over
twin): how often each rule chose each step, from the very same measurements.

Resumable: the measurements are kept as ``OUT/t<threads>_<i>.json`` (rerun to continue)::

    nohup .venv/bin/python benchmarks/step_repeat.py --data-dir ../shared/data --threads 2 1 --runs 5 &

Writes ``benchmarks/results/step_repeat_resnet20_<cpu>.json`` (``--result`` to name another).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from recovery_headline import REPO, _cli, _cpu, _cpu_kind

from automc.atomic import atomic_write_text


def medians_rule(measured: dict[str, Any], rounds: int, min_efficiency: float) -> int:
    """The step the earlier rule reads off the first ``rounds`` rounds: each model's median
    latency, then per block probe over twin, the first block whose half-block does not pay."""
    times = measured["rounds_ms"]
    for block, probe in measured["probes"].items():  # coarsest first, as measured
        removed = 1.0 - probe["probe_macs_ratio"] / probe["twin_macs_ratio"]
        p, t = statistics.median(times[f"{block}/probe"][:rounds]), statistics.median(times[f"{block}/twin"][:rounds])
        if (1.0 - p / t) / removed < min_efficiency:
            return int(block)
    return 1


def summarize(files: list[Path]) -> dict[str, Any]:
    """Steps chosen by the paired rule and by the medians rule, rounds measured, per file."""
    runs = []
    for f in files:
        where = json.loads(f.read_text())["measured_on"]
        runs.append(
            {
                "file": f.name,
                "date": where["date"],
                "step": where["step"],
                "step_by_medians_of_first_rounds": medians_rule(where, where["rounds_asked"], where["min_efficiency"]),
                "rounds": where["rounds"],
                "efficiency": {b: p["efficiency"] for b, p in where["probes"].items()},
                "unsettled": [b for b, p in where["probes"].items() if not p["settled"]],
                "full_model_ms": where["full_model_ms"],
            }
        )
    return {
        "runs": runs,
        "steps": dict(Counter(str(r["step"]) for r in runs)),
        "steps_by_medians_of_first_rounds": dict(Counter(str(r["step_by_medians_of_first_rounds"]) for r in runs)),
        "rounds": dict(Counter(str(r["rounds"]) for r in runs)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="onnxruntime intra-op thread counts, each measured --runs times")
    ap.add_argument("--runs", type=int, nargs="+", default=[5], help="measurements per thread count (one value for all, or one per --threads)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds asked of each measurement")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "step_repeat")
    ap.add_argument("--result", type=Path, help="result file (default: benchmarks/results/step_repeat_resnet20_<cpu>.json)")
    args = ap.parse_args()
    if min(args.runs) < 1 or args.rounds < 1 or min(args.threads) < 1:
        ap.error("--runs, --rounds and --threads must be >= 1")
    if len(args.runs) not in (1, len(args.threads)):
        ap.error(f"--runs: one value, or one per --threads ({len(args.threads)}), got {len(args.runs)}")
    runs = dict(zip(args.threads, args.runs * len(args.threads) if len(args.runs) == 1 else args.runs))
    env = {**os.environ, "AUTOMC_DATA_DIR": args.data_dir, "OMP_NUM_THREADS": "2"}
    args.out.mkdir(parents=True, exist_ok=True)
    for threads in args.threads:
        done = len(list(args.out.glob(f"t{threads}_*.json")))  # each written atomically: present means complete
        for _ in range(done, runs[threads]):
            i = len(list(args.out.glob("t*_*.json")))
            _cli("profile", "widths", "--model", "resnet20", "--weights", "pretrained", "--space", "channel_pruning", "--space-arg", "mode=all", "--space-arg", "lbound=0.2", "--device", "onnxruntime-cpu", "--device-arg", f"threads={threads}", "--context", "step", "--rounds", str(args.rounds), "--out", str(args.out / f"t{threads}_{i}.json"), env=env)
    cpu = _cpu()
    by_threads = {str(t): summarize(sorted(args.out.glob(f"t{t}_*.json"), key=lambda p: int(p.stem.split("_")[1]))[: runs[t]]) for t in args.threads}
    result = {"task": "automc profile widths --context step, resnet20 (pretrained), channel_pruning mode=all lbound=0.2, onnxruntime-cpu batch 1", "rounds_asked": args.rounds, "cpu": cpu, "threads": by_threads}
    path = args.result or REPO / "benchmarks" / "results" / f"step_repeat_resnet20_{_cpu_kind(cpu)}.json"
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
    for t, s in by_threads.items():
        print(f"{t} thread(s): step {s['steps']} (paired rounds); {s['steps_by_medians_of_first_rounds']} (medians of the first {args.rounds} rounds); rounds measured {s['rounds']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
