"""Elastic ResNet-56 (depth + width) against width-only pruning at the same MACs target, both
recovered with the same KD recipe: which is more accurate on ``test-exact``?

Runs ``experiments/elastic_resnet56.yaml`` (DDPG on the ``elastic`` space, every episode within
50% of the MACs, the best candidate recovered by 8 epochs of response KD) and — unless its
result is already in ``benchmarks/results/recovery_resnet56.json`` (written by
``recovery_headline.py --model resnet56`` from ``experiments/amc_resnet56_recovery.yaml``, the
same setting without depth) or ``--rerun-width`` is given — the width-only twin. Both are
evaluated, BN-recalibrated and recovered, on ``test-exact`` (1,000 pixel-exact test images)
and ``test-jpeg`` (10,000, lossy); no test image chose a policy. Resumable: rerun the same
command after any interruption. Writes ``benchmarks/results/elastic_resnet56.json``::

    nohup .venv/bin/python benchmarks/elastic_resnet56.py --data-dir ../shared/data > el56.log &
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from recovery_headline import REPO, TESTS, _candidates, _cli, _cpu, _evaluate

RESULTS = REPO / "benchmarks" / "results"


def _side(experiment: Path, run: Path, data_dir: str, threads: int, env: dict[str, str]) -> dict[str, Any]:
    """Search (with the experiment's KD recovery of its best candidate), then test accuracy
    before and after recovery, the kept MACs and, for the elastic space, the depth chosen."""
    from automc.run import RunDir

    search = _cli("search", str(experiment), "--run-dir", str(run), "--no-report", env=env)
    kd = search["recovered"][0]
    number = int(kd["number"])
    record = next(r for r in RunDir(run).recoveries() if r["number"] == number and r["key"] == kd["key"])
    before = record["before"]
    return {
        "experiment": experiment.name,
        "candidate": number,
        "macs_ratio": before["macs"] / before["base_macs"],
        "search_candidates": search["finished"],
        "search_elapsed_s": search.get("elapsed_s"),
        "kd_train_seconds": record["train_seconds"],
        "depth": {k: v for k, v in _params(run, number).items() if k.endswith(":depth")},
        "test_accuracy": {
            "BN recalibrated": _evaluate(run, number, data_dir, None, threads),
            "KD fine-tune": _evaluate(run, number, data_dir, kd["key"], threads),
        },
    }


def _params(run: Path, number: int) -> dict[str, Any]:
    from automc.config import parse_config
    from automc.run import RunDir

    rd = RunDir(run)
    return dict(next(c for c in _candidates(rd, parse_config(rd.read_config())) if c.number == number).params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rerun-width", action="store_true", help="run the width-only twin even if its result is recorded")
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir  # the evaluation below runs in this process
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    elastic = _side(REPO / "experiments" / "elastic_resnet56.yaml", RESULTS / "elastic_resnet56", args.data_dir, args.threads, env)
    recorded = RESULTS / "recovery_resnet56.json"
    if recorded.is_file() and not args.rerun_width:
        old = json.loads(recorded.read_text())
        width = {
            "experiment": "amc_resnet56_recovery.yaml",
            "recorded_in": str(recorded.relative_to(REPO)),
            "cpu": old.get("cpu"),
            "candidate": old["candidate"],
            "macs_ratio": old["macs_ratio"],
            "search_candidates": old["search_candidates"],
            "search_elapsed_s": old["search_elapsed_s"],
            "kd_train_seconds": old["kd_train_seconds"],
            "test_accuracy": {"BN recalibrated": old["test_accuracy"]["pruned, BN recalibrated"], "KD fine-tune": old["test_accuracy"]["pruned + KD fine-tune"]},
        }
    else:
        width = _side(REPO / "experiments" / "amc_resnet56_recovery.yaml", RESULTS / "recovery_resnet56", args.data_dir, args.threads, env)
    result = {"elastic (depth + width)": elastic, "width only": width, "cpu": _cpu(), "threads": args.threads}
    (RESULTS / "elastic_resnet56.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"ResNet-56 at <= 50% of the MACs, DDPG, {elastic['search_candidates']} candidates, KD recovery ({_cpu()}, {args.threads} threads)")
    print(f"{'':26}{'MACs':>8}" + "".join(f"{s + ' ' + when:>26}" for s in TESTS for when in ("BN", "KD")))
    for name in ("elastic (depth + width)", "width only"):
        side = result[name]
        acc = side["test_accuracy"]
        print(f"{name:26}{100 * side['macs_ratio']:>7.1f}%" + "".join(f"{100 * acc[w][s]:>25.2f}%" for s in TESTS for w in ("BN recalibrated", "KD fine-tune")))
    print(f"elastic depth kept: {elastic['depth']}")


if __name__ == "__main__":
    main()
