"""The recovery headline: AMC's setting (CIFAR-10 ResNet @ ≤ 50% of the MACs), searched, then
recovered by fine-tuning with knowledge distillation — and, on the same policy at equal
epochs, with plain cross-entropy (the KD gain, measured).

Steps, each resumable (rerun the same command after any interruption; finished work is read
back, a recovery continues from its last epoch):

1. ``automc search experiments/amc_<model>_recovery.yaml``: DDPG (every episode meets the
   50% budget), then its ``finetune:`` section recovers the best candidate with response KD;
2. ``automc finetune RUN --best --distill none`` with the same recipe: the cross-entropy twin;
3. both recovered models, the BN-recalibrated candidate and the unpruned model are evaluated
   on ``test-exact`` (1,000 pixel-exact test images) and ``test-jpeg`` (all 10,000, lossy
   copy). The search validates on 1,000 *training* images, so no test image ever
   chose a policy.

Prints a table and writes ``OUT/headline.json`` (and ``benchmarks/results/recovery_<model>.json``)::

    .venv/bin/python benchmarks/recovery_headline.py --model resnet20 --data-dir ../shared/data
    nohup .venv/bin/python benchmarks/recovery_headline.py --model resnet56 ... > r56.log &
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TESTS = ("test-exact", "test-jpeg")


def _cli(*args: str, env: dict[str, str]) -> dict[str, Any]:
    """Run ``automc ARGS --json`` (progress on stderr, passed through); its JSON output."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "automc", *args, "--json"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise SystemExit(f"automc {' '.join(args)} failed with exit {out.returncode}")
    result: dict[str, Any] = json.loads(out.stdout)
    result["_wall_s"] = time.perf_counter() - t0
    return result


def _evaluate(run: Path, number: int, data_dir: str, recovered_key: str | None, threads: int) -> dict[str, float]:
    """Accuracy of candidate ``number`` (search-time weights, or the recovery ``recovered_key``)
    and of the unpruned model on the test splits."""
    from automc.config import parse_config
    from automc.measure.evaluator import torch_threads
    from automc.run import RunDir
    from automc.search.context import build_context, materialize

    rd = RunDir(run)
    cfg = parse_config(rd.read_config())
    ctx = build_context(cfg, rd, measure_base=False, cache=False, train=False)
    with torch_threads(threads):
        if number < 0:
            model = ctx.model
        elif recovered_key is None:
            model = materialize(ctx, next(c for c in _candidates(rd, cfg) if c.number == number).params)
        else:
            model = _recovered(ctx, rd, number, recovered_key)
        return {split: _test_accuracy(model, data_dir, split) for split in TESTS}


def _recovered(ctx: Any, rd: Any, number: int, key: str) -> Any:
    """Candidate ``number`` of the run ``rd`` with the weights of its recovery ``key``."""
    from automc.run import RECOVERY_MODEL

    model = ctx.space.apply(ctx.model, next(c for c in _candidates(rd, ctx.config) if c.number == number).params)
    model.load_state_dict(rd.load_tensors(rd.recovery(number, key) / RECOVERY_MODEL))
    return model


def _test_accuracy(model: Any, data_dir: str, split: str) -> float:
    """Top-1 of ``model`` (already prepared: no BN recalibration) on the CIFAR-10 ``split``."""
    return float(_test_data(data_dir, split).evaluator(bn_calibration_batches=0)(model.eval(), prepared=True)["accuracy"])


@functools.lru_cache(maxsize=4)
def _test_data(data_dir: str, split: str) -> Any:
    from automc.build import open_data

    return open_data("cifar10", data_dir, split=split, calibration_images=0)


def _candidates(rd: Any, cfg: Any) -> list[Any]:
    from automc.search.snapshot import open_store

    return open_store(rd.storage_url(cfg.storage), cfg.name).candidates()


