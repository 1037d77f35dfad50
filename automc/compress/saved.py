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
strictly, into it, in the memory layout it was measured in (NCHW or NHWC: the layout picks
the convolution kernels, so a rebuilt model computes bit for bit what was measured).
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

from automc.atomic import atomic_path, atomic_write_text
from automc.compress.spaces import SearchSpace
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


def make_card(
    *,
    model: Mapping[str, Any],
    input_shape: list[int],
    dataset: Mapping[str, Any],
    space: SearchSpace,
    space_name: str,
    params: Mapping[str, Any],
    **sections: Any,
) -> dict[str, Any]:
    """The card of a compressed model: what rebuilds it (``model``: name, kwargs, num_classes,
    in_channels, weights; ``input_shape``; the space's name and settings; the policy), where it
    was measured (``dataset``) and any further ``sections`` (figures, int8, files, run)."""
    return {
        "model": dict(model),
        "input_shape": list(input_shape),
        "dataset": dict(dataset),
        "space": {"name": space_name, "config": space.config(), "locked_groups": space.locked_notes()},
        "params": dict(params),
        **sections,
    }


def save_compressed(out_dir: str | Path, model: nn.Module, card: Mapping[str, Any]) -> Path:
    """Write ``model.pt`` and ``compression.json`` into ``out_dir`` (each atomically);
    returns the card path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / STATE) as tmp:
        torch.save(model.state_dict(), tmp)
    full = {"format": FORMAT, **card, "memory_format": memory_format(model), "versions": package_versions()}
    full.setdefault("files", {})["state_dict"] = STATE
    path = out / CARD
    atomic_write_text(path, json.dumps(full, indent=2, default=str) + "\n")
    return path


def memory_format(model: nn.Module) -> str:
    """``"channels_last"`` when the model's 4-d weights are stored NHWC (the evaluator runs
    models that way where it is faster), else ``"contiguous"``."""
    nhwc = [p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in model.parameters() if p.dim() == 4]
    return "channels_last" if any(nhwc) else "contiguous"


def read_card(folder: str | Path) -> dict[str, Any]:
    """The card of a folder written by ``automc apply`` / ``automc export`` (one line if not)."""
    card_path = Path(folder) / CARD
    if not card_path.is_file():
        raise UserError(f"{folder} holds no {CARD}: point at a folder written by 'automc apply' or 'automc export'")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{card_path} is not valid JSON ({exc.msg}): write the model again with 'automc apply' or 'automc export'") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise UserError(f"{card_path} has format {card.get('format') if isinstance(card, dict) else None!r}; this automc reads {FORMAT!r}")
    return card


def update_card(folder: str | Path, **fields: Any) -> None:
    """Add ``fields`` to a written card (atomically)."""
    card = read_card(folder)
    card.update(fields)
    atomic_write_text(Path(folder) / CARD, json.dumps(card, indent=2, default=str) + "\n")


def load_compressed(folder: str | Path) -> nn.Module:
    """Rebuild a compressed model saved by :func:`save_compressed` (eval mode)."""
    from automc.compress.spaces import build_space
    from automc.models import build_model

    folder = Path(folder)
    card = read_card(folder)
    m = card["model"]
    base = build_model(m["name"], num_classes=m.get("num_classes"), in_channels=m.get("in_channels"), kwargs=m.get("kwargs"))
    x = torch.zeros(*card["input_shape"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        space = build_space(card["space"]["name"], base, x, calibration=[x], config=card["space"].get("config"))
        model = space.apply(base, card["params"])
    state = torch.load(folder / card["files"]["state_dict"], map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    if card.get("memory_format") == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        model._automc_nhwc = True  # the evaluator feeds it NHWC inputs, as when it was measured
    return model.eval()
