"""Fine-grained (unstructured) magnitude sparsity per layer.

One dimension per conv/linear layer: its **density** (fraction of weights kept) in
[lbound, 1.0]. ``apply`` zeroes the smallest-magnitude weights of each layer. The tensors keep
their shapes — the saving shows up as non-zero parameters, effective MACs and the sparse
storage size in :func:`automc.compress.analysis.analyze`, and is real only on runtimes with sparse
kernels; device profiles decide how much of it they credit.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.errors import UserError, require_number
from automc.compress.spaces import Float, SearchSpace
from automc.search_spaces.common import check_layer_names, execution_order, layer_info, output_layers


def magnitude_prune_(weight: torch.Tensor, density: float) -> None:
    """Zero all but the ``round(numel × density)`` largest-magnitude entries, in place."""
    n = weight.numel()
    keep = max(1, int(math.floor(n * density + 0.5)))
    if keep >= n:
        return
    flat = weight.detach().abs().reshape(-1)
    # stable tie-breaking by position keeps the result deterministic
    order = torch.argsort(flat, stable=True)
    mask = torch.ones(n, dtype=torch.bool)
    mask[order[: n - keep]] = False
    with torch.no_grad():
        weight.mul_(mask.view_as(weight).to(weight.dtype))


class SparsitySpace(SearchSpace):
    """Per-layer weight density (knob ``density``)."""

    name = "sparsity"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        lbound: float = 0.05,
        keep_layers: Sequence[str] = (),
        include_classifier: bool = True,
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        require_number("lbound", lbound, 0, 1, low_open=True)
        self.lbound = float(lbound)
        self.keep_layers = tuple(check_layer_names(model, keep_layers, "keep_layers"))
        self.include_classifier = bool(include_classifier)
        skip = set(self.keep_layers) | (set() if include_classifier else set(output_layers(model, example_input)))
        stats = {layer.name: layer for layer in analyze(model, example_input).layers}
        self._numel: dict[str, int] = {}
        for name in execution_order(model, example_input):
            if name in skip:
                continue
            s = stats[name]
            info = layer_info(s)
            self._dims[f"{name}:density"] = Float(self.lbound, 1.0, 1.0, knob="density", info=info)
            self._numel[f"{name}:density"] = int(model.get_submodule(name).weight.numel())
        if not self._dims:
            raise UserError("the model has no conv/linear layer left to sparsify")

    def config(self) -> dict[str, Any]:
        return {"lbound": self.lbound, "keep_layers": list(self.keep_layers), "include_classifier": self.include_classifier}

    def canonical(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Kept weights per layer (as :func:`magnitude_prune_` rounds them)."""
        params = self.validate(params, partial=True)
        return tuple((k, min(n, max(1, int(math.floor(n * params[k] + 0.5))))) for k, n in self._numel.items())

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        params = self.validate(params, partial=True)
        out = copy.deepcopy(model)
        for dim, density in params.items():
            layer = out.get_submodule(dim.rsplit(":", 1)[0])
            magnitude_prune_(layer.weight, float(density))
        return out
