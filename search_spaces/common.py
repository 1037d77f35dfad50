"""Helpers shared by the built-in search spaces."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import LayerStats, forward_with_hooks
from automc.errors import UserError

QUANTIZABLE = (nn.Conv2d, nn.Linear)


def execution_order(model: nn.Module, example_input: torch.Tensor, types: tuple[type, ...] = QUANTIZABLE) -> list[str]:
    """Names of ``types`` modules in the order a forward pass runs them (each once)."""
    order: list[str] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        if names[mod] not in order:
            order.append(names[mod])

    forward_with_hooks(model, example_input, hook, lambda m: isinstance(m, types))
    return order


def output_layers(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """The conv/linear layer(s) producing the model output (the classifier), found by tracing."""
    outputs: dict[int, str] = {}
    names = {m: n for n, m in model.named_modules()}

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        outputs[id(output)] = names[mod]

    out = forward_with_hooks(model, example_input, hook, lambda m: isinstance(m, QUANTIZABLE))
    outs = out if isinstance(out, (tuple, list)) else [out]
    found = [outputs[id(o)] for o in outs if id(o) in outputs]
    return found or execution_order(model, example_input)[-1:]


def layer_info(stats: LayerStats) -> dict[str, Any]:
    """The per-layer facts a dimension carries (AMC-style agent state, reports)."""
    return {
        "layer": stats.name,
        "type": "linear" if stats.type.endswith("Linear") else "conv",
        "channels": stats.out_channels,
        "in_channels": stats.in_channels,
        "kernel": list(stats.kernel),
        "stride": list(stats.stride),
        "input_hw": list(stats.input_shape[1:]),
        "macs": stats.macs,
        "params": stats.params,
    }


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
