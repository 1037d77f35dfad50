"""``automc profile``: a model's cost on a device profile; ``build-lut``, ``widths`` and ``fidelity``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from automc.atomic import atomic_write_text
from automc.cli.common import (
    add_data_options,
    add_model_options,
    emit_json,
    parse_kv,
    positive_int,
    progress_enabled,
)


def _common(p: argparse.ArgumentParser, *, model_required: bool) -> None:
    add_model_options(p, required=model_required)
    p.add_argument("--weights", metavar="PATH", help="checkpoint to load, or 'pretrained' (latency does not depend on it)")
    p.add_argument("--dataset", metavar="NAME", help="dataset giving the input shape (default: the zoo model's)")
    p.add_argument("--input-shape", metavar="C,H,W", help="input shape instead of --dataset, e.g. 3,32,32")
    add_data_options(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="measure a model on a device profile; 'profile build-lut' / 'profile fidelity' for latency tables, 'profile widths' for hardware-friendly channel counts",
        description="Measure a model (or a compressed model folder) on a device profile. "
        "Sub-commands: build-lut (measure a per-layer latency table), widths (each channel group's latency staircase and the counts worth keeping), fidelity (check a table against measurements).",
    )
    _common(p, model_required=False)
    p.add_argument("--compressed", metavar="DIR", help="a folder written by 'automc apply' instead of --model")
    p.add_argument("--device", default="flops", metavar="NAME", help="device profile (see 'automc plugins'); default flops")
    p.add_argument("--device-arg", action="append", default=[], metavar="KEY=VALUE", help="profile setting (repeatable), e.g. threads=2, table=lut.json")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_measure)
    sub2 = p.add_subparsers(dest="profile_command", metavar="SUBCOMMAND", parser_class=type(p))

    b = sub2.add_parser("build-lut", help="measure every per-layer configuration a search space can produce")
    _common(b, model_required=True)
    b.add_argument("--space", required=True, metavar="NAME")
    b.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--device", default="onnxruntime-cpu", metavar="NAME", help="measured profile to build from (default onnxruntime-cpu)")
    b.add_argument("--device-arg", action="append", default=[], metavar="KEY=VALUE")
    b.add_argument("--step", type=positive_int, default=8, help="channel grid step (default 8)")
    b.add_argument("--fit", type=positive_int, default=20, metavar="N", help="random candidates used to fit the constant (default 20)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", required=True, metavar="FILE")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=run_build_lut)

    w = sub2.add_parser("widths", help="measure each channel group's latency staircase; write the channel counts worth keeping")
    _common(w, model_required=True)
    w.add_argument("--space", default="channel_pruning", metavar="NAME")
    w.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--device", default="onnxruntime-cpu", metavar="NAME", help="measured latency profile (default onnxruntime-cpu)")
    w.add_argument("--device-arg", action="append", default=[], metavar="KEY=VALUE")
    w.add_argument("--context", choices=("model", "layer", "step"), default="model", help="measure each count in the whole model (default: what deploys), the group's layers alone (faster, blind to layout changes), or whole models pruned at each channel step to choose the runtime's step (multiples of it per group; robust to noise)")
    w.add_argument("--tolerance", type=float, default=None, help="a width is kept when it saves this fraction over the next kept one up: of the full model's latency in context 'model' (default 0.01), of the group's own in context 'layer' (default 0.03); in context 'step', the least latency saved per MACs removed for channels to pay (default 0.5)")
    w.add_argument("--rounds", type=positive_int, default=5, help="context 'step': interleaved rounds of the side-by-side measurements (default 5)")
    w.add_argument("--out", required=True, metavar="FILE")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=run_widths)

    f = sub2.add_parser("fidelity", help="Kendall tau and MAPE of a latency table against measured latency")
    _common(f, model_required=True)
    f.add_argument("--lut", required=True, metavar="FILE")
    f.add_argument("--interpolation", default="ceil", choices=["ceil", "linear"])
    f.add_argument("--space", required=True, metavar="NAME")
    f.add_argument("--space-arg", action="append", default=[], metavar="KEY=VALUE")
    f.add_argument("--device", default="onnxruntime-cpu", metavar="NAME")
    f.add_argument("--device-arg", action="append", default=[], metavar="KEY=VALUE")
    f.add_argument("--n", type=positive_int, default=50, help="random candidates (default 50)")
    f.add_argument("--sampler", default="budgets", choices=["budgets", "iid"], help="candidates across compression levels (default) or per-dimension i.i.d.")
    f.add_argument("--seed", type=int, default=1)
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=run_fidelity)


def _model_and_input(args: argparse.Namespace) -> tuple[Any, Any]:
    import torch

    from automc.build import dataset_model
    from automc.datasets import get_dataset
    from automc.errors import UserError
    from automc.models import default_dataset, load_model

    if getattr(args, "compressed", None):
        from automc.compress.saved import load_compressed, read_card

        card = read_card(args.compressed)
        return load_compressed(args.compressed), torch.zeros(*card["input_shape"])
    if not args.model:
        raise UserError("give --model NAME (or --compressed DIR)", field="model")
    if args.input_shape:
        try:
            shape = [int(v) for v in args.input_shape.split(",")]
        except ValueError:
            raise UserError(f"--input-shape must look like 3,32,32, got {args.input_shape!r}", field="input_shape") from None
        model = load_model(args.model, weights=args.weights, in_channels=shape[0], kwargs=parse_kv(args.model_arg, "--model-arg"))
        return model, torch.zeros(1, *shape)
    ds = get_dataset(args.dataset or default_dataset(args.model), args.data_dir, verify=False)
    h, w, c = ds.image_shape
    return dataset_model(ds, args.model, args.weights, parse_kv(args.model_arg, "--model-arg")), torch.zeros(1, c, h, w)


def _profile(args: argparse.Namespace) -> Any:
    from automc.measure.profiles import build_profile

    return build_profile(args.device, parse_kv(args.device_arg, "--device-arg", collections=True))


def _model_and_space(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The model, its example input and ``--space`` built on it (with ``--space-arg``)."""
    from automc.compress.spaces import build_space

    model, x = _model_and_input(args)
    return model, x, build_space(args.space, model, x, calibration=[x], config=parse_kv(args.space_arg, "--space-arg", collections=True))


