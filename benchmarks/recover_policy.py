"""Recover one policy outside a run, on the device you name — for wall times side by side
(e.g. the headline's best ResNet policy on a GPU next to the CPU run) and for policies found
elsewhere.

Builds the experiment's base model and space, applies ``--policy`` (a JSON file of
``{"<layer>:<knob>": value}``, e.g. ``automc status RUN --json``'s best params), recovers it
with the experiment's ``finetune`` recipe (``--distill`` / ``--epochs`` override) on
``--device``, and evaluates the result on every CIFAR-10 test split present. Needs no Optuna,
Ray or stable-baselines3: only torch, torch-pruning, pydantic and the data::

    .venv/bin/python benchmarks/recover_policy.py --experiment experiments/amc_resnet20_recovery.yaml \\
        --policy best.json --device cuda --data-dir ../shared/data [--distill none] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from automc.build import CALIBRATION_BATCH, open_data
from automc.config import parse_config
from automc.train.recovery import finetune_device, recover

TESTS = ("test-exact", "test-jpeg")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiment", type=Path, required=True)
    ap.add_argument("--policy", type=Path, required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--distill", choices=("response", "none"), help="override the experiment's distillation")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--train-split", help="override the experiment's training split (e.g. train-jpeg, train-mixed)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    raw = yaml.safe_load(args.experiment.read_text())
    raw["data"]["data_dir"] = args.data_dir
    ft = dict(raw["finetune"], device=args.device)
    if args.epochs:
        ft["epochs"] = args.epochs
    if args.train_split:
        ft["train_split"] = args.train_split
    if args.distill == "none":
        ft["distill"] = None
    elif args.distill:
        ft["distill"] = {**(ft.get("distill") or {}), "kinds": [args.distill]}
    raw["finetune"] = ft
    cfg = parse_config(raw, str(args.experiment))
    assert cfg.finetune is not None
    torch.manual_seed(cfg.seed)
    d = cfg.data
    data = open_data(d.dataset, d.data_dir, split=d.eval_split, calibration_split=d.calibration_split, calibration_images=d.calibration_batches * CALIBRATION_BATCH, validation=d.validation, seed=cfg.seed)
    base = data.model(cfg.model.name, cfg.model.weights, cfg.model.kwargs)
    space = data.space(cfg.space.name, base, cfg.space.config, batches=d.calibration_batches)
    evaluator = data.evaluator(bn_calibration_batches=d.calibration_batches)
    student = evaluator.prepare(space.apply(base, json.loads(args.policy.read_text())))
    train = data.dataset.load(cfg.finetune.train_split or data.dataset.calibration_split())
    val = data.validation_indices if data.validation_indices is not None else np.arange(len(data.split))
    idx = np.setdiff1d(np.arange(len(train)), train.shared_with(data.split, val))
    device = finetune_device(cfg.finetune)
    t0 = time.perf_counter()
    done = recover(student, copy.deepcopy(base), train, idx, cfg=cfg.finetune, example_input=data.example_input(), seed=cfg.seed,
                   on_progress=lambda e: print(f"epoch {int(e['epoch'])}: loss {e['loss']:.4f} ({e['seconds']:.1f} s)", flush=True) if e["event"] == "epoch" and not args.json else None)
    wall = time.perf_counter() - t0
    out = {
        "experiment": str(args.experiment),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "distill": cfg.finetune.distill.kinds if cfg.finetune.distill else None,
        "epochs": cfg.finetune.epochs,
        "train_split": train.name,
        "train_images": int(len(idx)),
        "train_seconds": wall,
        "test_accuracy": {},
    }
    for split in TESTS:
        try:
            test = open_data("cifar10", args.data_dir, split=split, calibration_images=0)
        except Exception as exc:  # noqa: BLE001 - a split not carried to this machine
            out["test_accuracy"][split] = f"not available ({type(exc).__name__})"
            continue
        out["test_accuracy"][split] = test.evaluator(bn_calibration_batches=0)(done.model, prepared=True)["accuracy"]
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
