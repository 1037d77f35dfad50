"""Conformance of search spaces: :func:`check_search_space` runs every ``_check_*`` step.

Each step raises ``AssertionError`` naming the broken rule and how to fix the plugin.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.compress.analysis import analyze, outputs_close
from automc.compress.quant import FLOAT_BITS, quant_layers
from automc.compress.spaces import Choice, Float, Int, SearchSpace, split_name
from automc.errors import UserError
from automc.results.onnx import export_onnx, run_onnx
from automc.testing._common import forward, same_state, state_of


def check_search_space(space: SearchSpace, model: nn.Module, example_input: torch.Tensor, *, seed: int = 0) -> None:
    """Check the ``SearchSpace`` contract of ``space`` (built from ``model``).

    Rules: named, JSON-serialisable dimensions; seeded sampling is deterministic and valid;
    params survive a JSON round trip; ``apply`` returns a new, working module and never
    mutates its input; ``apply`` is deterministic; the structure of the result depends only
    on the params (so compressed models can be rebuilt from base + policy + state_dict); the
    default policy changes nothing for ratio spaces; MACs and parameters are monotone in the
    ratios and size is monotone in the bit-widths; the result exports to ONNX and runs in
    onnxruntime (with float layers: to PyTorch's outputs up to float rounding); bad policies
    raise ``UserError``.
    """
    _check_dimensions(space)
    policy = _check_sampling(space, seed)
    compressed, reference = _check_apply(space, model, example_input, policy)
    _check_rebuild(space, model, example_input, policy, compressed, seed)
    _check_onnx(compressed, example_input)
    _check_default_policy(space, model, example_input, reference)
    _check_monotone(space, model, example_input[:1])
    _check_bad_policies(space)


def _check_dimensions(space: SearchSpace) -> None:
    dims = space.dimensions
    assert dims, "space has no dimensions: build self._dims in __init__ (one per compressible layer and knob)"
    for name, dim in dims.items():
        layer, knob = split_name(name)
        assert layer and knob, f"dimension {name!r} is not named '<layer>:<knob>': name it after the module path and the knob, e.g. 'layer1.0.conv1:ratio'"
        assert isinstance(dim, (Float, Int, Choice)), f"dimension {name!r} is a {type(dim).__name__}: use automc.compress.spaces Float, Int or Choice"
        json.dumps(dim.to_json())
    json.dumps(space.config())  # config() must hold only JSON values: it is stored with every run
    json.dumps(space.describe())


def _check_sampling(space: SearchSpace, seed: int) -> dict[str, Any]:
    dims = space.dimensions
    a = space.sample(np.random.default_rng(seed))
    b = space.sample(np.random.default_rng(seed))
    assert a == b, "sample() is not deterministic for equally seeded generators: draw only from the generator it is given"
    assert list(a) == list(dims), "sample() must return every dimension, in the order of dimensions"
    assert space.validate(a) == a, "validate() changed a sampled policy: sample() must return values validate() accepts unchanged"
    assert json.loads(json.dumps(a)) == a, "params are not JSON-serialisable without loss: use plain ints, floats and strings"
    for name, dim in dims.items():  # the [0, 1] encoding agents use must round-trip
        back = dim.check(name, dim.from_unit(dim.to_unit(a[name])))
        same = abs(back - a[name]) < 1e-9 if isinstance(dim, Float) else back == a[name]
        assert same, f"{name}: to_unit/from_unit do not round-trip: make from_unit the inverse of to_unit"
    return a


def _check_apply(space: SearchSpace, model: nn.Module, example_input: torch.Tensor, policy: dict[str, Any]) -> tuple[nn.Module, torch.Tensor]:
    before_state, before_repr = state_of(model), repr(model)
    reference = forward(copy.deepcopy(model), example_input)
    out1 = space.apply(model, policy)
    assert isinstance(out1, nn.Module), "apply() must return an nn.Module"
    assert out1 is not model, "apply() returned its input: compress a copy.deepcopy of it"
    assert same_state(state_of(model), before_state), "apply() mutated the input model's parameters or buffers: work on a copy"
    assert repr(model) == before_repr, "apply() changed the input model's structure: work on a copy"
    out2 = space.apply(model, policy)
    assert same_state(state_of(out1), state_of(out2)), "apply() is not deterministic: seed any randomness from the params"
    y1 = forward(out1, example_input)
    assert y1.shape == reference.shape, f"compressed output shape {tuple(y1.shape)} != original {tuple(reference.shape)}: keep the model's outputs"
    assert torch.isfinite(y1).all(), "compressed model produced non-finite outputs"
    return out1, reference


def _check_rebuild(space: SearchSpace, model: nn.Module, example_input: torch.Tensor, policy: dict[str, Any], compressed: nn.Module, seed: int) -> None:
    other = copy.deepcopy(model)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (p.detach().abs().mean() + 1e-3))
    rebuilt = space.apply(other, policy)
    s1, s2 = compressed.state_dict(), rebuilt.state_dict()
    assert s1.keys() == s2.keys() and all(s1[k].shape == s2[k].shape for k in s1), (
        "apply() structure depends on weight values, so a saved model cannot be rebuilt from its policy: "
        "choose what to remove from the params (and the model's structure) only"
    )
    rebuilt.load_state_dict(s1, strict=True)
    assert outputs_close(forward(rebuilt, example_input), forward(compressed, example_input)), "rebuilt model + saved state_dict differs from the compressed model"


def _check_onnx(compressed: nn.Module, example_input: torch.Tensor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = export_onnx(compressed, example_input[:1], Path(tmp) / "m.onnx")
        except UserError as exc:
            raise AssertionError(f"the compressed model does not export to ONNX ({exc}): build it from exportable ops") from None
        got = torch.from_numpy(run_onnx(path, example_input))
    expected = forward(compressed, example_input)
    assert got.shape == expected.shape, f"the ONNX model's output shape {tuple(got.shape)} != PyTorch's {tuple(expected.shape)}"
    if not any(m.w_bits < FLOAT_BITS or m.a_bits < FLOAT_BITS for m in quant_layers(compressed).values()):
        assert outputs_close(got, expected), "the ONNX model's outputs differ from PyTorch's beyond float rounding"


def _check_default_policy(space: SearchSpace, model: nn.Module, example_input: torch.Tensor, reference: torch.Tensor) -> None:
    dims = space.dimensions
    if all(isinstance(d, Float) and d.default == d.high for d in dims.values()):  # ratio-only spaces are exact
        y0 = forward(space.apply(model, space.default_params()), example_input)
        assert outputs_close(y0, reference), "the default policy changed the model's outputs: the default must compress nothing"


def _check_monotone(space: SearchSpace, model: nn.Module, x1: torch.Tensor) -> None:
    dims, default = space.dimensions, space.default_params()
    floats = [d for d in dims.values() if isinstance(d, Float)]
    if floats:
        lo = max(d.low for d in floats)
        prev: tuple[int, int] | None = None
        for v in sorted({lo, (lo + 1) / 2, 1.0}):
            params = dict(default)
            params.update({k: d.check(k, min(max(v, d.low), d.high)) for k, d in dims.items() if isinstance(d, Float)})
            st = analyze(space.apply(model, params), x1)
            cur = (st.effective_macs, st.nonzero_params)
            if prev is not None:
                assert cur[0] >= prev[0] and cur[1] >= prev[1], f"MACs/params are not monotone in the ratios (at {v}: {cur} < {prev}): a higher ratio must keep at least as much"
            prev = cur
    choices = {k: d for k, d in dims.items() if isinstance(d, Choice) and split_name(k)[1].endswith("bits") and all(isinstance(v, int) for v in d.values)}
    if choices:
        prev_size = None
        for bits in sorted(set.intersection(*(set(d.values) for d in choices.values()))):
            params = dict(default)
            params.update({k: bits for k in choices})
            size = analyze(space.apply(model, params), x1).size_bytes
            if prev_size is not None:
                assert size >= prev_size, f"size is not monotone in the bit-widths ({bits} bits: {size} < {prev_size}): record w_bits on quantised layers"
            prev_size = size


def _check_bad_policies(space: SearchSpace) -> None:
    first, dim = next(iter(space.dimensions.items()))
    bad: Any = (dim.low - 1) if isinstance(dim, (Float, Int)) else object()
    try:
        space.validate({first: bad}, partial=True)
    except UserError as exc:
        assert first in str(exc), "the range error must name the dimension"
    else:
        raise AssertionError("validate() accepted an out-of-range value: let the base class validate, or raise UserError naming the dimension")
    try:
        space.validate({"no.such.layer:ratio": 1.0}, partial=True)
    except UserError as exc:
        assert "no.such.layer" in str(exc), "the unknown-name error must name the layer"
    else:
        raise AssertionError("validate() accepted an unknown dimension: let the base class validate")
