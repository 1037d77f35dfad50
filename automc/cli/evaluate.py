"""``automc evaluate``: accuracy and loss of a (pretrained) model on a dataset split."""

from __future__ import annotations

import argparse
import time

from automc.cli.common import (
    add_model_options,
    add_run_options,
    emit_json,
    non_negative_int,
    parse_kv,
    positive_int,
    progress_enabled,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model's top-1 accuracy and loss on a dataset split")
    add_model_options(p)
    p.add_argument("--weights", metavar="PATH", help="checkpoint to load (weights_only), or 'pretrained' for the known CIFAR ResNets")
    p.add_argument("--dataset", required=True, metavar="NAME", help="dataset (see 'automc datasets')")
    p.add_argument("--split", metavar="NAME", help="split to evaluate on (default: the dataset's test split; for cifar10 test-exact when the full test batch is absent)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate on a seeded stratified subset of N samples")
    p.add_argument("--bn-calibration", type=non_negative_int, default=0, metavar="B", help="recalibrate BatchNorm on B batches first (default 0: off)")
    p.add_argument("--calibration-split", metavar="NAME", help="split the calibration batches come from (default: the dataset's training split)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="where BN recalibration and the accuracy forward passes run (default cpu; auto: a GPU when torch sees one)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="N")
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automc.build import CALIBRATION_BATCH, open_data
    from automc.errors import UserError
    from automc.models import resolve_weights
    from automc.settings import resolve_device

    started = time.perf_counter()
    resolve_device(args.device, "--device")  # a missing GPU is said before any data loads
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}", field="limit")
    if args.bn_calibration < 0:
        raise UserError(f"--bn-calibration must be >= 0, got {args.bn_calibration}", field="bn_calibration")
    data = open_data(
        args.dataset,
        args.data_dir,
        verify=not args.no_verify,
        split=args.split,
        calibration_split=args.calibration_split,
        calibration_images=args.bn_calibration * CALIBRATION_BATCH,
        validation=args.limit,
        seed=args.seed,
        separate_calibration=args.bn_calibration > 0,  # no training split is read otherwise
    )
    split, split_name = data.split, data.split.name
    weights = resolve_weights(args.weights, args.model, data.dataset.data_dir)
    model = data.model(args.model, weights, parse_kv(args.model_arg, "--model-arg"))
    evaluator = data.evaluator(bn_calibration_batches=args.bn_calibration, threads=args.threads, batch_size=args.batch_size, device=args.device)
    metrics = _run_with_progress(evaluator, model, enabled=progress_enabled() and not args.json)
    result = {
        "model": args.model,
        "weights": str(weights) if weights else None,
        "dataset": args.dataset,
        "split": split_name,
        "exact_pixels": split.exact,
        "samples": int(metrics["samples"]),
        "accuracy": metrics["accuracy"],
        "loss": metrics["loss"],
        "bn_calibration_batches": args.bn_calibration,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.json:
        emit_json(result)
    else:
        note = "" if split.exact else " (lossy copy)"
        print(
            f"{args.model} on {args.dataset}/{split_name}{note}, {result['samples']} images: "
            f"accuracy {100 * result['accuracy']:.2f}%  loss {result['loss']:.4f}  ({result['seconds']:.1f} s)"
        )
    return 0


def _run_with_progress(evaluator, model, *, enabled: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    if not enabled:
        return evaluator(model)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("evaluating", total=evaluator.samples)
        return evaluator(model, on_batch=lambda n: bar.advance(task, n))
