"""Mixed precision: per-layer weight and activation bit-widths (HAQ-style).

Dimensions ``<layer>:w_bits`` and ``<layer>:a_bits`` for every Conv2d and Linear layer (so
transformer-style MLP blocks are searched too), each a choice from ``bits`` (default 2–8;
1 = binarisation; 32 = leave in float). Weights are quantised symmetrically per output channel
(or by k-means weight sharing with ``weight_quantizer="kmeans"``); activations asymmetrically
per tensor, with ranges calibrated on the space's calibration batches. The first and last
layers follow ``first_last``: ``"search"`` (ordinary dimensions), an integer (fixed at that
many bits, the common choice being 8), or ``"fp32"`` (left in float).

``int8_scheme`` says which onnxruntime int8 kernels the 8-bit layers are meant for
(:mod:`automc.compress.int8`): ``auto`` resolves, once, to the scheme of the CPU the space is built on
(7-bit ``reduce_range`` weights on x86 without VNNI), and the resolved name is what
:meth:`config` records, so a saved model rebuilds with the same grid on any machine.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.errors import UserError
from automc.compress.int8 import resolve_scheme
from automc.compress.quant import FLOAT_BITS, WEIGHT_QUANTIZERS, calibrate_activations, quantize_layer
from automc.compress.spaces import Choice, SearchSpace
from automc.search_spaces.common import check_layer_names, execution_order, layer_info, set_module

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)


def _bits(values: Sequence[Any], setting: str) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(v) for v in values}))
    except (TypeError, ValueError):
        raise UserError(f"{setting} must be a list of bit-widths, got {values!r}", field=setting) from None
    bad = [b for b in out if not (1 <= b <= 16 or b == FLOAT_BITS)]
    if not out or bad:
        raise UserError(f"{setting} must hold bit-widths between 1 and 16 (or 32 for float), got {list(values)}", field=setting)
    return out


class MixedPrecisionSpace(SearchSpace):
    """Per-layer ``w_bits`` / ``a_bits`` choices."""

    name = "mixed_precision"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        bits: Sequence[int] = DEFAULT_BITS,
        w_bits: Sequence[int] | None = None,
        a_bits: Sequence[int] | None = None,
        quantize_activations: bool = True,
        weight_quantizer: str = "linear",
        first_last: int | str = 8,
        keep_layers: Sequence[str] = (),
        int8_scheme: str = "auto",
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        if weight_quantizer not in WEIGHT_QUANTIZERS:
            raise UserError(f"weight_quantizer {weight_quantizer!r} is not known; valid: {', '.join(WEIGHT_QUANTIZERS)}", field="weight_quantizer")
        if not (first_last in ("search", "fp32") or (isinstance(first_last, int) and not isinstance(first_last, bool))):
            raise UserError(f"first_last must be 'search', 'fp32' or a bit-width, got {first_last!r}", field="first_last")
        self.bits = _bits(bits, "bits")
        self.w_choices = _bits(w_bits, "w_bits") if w_bits is not None else self.bits
        self.a_choices = _bits(a_bits, "a_bits") if a_bits is not None else self.bits
        self.quantize_activations = bool(quantize_activations)
        self.weight_quantizer = weight_quantizer
        self.int8_scheme = resolve_scheme(int8_scheme).name
        self.first_last = first_last
        self.keep_layers = tuple(check_layer_names(model, keep_layers, "keep_layers"))
        order = [n for n in execution_order(model, example_input) if n not in self.keep_layers]
        if not order:
            raise UserError("the model has no conv/linear layer to quantise")
        stats = {layer.name: layer for layer in analyze(model, example_input).layers}
        ends = {order[0], order[-1]}
        self.fixed: dict[str, tuple[int, int]] = {}
        self.layers = order
        for name in order:
            if name in ends and first_last != "search":
                b = FLOAT_BITS if first_last == "fp32" else int(first_last)
                self.fixed[name] = (b, b if self.quantize_activations else FLOAT_BITS)
                continue
            s = stats[name]
            info = layer_info(s)
            self._dims[f"{name}:w_bits"] = Choice(self.w_choices, max(self.w_choices), knob="w_bits", info=info)
            if self.quantize_activations:
                self._dims[f"{name}:a_bits"] = Choice(self.a_choices, max(self.a_choices), knob="a_bits", info=info)
        if not self._dims:
            raise UserError("every quantisable layer is fixed by first_last/keep_layers: nothing left to search")

    def config(self) -> dict[str, Any]:
        return {
            "bits": list(self.bits),
            "w_bits": list(self.w_choices),
            "a_bits": list(self.a_choices),
            "quantize_activations": self.quantize_activations,
            "weight_quantizer": self.weight_quantizer,
            "first_last": self.first_last,
            "keep_layers": list(self.keep_layers),
            "int8_scheme": self.int8_scheme,
        }

    def layer_bits(self, params: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        """``layer → (w_bits, a_bits)`` for a (validated) policy, fixed layers included."""
        out = {}
        for name in self.layers:
            if name in self.fixed:
                out[name] = self.fixed[name]
            else:
                wb = int(params[f"{name}:w_bits"])
                ab = int(params[f"{name}:a_bits"]) if self.quantize_activations else FLOAT_BITS
                out[name] = (wb, ab)
        return out

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        params = self.validate(params, partial=True)
        out = copy.deepcopy(model)
        present = dict(out.named_modules())
        any_act = False
        for name, (wb, ab) in self.layer_bits(params).items():
            if (wb >= FLOAT_BITS and ab >= FLOAT_BITS) or name not in present:
                continue  # float, or a layer the model no longer has (a block dropped by elastic depth)
            set_module(out, name, quantize_layer(out.get_submodule(name), wb, ab, self.weight_quantizer, self.int8_scheme))
            any_act = any_act or ab < FLOAT_BITS
        if any_act:
            batches = self.calibration
            if not batches:
                warnings.warn(
                    "mixed_precision: no calibration batches given; activation ranges come from the example input only",
                    stacklevel=2,
                )
                batches = [self.example_input]
            calibrate_activations(out, batches)
        return out
