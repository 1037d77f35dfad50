"""Saving and rebuilding compressed models without pickling code.

A compressed model is stored as a folder:

* ``compression.json`` — the card: base model (registry name or ``module:function``, its
  keyword arguments, classes and input channels), input shape, search space name and
  settings, the policy, figures before/after, file names and package versions;
* ``model.pt`` — the compressed ``state_dict`` (tensors only: loads with
  ``torch.load(weights_only=True)``);
* ``model.onnx`` (and ``model.int8.onnx``) — for deployment.

Rebuilding applies the policy to a freshly built base model to get the *structure* (channel
counts and quantised layers depend only on the policy) and then loads the saved values,
strictly, into it.
"""

from __future__ import annotations

import json
import platform
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automc.errors import UserError

CARD = "compression.json"
STATE = "model.pt"
FORMAT = "automc.compressed/1"


def package_versions(names: tuple[str, ...] = ("automc", "torch", "torch-pruning", "onnx", "onnxruntime", "numpy")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out


def save_compressed(out_dir: str | Path, model: nn.Module, card: Mapping[str, Any]) -> Path:
    """Write ``model.pt`` and ``compression.json`` into ``out_dir``; returns the card path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / STATE)
    full = {"format": FORMAT, **card, "versions": package_versions()}
    full.setdefault("files", {})["state_dict"] = STATE
    path = out / CARD
    path.write_text(json.dumps(full, indent=2, default=str) + "\n")
    return path


def load_compressed(folder: str | Path) -> nn.Module:
    """Rebuild a compressed model saved by :func:`save_compressed` (eval mode)."""
    from automc.models import build_model
    from automc.compress.spaces import build_space

    folder = Path(folder)
    card_path = folder / CARD
    if not card_path.is_file():
        raise UserError(f"{folder} holds no {CARD}: point at a folder written by 'automc apply' or 'automc export'")
    card = json.loads(card_path.read_text())
    if card.get("format") != FORMAT:
        raise UserError(f"{card_path} has format {card.get('format')!r}; this automc reads {FORMAT!r}")
    m = card["model"]
    base = build_model(m["name"], num_classes=m.get("num_classes"), in_channels=m.get("in_channels"), kwargs=m.get("kwargs"))
    x = torch.zeros(*card["input_shape"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = build_space(card["space"]["name"], base, x, calibration=[x], config=card["space"].get("config"))
        model = space.apply(base, card["params"])
    state = torch.load(folder / card["files"]["state_dict"], map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
