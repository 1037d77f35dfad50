"""Does the cheap score rank policies as recovery does? Rank correlation, over candidates of the
ResNet-20 AMC search, between the BN-recalibrated score (what a search ranks by), a short KD
fine-tune (a multi-fidelity rung, ``--rung-steps``) and the accuracy after a longer recovery
(``--recovery-steps``; on ``test-exact``, which no search step ever saw).

Resumable: each candidate's figures are kept in ``RUN/fidelity_rank/<number>.json`` as they
are measured; rerun the same command to continue::

    nohup .venv/bin/python benchmarks/fidelity_rank.py --data-dir ../shared/data > rank.log &
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from recovery_headline import REPO, _cli, _cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "recovery_resnet20", help="run folder of experiments/amc_resnet20_recovery.yaml")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--rung-steps", type=int, default=100)
    ap.add_argument("--recovery-steps", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    # the search (and the recovery of its best) runs once; an existing run is used as it is
    if not (args.out / "config.yaml").is_file():
        _cli("search", str(REPO / "experiments" / "amc_resnet20_recovery.yaml"), "--run-dir", str(args.out), "--no-report", env=env)

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from automc.atomic import atomic_write_text
    from automc.build import open_data
    from automc.config import parse_config
    from automc.recover.fidelity import fidelity_recipe, short_recovery
    from automc.run import RunDir
    from automc.search.context import build_context, materialize
    from automc.search.snapshot import open_store
    from automc.search.training_data import teacher_of, training_indices, training_split

    torch.set_num_threads(args.threads)
    rd = RunDir(args.out)
    cfg = parse_config(rd.read_config())
    ctx = build_context(cfg, rd, cache=False, train=False)
    recipe = fidelity_recipe(cfg)
    split, train = training_split(ctx, recipe)
    pool = training_indices(ctx, split, None, cfg.seed, train)
    teacher = teacher_of(ctx, recipe)
    test = open_data("cifar10", args.data_dir, split="test-exact", calibration_images=0).evaluator(bn_calibration_batches=0)
    done = [c for c in open_store(rd.storage_url(cfg.storage), cfg.name).candidates() if c.ok]
    chosen = done[: args.candidates]
    folder = rd.path / "fidelity_rank"
    folder.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    for i, cand in enumerate(chosen):
        path = folder / f"{cand.number}.json"
        row: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"number": cand.number, "bn_val": cand.metrics["accuracy"], "macs_ratio": cand.metrics["macs"] / cand.metrics["base_macs"]}
        for steps in (args.rung_steps, args.recovery_steps):
            key = f"kd{steps}"
            if key in row:
                continue
            model = short_recovery(ctx, materialize(ctx, cand.params), teacher, train, pool, recipe, steps=steps)
            row[key] = {"val": ctx.evaluator(model, prepared=True)["accuracy"], "test_exact": test(model, prepared=True)["accuracy"]}
            atomic_write_text(path, json.dumps(row, indent=2) + "\n")
            print(f"[{i + 1}/{len(chosen)}] #{cand.number} {steps} steps: val {row[key]['val']:.3f}, test-exact {row[key]['test_exact']:.3f}", flush=True)
        rows.append(row)
    truth = [r[f"kd{args.recovery_steps}"]["test_exact"] for r in rows]
    rho = {
        "bn_val": spearmanr([r["bn_val"] for r in rows], truth).statistic,
        f"kd{args.rung_steps}_val": spearmanr([r[f"kd{args.rung_steps}"]["val"] for r in rows], truth).statistic,
    }
    best = {name: rows[int(np.argmax([r["bn_val"] if name == "bn_val" else r[f"kd{args.rung_steps}"]["val"] for r in rows]))]["number"] for name in rho}
    summary = {
        "candidates": len(rows),
        "rung_steps": args.rung_steps,
        "recovery_steps": args.recovery_steps,
        "batch_size": recipe.batch_size,
        "spearman_vs_recovered_test_exact": rho,
        "best_by": {k: {"number": n, "recovered_test_exact": next(r for r in rows if r["number"] == n)[f"kd{args.recovery_steps}"]["test_exact"]} for k, n in best.items()},
        "best_recovered_test_exact": max(truth),
        "rows": rows,
        "cpu": _cpu(),
        "threads": args.threads,
    }
    atomic_write_text(REPO / "benchmarks" / "results" / "fidelity_rank_resnet20.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("spearman_vs_recovered_test_exact", "best_by", "best_recovered_test_exact")}, indent=2))


if __name__ == "__main__":
    main()
