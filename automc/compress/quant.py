"""Fake quantisation: quantisers and quantised Conv/Linear layers.

Weights (quantised once, when a policy is applied):

* ``linear``: symmetric, per output channel, integers in [-(2^(b-1)-1), 2^(b-1)-1]. At 8
  bits the grid is the int8 scheme's (:mod:`automc.compress.int8`): scale max|w|/127, or max|w|/64
  with ``reduce_range`` on x86 without VNNI — exactly onnxruntime's grid, so 8-bit layers
  export to a real int8 QDQ graph with identical integer weights; below 8 bits each channel's
  clipping range is chosen to minimise the squared error (max-scaling wastes most levels there);
* 1 bit: binarisation, ``sign(w) × mean|w|`` per output channel (XNOR-Net);
* ``kmeans``: weight sharing with a 2^b-entry codebook per layer (Deep Compression), Lloyd's
  algorithm in 1-D from a linear initialisation, deterministic.

Activations: asymmetric per-tensor on each layer's input, range from min/max over calibration
batches (widened to include 0, as onnxruntime does), ``2^b`` levels. 32 bits means float.

Quantised layers subclass ``nn.Conv2d`` / ``nn.Linear`` so everything that understands those
(cost analysis, torch-pruning, ONNX export) keeps working; they carry ``w_bits``, ``a_bits``
and ``weight_quantizer`` attributes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from automc.compress.analysis import eval_mode
from automc.compress.int8 import resolve_scheme

FLOAT_BITS = 32
WEIGHT_QUANTIZERS = ("linear", "kmeans")


def quantize_weight_linear(w: torch.Tensor, bits: int, int8_qmax: int = 127) -> torch.Tensor:
    """Symmetric per-output-channel fake quantisation (binarisation for 1 bit).

    ``int8_qmax`` is the largest integer of an 8-bit grid: 127, or 64 for onnxruntime's
    ``reduce_range`` (see :class:`automc.compress.int8.Int8Scheme`).
    """
    if bits >= FLOAT_BITS:
        return w.clone()
    if bits == 1:
        scale = w.reshape(w.shape[0], -1).abs().mean(1).view((-1,) + (1,) * (w.dim() - 1))
        return torch.where(w >= 0, scale, -scale).to(w.dtype)
    scale, qmax = linear_weight_scale(w, bits, int8_qmax)
    return (torch.clamp(torch.round(w / scale), -qmax, qmax) * scale).to(w.dtype)


def linear_weight_scale(w: torch.Tensor, bits: int, int8_qmax: int = 127) -> tuple[torch.Tensor, int]:
    """The per-output-channel scale (shaped to broadcast over ``w``) and largest integer of
    :func:`quantize_weight_linear`'s grid for ``2 <= bits < 32``."""
    flat = w.detach().reshape(w.shape[0], -1)
    shape = (-1,) + (1,) * (w.dim() - 1)
    qmax = 2 ** (bits - 1) - 1 if bits != 8 else int(int8_qmax)
    absmax = flat.abs().amax(1).clamp_min(1e-12)
    if bits >= 8:
        scale = absmax / qmax  # exactly onnxruntime's symmetric int8 scale (reduced or not)
    else:
        # Below 8 bits clipping pays: per channel, the range minimising the squared error.
        alphas = torch.linspace(0.2, 1.0, 33, dtype=flat.dtype)
        cand = alphas[:, None] * absmax[None, :] / qmax  # (A, C)
        q = torch.clamp(torch.round(flat[None] / cand[..., None]), -qmax, qmax) * cand[..., None]
        err = (q - flat[None]).pow(2).sum(-1)  # (A, C)
        scale = cand.gather(0, err.argmin(0, keepdim=True))[0]
    return scale.view(shape), qmax


def quantize_weight_kmeans(w: torch.Tensor, bits: int, iterations: int = 25) -> torch.Tensor:
    """Replace every weight by the nearest of 2^bits shared values fitted by 1-D k-means."""
    if bits >= FLOAT_BITS:
        return w.clone()
    flat = w.detach().reshape(-1).double()
    k = 2**bits
    lo, hi = float(flat.min()), float(flat.max())
    centroids = torch.linspace(lo, hi, k, dtype=torch.float64)
    for _ in range(iterations):
        mids = (centroids[1:] + centroids[:-1]) / 2
        assign = torch.bucketize(flat, mids)
        sums = torch.zeros(k, dtype=torch.float64).scatter_add_(0, assign, flat)
        counts = torch.bincount(assign, minlength=k).double()
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        new, _ = torch.sort(new)
        if torch.allclose(new, centroids):
            break
        centroids = new
    mids = (centroids[1:] + centroids[:-1]) / 2
    return centroids[torch.bucketize(flat, mids)].reshape(w.shape).to(w.dtype)


def quantize_weight(w: torch.Tensor, bits: int, quantizer: str = "linear", int8_qmax: int = 127) -> torch.Tensor:
    if quantizer == "kmeans" and 1 < bits < FLOAT_BITS:
        return quantize_weight_kmeans(w, bits)
    return quantize_weight_linear(w, bits, int8_qmax)


