"""Training a compressed model without undoing its compression.

A compressed candidate holds weights that are *already* compressed: quantised layers keep
their weights on the quantiser's grid (:mod:`automc.compress.quant`), sparse layers keep
exact zeros. Plain SGD would move them off the grid and revive pruned weights. Here every
such weight becomes a ``torch.nn.utils.parametrize`` parametrisation for the time of
training, so the forward pass always sees a compressed weight:

* linear (``w_bits`` 2–16): a latent float weight, fake-quantised on each forward with a
  straight-through gradient. At 8 bits the per-channel scale is recomputed from the latent
  weight (``max|w| / qmax``: exactly the grid onnxruntime's int8 export uses); below 8 bits the
  clipping scale chosen when the policy was applied stays fixed (searching it again every step
  would make the grid jump);
* 1 bit: ``sign(w) × mean|w|`` per channel (XNOR-Net), straight-through;
* k-means: the codebook is trained, the assignment of weights to codewords is kept (Deep
  Compression's fine-tuning: each codeword's gradient is the sum over its weights);
* float layers with exact zeros (magnitude sparsity): a fixed 0/1 mask.

Activation quantisers stay in the forward pass with their calibrated ranges (their gradient
is the clipped straight-through estimator). Channel-pruned structure needs nothing: the
tensors are smaller. :func:`finish_qat` bakes the compressed weights back into plain
parameters, so the result has exactly the structure, bit-widths and sparsity it started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from automc.compress.int8 import resolve_scheme
from automc.compress.quant import FLOAT_BITS, QuantMixin, linear_weight_scale


class _LinearFakeQuant(nn.Module):
    """Symmetric per-channel fake quantisation with a straight-through gradient."""

    def __init__(self, weight: torch.Tensor, bits: int, int8_qmax: int) -> None:
        super().__init__()
        self.bits = bits
        self.int8_qmax = int8_qmax
        scale, qmax = linear_weight_scale(weight, bits, int8_qmax)
        self.qmax = qmax
        self.register_buffer("fixed_scale", scale.clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.bits >= 8:
            scale, _ = linear_weight_scale(w, self.bits, self.int8_qmax)
        else:
            scale = self.fixed_scale
        q = torch.clamp(torch.round(w.detach() / scale), -self.qmax, self.qmax) * scale
        return w + (q - w).detach()


class _Binarize(nn.Module):
    """``sign(w) × mean|w|`` per output channel; straight-through inside [-1, 1]·max|w|."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().reshape(w.shape[0], -1).abs().mean(1).view((-1,) + (1,) * (w.dim() - 1))
        q = torch.where(w.detach() >= 0, scale, -scale)
        return w + (q - w).detach()


class _Codebook(nn.Module):
    """Weight sharing: the parametrised tensor is the codebook; the weight is ``codebook[assign]``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        codebook, assign = torch.unique(weight.detach(), return_inverse=True)
        self.shape = tuple(weight.shape)
        self.register_buffer("assign", assign.reshape(-1))
        self.register_buffer("initial", codebook.clone())

    def forward(self, codebook: torch.Tensor) -> torch.Tensor:
        return codebook[self.assign].reshape(self.shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        # the codebook a weight of this layout carries (mean over each codeword's weights)
        k = len(self.initial)
        sums = torch.zeros(k, dtype=weight.dtype, device=weight.device).scatter_add_(0, self.assign, weight.detach().reshape(-1))
        counts = torch.bincount(self.assign, minlength=k).to(weight.dtype)
        return sums / counts.clamp_min(1)


class _Mask(nn.Module):
    """Keep pruned (zero) weights at zero: ``w × mask``."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", (weight.detach() != 0).to(weight.dtype))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


@dataclass
class QatPlan:
    """What :func:`prepare_qat` did, per layer (``layer → how``), for the record."""

    layers: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """How many layers of each kind are trained under a constraint."""
        out: dict[str, int] = {}
        for how in self.layers.values():
            kind = how.split(" ", 1)[0]
            out[kind] = out.get(kind, 0) + 1
        return out


def prepare_qat(model: nn.Module) -> QatPlan:
    """Parametrise ``model``'s compressed weights in place (see the module docstring)."""
    plan = QatPlan()
    for name, layer in model.named_modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)) or parametrize.is_parametrized(layer):
            continue
        w = layer.weight.detach()
        if isinstance(layer, QuantMixin) and layer.w_bits < FLOAT_BITS:
            how: nn.Module
            if layer.w_bits == 1:
                how, label = _Binarize(), "binary 1-bit"
            elif layer.weight_quantizer == "kmeans":
                how, label = _Codebook(w), f"kmeans {layer.w_bits}-bit"
            else:
                how, label = _LinearFakeQuant(w, layer.w_bits, resolve_scheme(layer.int8_scheme).weight_qmax), f"linear {layer.w_bits}-bit"
            parametrize.register_parametrization(layer, "weight", how)
            plan.layers[name] = label
        elif not isinstance(layer, QuantMixin) and bool((w == 0).any()):
            parametrize.register_parametrization(layer, "weight", _Mask(w))
            plan.layers[name] = f"mask {float((w != 0).float().mean()):.3f} dense"
    return plan


def finish_qat(model: nn.Module) -> None:
    """Bake the parametrised (compressed) weights into plain parameters, in place."""
    for layer in model.modules():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
