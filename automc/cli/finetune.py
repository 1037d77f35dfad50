"""``automc finetune RUN_DIR``: recover finalists of a finished search (see :mod:`automc.recover`)."""

from __future__ import annotations

import argparse
from typing import Any

from automc.cli.common import emit_json, positive_int

KINDS = ("response", "feature", "relation")


def _kinds(text: str) -> list[str] | None:
    """argparse type of --distill: a comma list of kinds, or none."""
    if text.strip().lower() == "none":
        return None
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"unknown distillation kind {', '.join(bad) or repr(text)}: use a comma list of {', '.join(KINDS)}, or none")
    return kinds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="recover the accuracy of a run's finalists by fine-tuning with knowledge distillation")
    p.add_argument("run_dir", metavar="RUN_DIR")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--candidate", type=int, action="append", metavar="N", help="recover candidate N (repeatable)")
    which.add_argument("--front", action="store_const", dest="select", const="front", help="recover every Pareto-front member (the default without a finetune section)")
    which.add_argument("--best", action="store_const", dest="select", const="best", help="recover the best feasible candidate by reward")
    which.add_argument("--top", type=positive_int, metavar="K", help="recover the K best feasible candidates by reward")
    p.add_argument("--epochs", type=positive_int, metavar="E")
    p.add_argument("--lr", type=float, metavar="LR")
    p.add_argument("--batch-size", type=positive_int, metavar="B")
    p.add_argument("--train-split", metavar="SPLIT", help="training split (default: the dataset's)")
    p.add_argument("--train-images", type=positive_int, metavar="N", help="a seeded subset of N training images")
    p.add_argument("--distill", type=_kinds, metavar="KINDS", default=argparse.SUPPRESS, help="comma list of response,feature,relation, or none (plain cross-entropy)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.set_defaults(func=run_finetune, select=None)


def run_finetune(args: argparse.Namespace) -> int:
    from automc.cli.recovery_view import RecoveryView, print_recovered
    from automc.recover.driver import finetune_run

    overrides: dict[str, Any] = {
        k: v
        for k, v in {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "train_split": args.train_split, "train_images": args.train_images, "device": args.device}.items()
        if v is not None
    }
    if args.select is not None:
        overrides["candidates"] = args.select
    if args.top is not None:
        overrides.update(candidates="top", top=args.top)
    if hasattr(args, "distill"):
        overrides["distill_kinds"] = args.distill
    view = RecoveryView(quiet=args.json)
    try:
        results = finetune_run(args.run_dir, overrides, numbers=args.candidate, on_finalist=view.on_finalist, on_progress=view.on_progress)
    finally:
        view.close()
    if args.json:
        emit_json({"run_dir": args.run_dir, "recovered": results})
        return 0
    print(f"{args.run_dir}: {len(results)} candidate(s) recovered (kept in {args.run_dir}/recovery; 'automc report' shows them)")
    print_recovered(results)
    return 0
