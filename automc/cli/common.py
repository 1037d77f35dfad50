"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from automc.errors import UserError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0)


def _bounded_int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", help="data root (default: $AUTOMC_DATA_DIR, else ~/.local/share/automc/data)")
    p.add_argument("--no-verify", action="store_true", help="skip checksum verification of known data files")


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--seed, --threads, the data options and --json: what every model-running command takes."""
    p.add_argument("--seed", type=int, default=0, help="seed of the subset draws, calibration augmentation and training (default 0)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="torch intra-op threads (default: torch's)")
    add_data_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_int8_scheme_option(p: argparse.ArgumentParser) -> None:
    """--int8-scheme: which onnxruntime int8 scheme ``--int8`` exports with."""
    from automc.compress.int8 import INT8_SCHEMES  # torch-free: keeps --help fast

    p.add_argument(
        "--int8-scheme",
        choices=INT8_SCHEMES,
        metavar="SCHEME",
        help=f"int8 scheme of --int8 ({', '.join(INT8_SCHEMES)}; default: the one the model's 8-bit layers were quantised for, "
        "else this CPU's). u8s8-reduced and s8s8 run exactly on every x86 CPU; u8s8 only with VNNI",
    )


def check_int8_scheme_option(args: argparse.Namespace) -> None:
    """--int8-scheme means nothing without --int8: said before any work starts."""
    if args.int8_scheme is not None and not args.int8:
        raise UserError("--int8-scheme sets the scheme of the int8 export: add --int8 (or drop --int8-scheme)", field="int8_scheme")


def add_model_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--model", required=required, metavar="NAME", help="zoo name (see 'automc models') or your factory as package.module:function")
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the model factory (repeatable), e.g. --model-arg width_mult=0.5",
    )


def parse_kv(pairs: list[str], option: str, *, collections: bool = False) -> dict[str, Any]:
    """Parse KEY=VALUE strings; values are read as YAML (numbers, booleans, strings, and
    with ``collections`` also lists/maps such as ``bits=[2,4,8]``) — never evaluated as code."""
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} expects KEY=VALUE, got {item!r}", field=option)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (dict, list)) and not collections:
            raise UserError(f"{option} {key}: only scalar values are supported, got {raw!r}", field=option)
        out[key.strip()] = value
    return out


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    json.dump(obj, sys.stdout, sort_keys=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def progress_enabled() -> bool:
    return sys.stderr.isatty()


def print_locked(notes: list[str]) -> None:
    """How many channel groups a space left unpruned, and why (one line each)."""
    if notes:
        print(f"{len(notes)} channel groups locked (left unpruned: they cannot be pruned safely):")
        for note in notes:
            print(f"  {note}")
