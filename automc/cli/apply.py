"""``automc apply``: compress a model with one policy, measure it, and write it out."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from automc.cli.common import (
    add_int8_scheme_option,
    add_model_options,
    add_run_options,
    check_int8_scheme_option,
    emit_json,
    non_negative_int,
    parse_kv,
    positive_int,
    print_locked,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("apply", help="compress a model with one policy and write it (PyTorch + ONNX) with before/after figures")
    add_model_options(p)
    p.add_argument("--weights", metavar="PATH", help="checkpoint of the base model, or 'pretrained'")
    p.add_argument("--space", required=True, metavar="NAME", help="search space (see 'automc plugins'): channel_pruning, sparsity, mixed_precision, joint, or module:Class")
    p.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE", help="search-space setting (repeatable), e.g. round_to=4, mode=inner_only, bits=[2,4,8]")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--policy", metavar="FILE", help="JSON policy: {dimension: value} or {\"params\": {...}}; missing dimensions stay uncompressed")
    how.add_argument("--uniform", metavar="R", help="every dimension at preserve ratio R (pruning/sparsity) or R bits (precision); 'R,B' for both")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for model.pt, model.onnx, compression.json")
    p.add_argument("--dataset", metavar="NAME", help="evaluation data (default: the zoo model's dataset)")
    p.add_argument("--split", metavar="NAME", help="split to measure accuracy on (default: the dataset's test split)")
    p.add_argument("--calibration-split", metavar="NAME", help="split for BN / activation calibration (default: the dataset's training split)")
    p.add_argument("--bn-calibration", type=non_negative_int, default=16, metavar="B", help="BatchNorm recalibration batches of 64 (default 16; 0 = off)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="measure accuracy on a seeded stratified subset of N images")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu", help="where BN recalibration and the accuracy forward passes run (default cpu; auto: a GPU when torch sees one)")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (onnxruntime QDQ) and check it against the PyTorch model")
    add_int8_scheme_option(p)
    add_run_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from automc.build import CALIBRATION_BATCH, open_data
    from automc.compress.analysis import analyze
    from automc.compress.saved import make_card, save_compressed
    from automc.compress.spaces import load_policy
    from automc.errors import UserError
    from automc.measure.evaluator import torch_threads
    from automc.models import default_dataset, resolve_weights
    from automc.results.int8_onnx import export_int8_checked, model_int8_scheme
    from automc.results.onnx import export_onnx
    from automc.settings import resolve_device

    started = time.perf_counter()
    resolve_device(args.device, "--device")  # a missing GPU is said before any data loads
    check_int8_scheme_option(args)
    if args.bn_calibration < 0:
        raise UserError(f"--bn-calibration must be >= 0, got {args.bn_calibration}", field="bn_calibration")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1, got {args.limit}", field="limit")
    data = open_data(
        args.dataset or default_dataset(args.model),
        args.data_dir,
        verify=not args.no_verify,
        split=args.split,
        calibration_split=args.calibration_split,
        calibration_images=max(args.bn_calibration, 8) * CALIBRATION_BATCH,
        validation=args.limit,
        seed=args.seed,
    )
    ds, split = data.dataset, data.split
    model_kwargs = parse_kv(args.model_arg, "--model-arg")
    weights = resolve_weights(args.weights, args.model, ds.data_dir)
    base = data.model(args.model, weights, model_kwargs)
    x1 = data.example_input()
    act_batches = data.calibration_batches(8)
    space_config = parse_kv(args.space_arg, "--space-arg", collections=True)

    with torch_threads(args.threads):
        space = data.space(args.space, base, space_config, batches=8)
        if space.trains_candidates:
            raise UserError(f"space {args.space!r} builds new, untrained networks: search it in an experiment (its proxy: section trains every candidate), then 'automc export' a candidate", field="space")
        params = space.uniform(args.uniform) if args.uniform is not None else space.validate(load_policy(args.policy), partial=True)
        compressed = space.apply(base, params)
        if args.int8:
            model_int8_scheme(compressed, args.int8_scheme)  # a scheme the 8-bit layers cannot take is said before measuring

    evaluator = data.evaluator(bn_calibration_batches=args.bn_calibration, threads=args.threads, device=args.device)
    plain = data.evaluator(bn_calibration_batches=0, threads=args.threads, device=args.device)
    acc_before = plain(base)
    acc_raw = plain(compressed)
    final = evaluator.prepare(compressed)
    acc_after = plain(final)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stats_before, stats_after = analyze(base, x1), analyze(final, x1)
    with tempfile.TemporaryDirectory() as tmp:
        base_onnx = export_onnx(base, x1, Path(tmp) / "base.onnx").stat().st_size
    onnx_path = export_onnx(final, x1, out / "model.onnx")

    def figures(stats: Any, onnx_bytes: int, acc: dict[str, float]) -> dict[str, float]:
        return {**stats.summary(), "onnx_bytes": float(onnx_bytes), "accuracy": acc["accuracy"], "loss": acc["loss"]}

    before = figures(stats_before, base_onnx, acc_before)
    after = figures(stats_after, onnx_path.stat().st_size, acc_after)
    after["accuracy_without_recalibration"] = acc_raw["accuracy"]
    files = {"onnx": onnx_path.name}
    int8: dict[str, Any] | None = None
    if args.int8:
        xv, yv = evaluator.data()
        int8 = export_int8_checked(final, x1, evaluator.calibration_batches() or act_batches, out / "model.int8.onnx", xv, yv, scheme=args.int8_scheme)
        files["int8_onnx"] = "model.int8.onnx"

    card = make_card(
        model={"name": args.model, "kwargs": model_kwargs, "num_classes": ds.num_classes, "in_channels": ds.in_channels, "weights": str(weights) if weights else None},
        input_shape=list(x1.shape),
        dataset={"name": ds.name, "split": split.name, "calibration_split": data.calibration_split.name, "validation_images": evaluator.samples},
        space=space,
        space_name=args.space,
        params=params,
        before=before,
        after=after,
        int8=int8,
        files=files,
    )
    card_path = save_compressed(out, final, card)
    ratios = {k: (after[k] / before[k] if before[k] else None) for k in ("macs", "effective_macs", "params", "nonzero_params", "size_bytes", "onnx_bytes")}
    result = {
        "model": args.model,
        "space": args.space,
        "dimensions": len(space.dimensions),
        "locked_groups": space.locked_notes(),
        "before": before,
        "after": after,
        "ratios": ratios,
        "int8": int8,
        "out": str(out),
        "card": str(card_path),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if args.json:
        emit_json(result)
    else:
        _print_table(result, split.name, args.bn_calibration)
    return 0


def _human(v: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.2f}{unit}"
    return f"{v:.0f}"


def _print_table(r: dict[str, Any], split: str, bn: int) -> None:
    from automc.results.int8_onnx import agreement_text

    b, a = r["before"], r["after"]
    print(f"{r['model']} compressed with {r['space']} ({r['dimensions']} dimensions)")
    print_locked(r["locked_groups"])
    print(f"{'':24}{'before':>12}{'after':>12}{'ratio':>8}")
    for key, label in (("macs", "MACs"), ("effective_macs", "MACs (non-zero)"), ("params", "params"), ("nonzero_params", "params (non-zero)"), ("size_bytes", "size (bytes)"), ("onnx_bytes", "ONNX file (bytes)"), ("peak_activation_bytes", "peak activations (B)")):
        ratio = a[key] / b[key] if b[key] else float("nan")
        print(f"{label:24}{_human(b[key]):>12}{_human(a[key]):>12}{ratio:>8.3f}")
    recal = f"after BN recalibration on {bn}x64 images" if bn else "no BN recalibration"
    print(f"{'accuracy (' + split + ')':24}{100 * b['accuracy']:>11.2f}%{100 * a['accuracy']:>11.2f}%   ({recal}; {100 * a['accuracy_without_recalibration']:.2f}% before it)")
    if r["int8"]:
        i = r["int8"]
        print(f"int8 ONNX ({_human(i['bytes'])} bytes, scheme {i['scheme']}): {i['quantized_nodes']} nodes quantised, {agreement_text(i)}")
        if i.get("note"):
            print(f"note: {i['note']}")
    print(f"wrote {r['out']} (model.pt, model.onnx, compression.json) in {r['seconds']:.1f} s")