def _with_progress(label: str, args: argparse.Namespace, work: Any) -> Any:
    """``work(progress)`` under a live bar (none with --json or off a terminal)."""
    bar, cb = _progress(label, progress_enabled() and not args.json)
    try:
        return work(cb)
    finally:
        if bar:
            bar.stop()


def _write_json(path: str, data: Any) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    return out


def _progress(label: str, enabled: bool) -> Any:
    if not enabled:
        return None, None
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.start()
    task = bar.add_task(label, total=None)
    return bar, (lambda done, total: bar.update(task, completed=done, total=total))


def run_measure(args: argparse.Namespace) -> int:
    model, x = _model_and_input(args)
    profile = _profile(args)
    m = profile.measure(model, x)
    result = {"device": args.device, "config": profile.config(), **m.to_dict()}
    if args.json:
        emit_json(result)
        return 0
    print(f"{args.compressed or args.model} on {args.device}:")
    for k, v in m.values.items():
        spread = m.spread.get(k)
        extra = f"  (IQR {spread:.4g}, {m.repeats} runs)" if spread else ""
        print(f"  {k:<24}{v:,.6g}{extra}")
    return 0


def run_build_lut(args: argparse.Namespace) -> int:
    from automc.measure.profiles import PROFILES

    started = time.perf_counter()
    model, x, space = _model_and_space(args)
    profile = _profile(args)
    table = _with_progress("measuring layers", args, lambda cb: PROFILES.get("lut").build_table(model, space, profile, x, step=args.step, n_fit=args.fit, seed=args.seed, provenance={"model": args.model}, progress=cb))
    out = _write_json(args.out, table)
    result = {"out": str(out), "measurements": table["provenance"]["measurements"], "entries": len(table["entries"]), "constant_ms": table["constant_ms"], "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        emit_json(result)
    else:
        print(f"wrote {out}: {result['entries']} layer types, {result['measurements']} measurements, constant {table['constant_ms']:.4f} ms ({result['seconds']} s)")
    return 0


def run_widths(args: argparse.Namespace) -> int:
    """``automc profile widths``: the ``lut`` plugin's ``derive_widths`` (through the registry)."""
    from automc.measure.profiles import PROFILES

    started = time.perf_counter()
    model, x, space = _model_and_space(args)
    profile = _profile(args)
    data = _with_progress(f"measuring in context {args.context}", args, lambda cb: PROFILES.get("lut").derive_widths(profile, model, space, x, context=args.context, tolerance=args.tolerance, rounds=args.rounds, progress=cb))
    data["measured_on"]["model"] = args.model
    out = _write_json(args.out, data)
    measured = data["measured_on"]
    what = {"model": lambda: f"{measured['models']} models", "layer": lambda: f"{measured['layer_shapes']} layer shapes", "step": lambda: f"{measured['measurements']} model measurements in {measured['rounds']} rounds, step {measured['step']}"}[data["context"]]()
    result = {"out": str(out), "context": data["context"], "groups": {g: e["widths"] for g, e in data["groups"].items()}, "measured": what, "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        emit_json(result)
        return 0
    print(f"wrote {out}: {len(result['groups'])} groups, {what} measured ({result['seconds']} s)")
    for block, probe in measured.get("probes", {}).items():  # context step: the evidence for the step
        pays = ("pays" if probe["efficiency"] >= data["tolerance"] else "padded away") + ("" if probe.get("settled", True) else " (rounds split)")
        half = int(block) // 2
        print(f"  block {block:>2}: the last {half} channel{'s' if half > 1 else ''} per group save {probe['efficiency']:.2f} of their MACs' share ({probe['twin_ms']:.3f} -> {probe['probe_ms']:.3f} ms, MACs x{probe['twin_macs_ratio']:.2f} -> x{probe['probe_macs_ratio']:.2f}): {pays}")
    for group, widths in result["groups"].items():
        print(f"  {group:<28}{', '.join(map(str, widths))}")
    return 0


def run_fidelity(args: argparse.Namespace) -> int:
    from automc.measure.profiles import build_profile

    model, x, space = _model_and_space(args)
    lut = build_profile("lut", {"table": args.lut, "interpolation": args.interpolation})
    measured = _profile(args)
    r = _with_progress("measuring candidates", args, lambda cb: lut.fidelity(measured, model, space, x, n=args.n, seed=args.seed, sampler=args.sampler, progress=cb))
    if args.json:
        emit_json(r)
    else:
        print(f"{args.n} random {args.space} candidates ({args.sampler}): Kendall tau {r['kendall_tau']:.3f}, MAPE {r['mape_percent']:.2f}%")
    return 0