def _cpu() -> str:
    """The CPU's model name and its widest vector ISA, e.g. ``AMD EPYC (AVX-512, VNNI)``.

    The ISA is named because one model name covers CPUs whose kernels differ: the AMD EPYCs here
    are AVX2-only on some machines and AVX-512 with VNNI on others (Zen 4), and the channel
    step, the latencies and the int8 scheme follow the ISA, not the name.
    """
    from automc.compress.int8 import cpu_features

    f = cpu_features()
    if f.model == "unknown":
        return platform.machine()
    isa = "AVX-512" if "avx512f" in f.flags else "AVX2" if "avx2" in f.flags else "no AVX2"
    return f"{f.model} ({isa}, VNNI)" if f.vnni else f"{f.model} ({isa})"


def _cpu_kind(cpu: str) -> str:
    """A short file-name tag, from :func:`_cpu`'s description, for results that are the CPU kind's own: ``xeon``, ``epyc`` (AVX2), ``epyc_avx512``, ``other``."""
    kind = "xeon" if "Xeon" in cpu else "epyc" if "EPYC" in cpu else "other"
    return f"{kind}_avx512" if kind != "xeon" and "AVX-512" in cpu else kind  # the Xeon files predate the tag; every Xeon here has AVX-512


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("resnet20", "resnet56"), default="resnet20")
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, help="run folder (default: benchmarks/results/recovery_<model>)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    exp = REPO / "experiments" / f"amc_{args.model}_recovery.yaml"
    run = args.out or REPO / "benchmarks" / "results" / f"recovery_{args.model}"
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir  # the evaluation below runs in this process
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    search = _cli("search", str(exp), "--run-dir", str(run), "--no-report", env=env)
    kd = search["recovered"][0]
    number = int(kd["number"])
    import yaml

    ft = yaml.safe_load(exp.read_text())["finetune"]
    ce_args = ["finetune", str(run), "--candidate", str(number), "--distill", "none", "--epochs", str(ft["epochs"])]
    ce = _cli(*ce_args, env=env)["recovered"][0]
    from automc.run import RunDir

    results = {r["key"]: r for r in RunDir(run).recoveries() if r["number"] == number}
    kd_full = results[kd["key"]]  # the recovery of the experiment's recipe (others may be there too)
    rows = {
        "unpruned": _evaluate(run, -1, args.data_dir, None, args.threads),
        "pruned, BN recalibrated": _evaluate(run, number, args.data_dir, None, args.threads),
        "pruned + cross-entropy fine-tune": _evaluate(run, number, args.data_dir, ce["key"], args.threads),
        "pruned + KD fine-tune": _evaluate(run, number, args.data_dir, kd_full["key"], args.threads),
    }
    before = kd_full["before"]
    summary = {
        "model": args.model,
        "candidate": number,
        "macs_ratio": before["macs"] / before["base_macs"],
        "search_candidates": search["finished"],
        "search_elapsed_s": search.get("elapsed_s"),
        "kd_train_seconds": kd_full["train_seconds"],
        "ce_train_seconds": ce["train_seconds"],
        "epochs": ft["epochs"],
        "train": kd_full["train"],
        "test_accuracy": rows,
        "kd_minus_ce": {s: rows["pruned + KD fine-tune"][s] - rows["pruned + cross-entropy fine-tune"][s] for s in TESTS},
        "drop_vs_unpruned": {s: rows["unpruned"][s] - rows["pruned + KD fine-tune"][s] for s in TESTS},
        "cpu": _cpu(),
        "threads": args.threads,
    }
    text = json.dumps(summary, indent=2) + "\n"
    (run / "headline.json").write_text(text)
    (REPO / "benchmarks" / "results" / f"recovery_{args.model}.json").write_text(text)
    print(f"{args.model} @ {100 * summary['macs_ratio']:.1f}% of the MACs (candidate #{number} of {search['finished']})")
    print(f"{'':36}" + "".join(f"{s:>12}" for s in TESTS))
    for name, accs in rows.items():
        print(f"{name:36}" + "".join(f"{100 * accs[s]:>11.2f}%" for s in TESTS))
    print("KD - CE: " + ", ".join(f"{s} {100 * v:+.2f} points" for s, v in summary["kd_minus_ce"].items()))
    print(f"recovery wall time: KD {kd_full['train_seconds'] / 60:.1f} min, CE {ce['train_seconds'] / 60:.1f} min ({ft['epochs']} epochs each)")


if __name__ == "__main__":
    main()
