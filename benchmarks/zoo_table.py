"""The zoo table: every zoo model with weights × {channel pruning, mixed precision}.

Per row, one ``automc apply --json --int8`` on the 1,000 pixel-exact CIFAR-10 test images
(``test-exact``; digits' test split for ``small_cnn``), with BN recalibration on 16×64
training images and no fine-tuning: dimensions, locked channel groups, MACs and size before →
after a uniform policy (``channel_pruning`` at preserve ratio 0.5, ``mixed_precision`` at 8
bits), accuracy before → after, the int8 ONNX model's top-1 agreement with PyTorch, and the
floor to read it against: the PyTorch model's agreement with itself under a 0.05-step rounding
jitter of its 8-bit inputs (8-bit rows only; see ``automc.results.int8_onnx``).

Weights: the published ResNet-20/56 checkpoints (``pretrained``), the recipes' builds in
``build/weights`` (``scripts/train_zoo.py``; a model without a build is listed as missing, with
the command that makes it), and ``small_cnn`` trained here on digits (6 s). Finished rows are
kept in ``--cache`` (default ``build/zoo_table.json``), so an interrupted run continues.

    AUTOMC_DATA_DIR=../shared/data .venv/bin/python benchmarks/zoo_table.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automc.atomic import atomic_write_text  # noqa: E402
from automc.compress.int8 import cpu_features  # noqa: E402
from scripts.train_zoo import RECIPES, is_built  # noqa: E402

SPACES = {"channel_pruning": "0.5", "mixed_precision": "8"}


def _automc(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "automc", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"automc {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def model_sources(weights_dir: Path, tmp: Path) -> dict[str, list[str] | None]:
    """``automc apply`` model arguments per zoo model (None: no weights built yet)."""
    out: dict[str, list[str] | None] = {m: ["--model", m, "--weights", "pretrained"] for m in ("resnet20", "resnet56")}
    cnn = tmp / "small_cnn.pt"
    if not cnn.is_file():
        _automc(["train", "--model", "small_cnn", "--dataset", "digits", "--epochs", "15", "--out", str(cnn), "--json"])
    out["small_cnn"] = ["--model", "small_cnn", "--weights", str(cnn), "--dataset", "digits"]
    for name, recipe in RECIPES.items():
        if not is_built(name, weights_dir):
            out[name] = None
            continue
        args = ["--model", name, "--weights", str(weights_dir / f"{name}.pt")]
        for key, value in recipe["model_args"].items():
            args += ["--model-arg", f"{key}={value}"]
        out[name] = args
    return out


def row(model_args: list[str], space: str, tmp: Path) -> dict[str, Any]:
    split = [] if "digits" in model_args else ["--split", "test-exact"]
    r = _automc(["apply", *model_args, *split, "--space", space, "--uniform", SPACES[space], "--int8", "--out", str(tmp / "out"), "--json"])
    b, a = r["before"], r["after"]
    return {
        "dimensions": r["dimensions"],
        "locked": len(r["locked_groups"]),
        "macs": [b["macs"], a["macs"]],
        "size_bytes": [b["size_bytes"], a["size_bytes"]],
        "accuracy": [b["accuracy"], a["accuracy"]],
        "int8_agreement": r["int8"]["top1_agreement_with_pytorch"],
        "int8_scheme": r["int8"]["scheme"],
        "int8_jitter_floor": r["int8"]["top1_agreement_under_rounding_jitter"],
    }


ROW_FIELDS = ("dimensions", "locked", "macs", "size_bytes", "accuracy", "int8_agreement", "int8_scheme", "int8_jitter_floor")


def _percent(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(REPO / "build" / "weights"))
    ap.add_argument("--cache", default=str(REPO / "build" / "zoo_table.json"))
    args = ap.parse_args()
    cache_path = Path(args.cache)
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    tmp = cache_path.parent / "zoo_table_tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    sources = model_sources(Path(args.weights), tmp)
    print(f"CPU: {cpu_features().model}; BN recalibration 16x64, no fine-tuning; pruning uniform 0.5, precision uniform 8 bit")
    print("| model | space | dims | locked groups | MACs before → after | size before → after | accuracy before → after | int8 agreement | jitter floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, margs in sources.items():
        if margs is None:
            print(f"| {model} | (no weights: `scripts/train_zoo.py {model}`) | | | | | | | |", flush=True)
            continue
        for space in SPACES:
            key = f"{model}/{space}"
            if key not in cache or any(f not in cache[key] for f in ROW_FIELDS):  # rows of an older table are redone
                cache[key] = row(margs, space, tmp)
                atomic_write_text(cache_path, json.dumps(cache, indent=2) + "\n")
            r = cache[key]
            (m0, m1), (s0, s1), (a0, a1) = r["macs"], r["size_bytes"], r["accuracy"]
            print(
                f"| {model} | {space} | {r['dimensions']} | {r['locked']} | {m0 / 1e6:.1f}M → {m1 / 1e6:.1f}M | {s0 / 1e3:.0f} kB → {s1 / 1e3:.0f} kB "
                f"| {100 * a0:.1f}% → {100 * a1:.1f}% | {100 * r['int8_agreement']:.1f}% ({r['int8_scheme']}) | {_percent(r['int8_jitter_floor'])} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
