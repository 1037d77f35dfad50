"""Train the zoo models that have no published CIFAR-10 weights, with fixed recipes.

Each recipe is one ``automc train`` command (listed by ``--list``), sized to finish in about
20 minutes or less on 2 CPU cores: SGD + Nesterov + cosine, padded-crop + flip augmentation, on
the complete lossy-JPEG copy of the CIFAR-10 training set (``train-jpeg``). The weights are
build artefacts, not committed: ``build/weights/<model>.pt`` beside ``<model>.json``, a
manifest with the recipe, the command, the sha256 of the weights, accuracy on ``test-exact``
(1,000 pixel-exact images) and ``test-jpeg`` (10,000), the wall time and the CPU.

A model whose manifest names the same recipe and whose weights still match the checksum is
skipped, so an interrupted run continues with the next unfinished model (kill -9 safe: the
weights and the manifest are written atomically).

    AUTOMC_DATA_DIR=../shared/data .venv/bin/python scripts/train_zoo.py [MODEL ...] [--out build/weights] [--list]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automc.atomic import atomic_write_text  # noqa: E402
from automc.hashing import file_digest  # noqa: E402
from automc.compress.int8 import cpu_features  # noqa: E402

COMMON = {"dataset": "cifar10", "split": "train-jpeg", "eval_split": "test-exact", "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4}
# Epochs sized from measured training speed on 2 cores (batch 128): MobileNetV1-0.5 727 img/s,
# SqueezeNet 281, ShuffleNetV2-0.5 491, GhostNet 384, DenseNet-BC-22 222, MobileNetV2-0.5 90.
RECIPES: dict[str, dict[str, Any]] = {
    "mobilenetv1": {"model_args": {"width_mult": 0.5}, "epochs": 8},
    "squeezenet": {"model_args": {}, "epochs": 3},
    "shufflenetv2": {"model_args": {"width_mult": 0.5}, "epochs": 5},
    "ghostnet": {"model_args": {}, "epochs": 4},
    "densenet_bc": {"model_args": {"depth": 22}, "epochs": 2},
    "mobilenetv2": {"model_args": {"width_mult": 0.5}, "epochs": 2},
}


def recipe(name: str) -> dict[str, Any]:
    return {"model": name, **COMMON, **RECIPES[name]}


def train_command(r: dict[str, Any], out: Path) -> list[str]:
    """The ``automc train`` command line of a recipe."""
    cmd = ["automc", "train", "--model", r["model"], "--dataset", r["dataset"], "--split", r["split"], "--eval-split", r["eval_split"]]
    for key, value in r["model_args"].items():
        cmd += ["--model-arg", f"{key}={value}"]
    cmd += ["--epochs", str(r["epochs"]), "--batch-size", str(r["batch_size"]), "--lr", str(r["lr"]), "--weight-decay", str(r["weight_decay"])]
    return cmd + ["--augment", "--seed", "0", "--out", str(out), "--json"]


def recipe_id(r: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16]


def is_built(name: str, out_dir: Path) -> bool:
    """Whether ``name``'s weights exist for its current recipe, with a matching checksum."""
    manifest, weights = out_dir / f"{name}.json", out_dir / f"{name}.pt"
    if not (manifest.is_file() and weights.is_file()):
        return False
    m = json.loads(manifest.read_text())
    return m.get("recipe_id") == recipe_id(recipe(name)) and m.get("sha256") == file_digest(weights)


def _automc(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "automc", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"automc {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def build(name: str, out_dir: Path) -> dict[str, Any]:
    """Train ``name`` by its recipe, evaluate it, and write weights + manifest."""
    r = recipe(name)
    weights = out_dir / f"{name}.pt"
    cmd = train_command(r, weights)
    started = time.perf_counter()
    trained = _automc(cmd[1:])
    seconds = time.perf_counter() - started
    model_args = [a for k, v in r["model_args"].items() for a in ("--model-arg", f"{k}={v}")]
    jpeg = _automc(["evaluate", "--model", name, *model_args, "--weights", str(weights), "--dataset", "cifar10", "--split", "test-jpeg", "--json"])
    manifest = {
        "model": name,
        "model_args": r["model_args"],
        "recipe": r,
        "recipe_id": recipe_id(r),
        "command": " ".join(cmd),
        "sha256": file_digest(weights),
        "accuracy": {"test-exact": trained["accuracy"], "test-jpeg": jpeg["accuracy"]},
        "train_seconds": round(seconds, 1),
        "cpu": cpu_features().summary(),
    }
    atomic_write_text(out_dir / f"{name}.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help=f"default: all ({', '.join(RECIPES)})")
    ap.add_argument("--out", default=str(REPO / "build" / "weights"))
    ap.add_argument("--list", action="store_true", help="print each recipe's command and stop")
    args = ap.parse_args()
    names = args.models or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        ap.error(f"no recipe for {unknown}; recipes: {', '.join(RECIPES)}")
    out_dir = Path(args.out)
    for name in names:
        if args.list:
            print(" ".join(train_command(recipe(name), out_dir / f"{name}.pt")))
            continue
        if is_built(name, out_dir):
            print(f"{name}: built already ({out_dir / name}.pt)", flush=True)
            continue
        print(f"{name}: training ...", flush=True)
        m = build(name, out_dir)
        acc = m["accuracy"]
        print(f"{name}: test-exact {100 * acc['test-exact']:.2f}%, test-jpeg {100 * acc['test-jpeg']:.2f}% in {m['train_seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
