"""The ``lut`` table's keys (a conv/linear layer minus its channel counts) and the standalone
layers they stand for: which configurations a search space can reach, and how each is built
to be measured alone."""

from __future__ import annotations

import json
import math
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import COUNTED, analyze
from automc.compress.quant import FLOAT_BITS, quantize_layer
from automc.compress.spaces import Float, SearchSpace


def _tuple(v: Any) -> list[int]:
    return list(v) if isinstance(v, (tuple, list)) else [int(v)]


def bits_class(module: nn.Module) -> int:
    """8 for layers a runtime can execute as int8 (<= 8 bits), else 32."""
    wb, ab = int(getattr(module, "w_bits", FLOAT_BITS)), int(getattr(module, "a_bits", FLOAT_BITS))
    return 8 if wb <= 8 and ab <= 8 else FLOAT_BITS


def layer_key(module: nn.Module, input_shape: tuple[int, ...], bits: int) -> str:
    """Table key of a conv/linear layer: everything but its channel counts."""
    if isinstance(module, nn.Linear):
        key: dict[str, Any] = {"op": "linear", "bias": module.bias is not None, "input": list(input_shape[:-1]), "bits": bits}
    else:
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        if module.groups > 1 and not depthwise:
            key_op = f"gconv{module.groups}"
        else:
            key_op = "dwconv" if depthwise else "conv"
        key = {
            "op": key_op,
            "kernel": _tuple(module.kernel_size),
            "stride": _tuple(module.stride),
            "padding": _tuple(module.padding) if not isinstance(module.padding, str) else module.padding,
            "dilation": _tuple(module.dilation),
            "bias": module.bias is not None,
            "input_hw": list(input_shape[1:]),
            "bits": bits,
        }
    return json.dumps(key, sort_keys=True)


def keyed_layers(model: nn.Module, example_input: torch.Tensor) -> list[tuple[Any, str]]:
    """Every conv/linear layer of ``model`` (its analysis stats) with its table key, in the
    order a table's latencies are summed."""
    modules = dict(model.named_modules())
    out = []
    for s in analyze(model, example_input[:1]).layers:
        m = modules[s.name]
        if isinstance(m, COUNTED):
            out.append((s, layer_key(m, (s.in_channels, *s.input_shape[1:]) if s.type != "Linear" else s.input_shape, bits_class(m))))
    return out


def make_layer(key: str, cin: int, cout: int) -> tuple[nn.Module, torch.Tensor]:
    """A single layer for ``key`` with the given channels, and an input for it."""
    k = json.loads(key)
    if k["op"] == "linear":
        layer: nn.Module = nn.Linear(cin, cout, bias=k["bias"])
        x = torch.zeros(1, *k["input"][:-1], cin) if k["input"] else torch.zeros(1, cin)
    else:
        groups = cin if k["op"] == "dwconv" else (int(k["op"][5:]) if k["op"].startswith("gconv") else 1)
        padding = k["padding"] if isinstance(k["padding"], str) else tuple(k["padding"])
        layer = nn.Conv2d(cin, cout, tuple(k["kernel"]), tuple(k["stride"]), padding, tuple(k["dilation"]), groups=groups, bias=k["bias"])
        x = torch.zeros(1, cin, *k["input_hw"])
    if k["bits"] <= 8:
        layer = quantize_layer(layer, 8, 8)
    return layer.eval(), x


def _grid(counts: set[int], step: int) -> list[int]:
    lo, hi = min(counts), max(counts)
    return sorted({lo, hi} | {c for c in range(step, hi + 1, step) if c >= lo})


def _reachable(space: SearchSpace, dim: str, channels: int) -> set[int]:
    d = space.dimensions[dim]
    assert isinstance(d, Float)
    keep = getattr(space, "keep_count", lambda c, r, _dim: max(1, int(math.floor(c * r + 0.5))))
    return {keep(channels, d.low + (d.high - d.low) * i / 400, dim) for i in range(401)}


def layer_options(model: nn.Module, space: SearchSpace, example_input: torch.Tensor, step: int) -> dict[str, dict[str, Any]]:
    """For every conv/linear layer: its key(s), and the input/output channels the space can give it."""
    stats = {s.name: s for s in analyze(model, example_input[:1]).layers}
    ins: dict[str, list[int]] = {n: [s.in_channels] for n, s in stats.items()}
    outs: dict[str, list[int]] = {n: [s.out_channels] for n, s in stats.items()}
    quantised = False
    for dim, d in space.dimensions.items():
        info = dict(d.info)
        if dim.endswith(":ratio") and "producers" in info:
            grid = _grid(_reachable(space, dim, int(info["channels"])), step)
            for p in info["producers"]:
                if p in outs:
                    outs[p] = grid
            for c in info["consumers"]:
                if c in ins:
                    ins[c] = grid
                    if stats[c].groups > 1 and stats[c].groups == stats[c].in_channels:
                        outs[c] = grid  # depthwise: in = out
        if dim.endswith((":w_bits", ":a_bits")):
            quantised = True
    quantised = quantised or any(getattr(space, "fixed", {}))
    modules = dict(model.named_modules())
    out = {}
    for name, s in stats.items():
        bits = [FLOAT_BITS, 8] if quantised else [FLOAT_BITS]
        keys = [layer_key(modules[name], (s.in_channels, *s.input_shape[1:]) if s.type != "Linear" else s.input_shape, b) for b in bits]
        out[name] = {"keys": keys, "in": ins[name], "out": outs[name]}
    return out