def activation_qparams(lo: float, hi: float, bits: int) -> tuple[float, float]:
    """Asymmetric (scale, zero_point) for a range, widened to include 0."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    qmax = 2**bits - 1
    scale = (hi - lo) / qmax if hi > lo else 1.0
    zero_point = min(max(round(-lo / scale), 0), qmax)
    return float(scale), float(zero_point)


def fake_quantize_activation(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantise-dequantise ``x`` on the asymmetric grid. When a gradient is wanted
    (quantisation-aware training) it passes straight through inside the range and is zero
    outside it (the clipped straight-through estimator); the values are the same either way."""
    qmax = float(2**bits - 1)
    q = (torch.clamp(torch.round(x / scale) + zero_point, 0.0, qmax) - zero_point) * scale
    if not (torch.is_grad_enabled() and x.requires_grad):
        return q
    lo, hi = (0.0 - zero_point) * scale, (qmax - zero_point) * scale
    inside = torch.clamp(x, lo, hi)
    return inside + (q - inside).detach()


class QuantMixin:
    """State and input quantisation shared by :class:`QuantConv2d` and :class:`QuantLinear`."""

    w_bits: int
    a_bits: int
    weight_quantizer: str
    int8_scheme: str
    act_quant_enabled: bool
    a_scale: torch.Tensor
    a_zero_point: torch.Tensor

    def _init_quant(self, w_bits: int, a_bits: int, quantizer: str, int8_scheme: str) -> None:
        self.w_bits = int(w_bits)
        self.a_bits = int(a_bits)
        self.weight_quantizer = quantizer if w_bits < FLOAT_BITS else "float"
        self.int8_scheme = int8_scheme
        self.act_quant_enabled = True
        self.register_buffer("a_scale", torch.tensor(1.0))  # type: ignore[attr-defined]
        self.register_buffer("a_zero_point", torch.tensor(0.0))  # type: ignore[attr-defined]

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.a_bits >= FLOAT_BITS or not self.act_quant_enabled:
            return x
        return fake_quantize_activation(x, self.a_scale, self.a_zero_point, self.a_bits)

    def extra_repr(self) -> str:  # type: ignore[override]
        base = super().extra_repr()  # type: ignore[misc]
        return f"{base}, w_bits={self.w_bits}, a_bits={self.a_bits}, quantizer={self.weight_quantizer}, int8={self.int8_scheme}"


class QuantConv2d(QuantMixin, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.quantize_input(x), self.weight, self.bias)


class QuantLinear(QuantMixin, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.quantize_input(x), self.weight, self.bias)


def quantize_layer(layer: nn.Module, w_bits: int, a_bits: int, quantizer: str = "linear", int8_scheme: str = "auto") -> nn.Module:
    """A quantised copy of a Conv2d/Linear (weights quantised now, activations at calibration).

    ``int8_scheme`` (``auto`` or a name from :data:`automc.compress.int8.SCHEMES`) sets the grid of
    8-bit weights and tells the exporter how onnxruntime must run the layer.
    """
    scheme = resolve_scheme(int8_scheme)
    if quantizer not in WEIGHT_QUANTIZERS:
        raise ValueError(f"unknown weight quantizer {quantizer!r}; valid: {', '.join(WEIGHT_QUANTIZERS)}")
    if isinstance(layer, QuantMixin):
        raise ValueError("layer is already quantised")
    new: nn.Module
    if isinstance(layer, nn.Conv2d):
        new = QuantConv2d.__new__(QuantConv2d)
    elif isinstance(layer, nn.Linear):
        new = QuantLinear.__new__(QuantLinear)
    else:
        raise TypeError(f"cannot quantise {type(layer).__name__}")
    new.__dict__ = copy.deepcopy(layer.__dict__)  # same hyper-parameters, parameters and hooks
    new._init_quant(w_bits, a_bits, quantizer, scheme.name)  # type: ignore[attr-defined]
    with torch.no_grad():
        new.weight.copy_(quantize_weight(layer.weight.detach(), w_bits, quantizer, scheme.weight_qmax))  # type: ignore[operator]
    return new


def quant_layers(model: nn.Module) -> dict[str, QuantMixin]:
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantMixin)}


def calibrate_activations(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Set every quantised layer's activation range from min/max of its input over ``batches``.

    Runs with activation quantisation off (float activations, quantised weights), as a static
    post-training quantiser calibrates.
    """
    layers = {n: m for n, m in quant_layers(model).items() if m.a_bits < FLOAT_BITS}
    if not layers:
        return
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name, layer in layers.items():
        layer.act_quant_enabled = False

        def pre_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], name: str = name) -> None:
            x = inputs[0].detach()
            lo, hi = float(x.min()), float(x.max())
            r = ranges.setdefault(name, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)

        hooks.append(layer.register_forward_pre_hook(pre_hook))  # type: ignore[attr-defined]
    try:
        with eval_mode(model), torch.no_grad():
            for xb in batches:
                model(xb)
    finally:
        for h in hooks:
            h.remove()
    for name, layer in layers.items():
        lo, hi = ranges.get(name, [0.0, 1.0])
        scale, zp = activation_qparams(lo, hi, layer.a_bits)
        layer.a_scale.fill_(scale)
        layer.a_zero_point.fill_(zp)
        layer.act_quant_enabled = True
