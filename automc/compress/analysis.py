"""Static cost analysis of a model: MACs, parameters, storage size and activation memory.

One forward pass with hooks on every leaf module. Quantised layers (``w_bits`` / ``a_bits``
/ ``weight_quantizer`` attributes, see :mod:`automc.compress.quant`) and sparse weights (zeros in the
weight tensor) are honoured:

* ``macs`` counts dense multiply-accumulates; ``effective_macs`` only those with a non-zero
  weight (what a sparse kernel would execute).
* ``size_bytes`` stores each conv/linear weight at its bit-width — densely, or as a bitmask
  plus the non-zero values when that is smaller, or as codebook indices plus a float32
  codebook for k-means sharing — plus float32 per-channel scales for quantised layers, and
  every other parameter and buffer it needs at inference (biases, BatchNorm) in float32.
* ``peak_activation_bytes`` is the largest input + output footprint of any single layer at
  batch 1 (activations at ``a_bits`` where quantised, else float32) — the usual proxy for
  the activation RAM a device needs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerStats:
    name: str
    type: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    groups: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    macs: int
    effective_macs: int
    params: int
    nonzero_params: int
    w_bits: int
    a_bits: int
    weight_quantizer: str
    weight_bytes: float


@dataclass(frozen=True)
class ModelStats:
    layers: tuple[LayerStats, ...]
    macs: int
    effective_macs: int
    params: int
    nonzero_params: int
    size_bytes: int
    peak_activation_bytes: int

    def summary(self) -> dict[str, float]:
        """The headline figures as a flat dict of numbers (what profiles report)."""
        return {
            "macs": float(self.macs),
            "effective_macs": float(self.effective_macs),
            "params": float(self.params),
            "nonzero_params": float(self.nonzero_params),
            "size_bytes": float(self.size_bytes),
            "peak_activation_bytes": float(self.peak_activation_bytes),
        }

    def to_dict(self) -> dict[str, Any]:
        d = self.summary()
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d


def weight_storage_bytes(weight: torch.Tensor, bits: int, quantizer: str = "linear") -> float:
    """Bytes to store one weight tensor at ``bits`` (dense, sparse bitmask, or codebook)."""
    return storage_bytes(weight.numel(), int(torch.count_nonzero(weight)), bits, quantizer)


def storage_bytes(numel: int, nnz: int, bits: int, quantizer: str = "linear") -> float:
    """Bytes to store ``numel`` weights of which ``nnz`` are non-zero, at ``bits``: the smaller
    of dense and bitmask-plus-non-zeros, plus a k-means codebook."""
    if quantizer == "kmeans" and bits < 32:
        dense = numel * bits / 8
        sparse = numel / 8 + nnz * bits / 8
        return min(dense, sparse) + (2**bits) * 4
    dense = numel * bits / 8
    sparse = numel / 8 + nnz * bits / 8
    return min(dense, sparse)


def _pair(v: Any) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, then every module's own training flag back:
    ``model.train(was)`` would also put BatchNorm layers a user froze in eval mode back into
    training (their running statistics would then move during fine-tuning)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def forward_with_hooks(
    model: nn.Module,
    example_input: torch.Tensor,
    hook: Any,
    select: Any = lambda m: len(list(m.children())) == 0,
) -> Any:
    """One eval-mode, no-grad forward with ``hook`` on every module ``select`` accepts;
    hooks are removed and every module's training flag restored afterwards. Returns the
    output."""
    hooks = [m.register_forward_hook(hook) for m in model.modules() if select(m)]
    try:
        with eval_mode(model), torch.no_grad():
            return model(example_input)
    finally:
        for h in hooks:
            h.remove()


def analyze(model: nn.Module, example_input: torch.Tensor) -> ModelStats:
    """Cost figures for ``model`` on one sample shaped like ``example_input``."""
    batch = int(example_input.shape[0]) if example_input.dim() > 1 else 1
    records: dict[str, LayerStats] = {}
    peak = 0
    names = {m: n for n, m in model.named_modules()}

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        nonlocal peak
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
        if not isinstance(output, torch.Tensor) or x is None:
            return
        a_bits = int(getattr(module, "a_bits", 32))
        in_bytes = x[0:1].numel() * a_bits / 8 if x.dim() else 0
        out_bytes = output[0:1].numel() * 4 if output.dim() else 0
        peak = max(peak, int(math.ceil(in_bytes + out_bytes)))
        if not isinstance(module, COUNTED):
            return
        w = module.weight.detach()
        w_bits = int(getattr(module, "w_bits", 32))
        quantizer = str(getattr(module, "weight_quantizer", "float" if w_bits >= 32 else "linear"))
        density = float(torch.count_nonzero(w)) / max(1, w.numel())
        if isinstance(module, nn.Linear):
            in_c, out_c, kernel, stride, groups = module.in_features, module.out_features, (1,), (1,), 1
            macs = output.numel() // batch * module.in_features
        else:
            in_c, out_c, groups = module.in_channels, module.out_channels, module.groups
            kernel, stride = _pair(module.kernel_size), _pair(module.stride)
            macs = output.numel() // batch * (module.in_channels // module.groups) * math.prod(kernel)
        bias = module.bias.numel() if module.bias is not None else 0
        wbytes = weight_storage_bytes(w, w_bits, quantizer)
        if w_bits < 32:
            wbytes += out_c * 4  # per-channel scales
        name = names.get(module, type(module).__name__)
        prev = records.get(name)
        records[name] = LayerStats(
            name=name,
            type=type(module).__name__,
            in_channels=int(in_c),
            out_channels=int(out_c),
            kernel=kernel,
            stride=stride,
            groups=int(groups),
            input_shape=tuple(x.shape[1:]),
            output_shape=tuple(output.shape[1:]),
            macs=int(macs) + (prev.macs if prev else 0),  # a module used twice costs twice
            effective_macs=int(round(macs * density)) + (prev.effective_macs if prev else 0),
            params=int(w.numel() + bias),
            nonzero_params=int(torch.count_nonzero(w)) + bias,
            w_bits=w_bits,
            a_bits=a_bits,
            weight_quantizer=quantizer,
            weight_bytes=float(wbytes + bias * 4),
        )

    forward_with_hooks(model, example_input, hook)
    layers = tuple(records.values())
    counted_params = {id(p) for m in model.modules() if isinstance(m, COUNTED) for p in m.parameters(recurse=False)}
    other = sum(p.numel() for p in model.parameters() if id(p) not in counted_params)
    # Inference-time buffers (BN statistics, index maps) count; quantiser bookkeeping is in weight_bytes.
    other_buffers = sum(
        b.numel()
        for n, b in model.named_buffers()
        if b.is_floating_point() and not n.rsplit(".", 1)[-1].startswith(("w_", "a_"))
    )
    size = sum(layer.weight_bytes for layer in layers) + 4 * (other + other_buffers)
    return ModelStats(
        layers=layers,
        macs=sum(layer.macs for layer in layers),
        effective_macs=sum(layer.effective_macs for layer in layers),
        params=sum(layer.params for layer in layers) + other,
        nonzero_params=sum(layer.nonzero_params for layer in layers) + other,
        size_bytes=int(math.ceil(size)),
        peak_activation_bytes=int(peak),
    )


# float32 outputs computed with different kernels or thread counts differ by rounding only:
# measured ≤ 6e-7 of the largest |logit| (ResNet-20, 1 vs 2 threads, AVX2 vs AVX-512). 1e-5 of
# that scale leaves 15× headroom, while a wrongly pruned live channel moves logits by ≥ 1e-2
# of it (tests/test_spaces.py shows both sides).
OUTPUT_RTOL = 1e-5


def outputs_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = OUTPUT_RTOL) -> bool:
    """Whether two model outputs agree up to float rounding: max |difference| within ``rtol``
    of the largest |expected| value (a tolerance scaled to the logits, not an absolute one)."""
    if actual.shape != expected.shape:
        return False
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    return float((actual.detach() - expected.detach()).abs().max()) <= rtol * max(scale, 1e-12)
