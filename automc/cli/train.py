"""``automc train``: train (or fine-tune) a zoo/user model and save its state_dict."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from automc.cli.common import (
    add_model_options,
    add_run_options,
    emit_json,
    parse_kv,
    positive_int,
    progress_enabled,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train or fine-tune a model on a dataset split and save its weights")
    add_model_options(p)
    p.add_argument("--weights", metavar="PATH", help="start from this checkpoint (or 'pretrained')")
    p.add_argument("--dataset", required=True, metavar="NAME")
    p.add_argument("--split", metavar="NAME", help="training split (default: the dataset's training split)")
    p.add_argument("--eval-split", metavar="NAME", help="split to report accuracy on (default: the dataset's test split)")
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--augment", action="store_true", help="apply the dataset's training augmentation (CIFAR: padded random crop + flip)")
    p.add_argument("--out", required=True, metavar="PATH", help="where to save the trained state_dict (.pt)")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from automc.atomic import atomic_path
    from automc.build import open_data
    from automc.config import validated
    from automc.recipes import TrainConfig
    from automc.train.training import train_classifier

    started = time.perf_counter()
    data = open_data(args.dataset, args.data_dir, verify=not args.no_verify, split=args.eval_split, calibration_images=0, separate_calibration=False)
    ds, eval_split = data.dataset, data.split
    train_split = ds.load(args.split or ds.default_train_split)
    torch.manual_seed(args.seed)
    model = data.model(args.model, args.weights, parse_kv(args.model_arg, "--model-arg"))
    cfg = validated(TrainConfig, "automc train", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, augment=args.augment)
    show = progress_enabled() and not args.json

    def on_epoch(epoch: int, loss: float) -> None:
        if show:
            print(f"epoch {epoch + 1}/{cfg.epochs}  loss {loss:.4f}", flush=True)

    history = train_classifier(model, train_split, config=cfg, seed=args.seed, threads=args.threads, on_epoch=on_epoch)
    metrics = data.evaluator(bn_calibration_batches=0, threads=args.threads)(model)
    out = Path(args.out)
    with atomic_path(out) as tmp:  # a killed run never leaves a truncated checkpoint
        torch.save(model.state_dict(), tmp)
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "train_split": train_split.name,
        "eval_split": eval_split.name,
        "epochs": cfg.epochs,
        "final_loss": history[-1],
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "weights": str(out),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.json:
        emit_json(result)
    else:
        print(
            f"trained {args.model} on {args.dataset}/{train_split.name} for {cfg.epochs} epochs: "
            f"{eval_split.name} accuracy {100 * metrics['accuracy']:.2f}%  -> {out}"
        )
    return 0
