"""Helpers shared by the built-in search spaces."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from automc.errors import UserError

QUANTIZABLE = (nn.Conv2d, nn.Linear)


def execution_order(model: nn.Module, example_input: torch.Tensor, types: tuple[type, ...] = QUANTIZABLE) -> list[str]:
    """Names of ``types`` modules in the order a forward pass runs them (each once)."""
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = [
        m.register_forward_hook(lambda mod, i, o: order.append(names[mod]) if names[mod] not in order else None)
        for m in model.modules()
        if isinstance(m, types)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order


def output_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """The conv/linear layer(s) producing the model output (the classifier), found by tracing."""
    outputs: dict[int, str] = {}
    names = {m: n for n, m in model.named_modules()}
    hooks = [
        m.register_forward_hook(lambda mod, i, o: outputs.__setitem__(id(o), names[mod]))
        for m in model.modules()
        if isinstance(m, QUANTIZABLE)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(example_input)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    outs = out if isinstance(out, (tuple, list)) else [out]
    found = [outputs[id(o)] for o in outs if id(o) in outputs]
    if found:
        return found
    order = execution_order(model, example_input)
    return order[-1:]


def check_layer_names(model: nn.Module, names: Iterable[str], setting: str) -> list[str]:
    """Every name must be a module of ``model``; otherwise a one-line error listing some."""
    known = dict(model.named_modules())
    out = []
    for name in names:
        if name not in known:
            sample = ", ".join(n for n in list(known)[1:9])
            raise UserError(f"{setting} names unknown layer {name!r}; layers look like: {sample}, …", field=setting)
        out.append(name)
    return out


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module at dotted path ``name``."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
