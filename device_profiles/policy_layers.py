"""Each conv/linear layer's shape after a channel-pruning policy, read without building the model.

An analytic device model (``accelerator``) computes its figures per layer from the MACs, the
stored weights and the activation counts. Channel pruning changes only channel counts, and
those follow from the policy the way its MACs do
(:meth:`automc.search.cost_model.CostModel.channel_fractions`): so a target on such a model
can be projected by reading the counts off each proposal instead of building every step, as a
lookup table's latency is (:mod:`automc.device_profiles.lut_policy`).

Read this way only where the reading is the built model's figure: channel-ratio spaces (bit
widths, sparsity and elastic knobs change more than counts), plain or depthwise convolutions
(a grouped one's groups may shrink with it), and weights with no zero among them (the stored
size and the non-zero MACs of a slice then follow from its shape alone). Everywhere else the
reading is None and the projection builds. The projection also checks the reading against
built models before trusting it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.compress.spaces import SearchSpace, split_name
from automc.search.cost_model import CostModel


@dataclass(frozen=True)
class PrunedLayer:
    """One conv/linear layer of the pruned model, as :func:`automc.compress.analysis.analyze`
    would report it (activation counts per sample)."""

    name: str
    macs: int
    weights: int
    in_numel: int
    out_numel: int
    w_bits: int
    a_bits: int
    weight_quantizer: str


def channel_cost_model(space: SearchSpace) -> CostModel | None:
    """The cost model whose ``channel_fractions(params)`` give each layer's kept input and
    output share, or None where a policy changes more than channel counts (bit-widths,
    sparsity, elastic knobs, an architecture space's own networks). Both policy readings
    (this module's and :mod:`automc.device_profiles.lut_policy`) start here."""
    if any(split_name(name)[1] != "ratio" for name in space.dimensions) or getattr(space, "fixed", None):
        return None
    fractions = CostModel(space, "macs")
    return None if fractions.own else fractions


def policy_layers(model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> Callable[[Mapping[str, Any]], list[PrunedLayer]] | None:
    """``layers(params)``: the conv/linear layers of ``space.apply(model, params)`` in the
    order ``analyze`` lists them, or None where counts alone cannot give them (module docstring)."""
    fractions = channel_cost_model(space)
    if fractions is None:
        return None
    modules = dict(model.named_modules())
    full = []
    for s in analyze(model, example_input[:1]).layers:
        weight = modules[s.name].weight
        depthwise = s.groups == s.in_channels == s.out_channels and s.groups > 1
        if (s.groups > 1 and not depthwise) or int(torch.count_nonzero(weight)) != weight.numel():
            return None
        per_out = (s.in_channels // s.groups) * math.prod(s.kernel)  # weights per output channel
        full.append((s, depthwise, s.macs // (s.out_channels * per_out)))  # output positions (× uses)

    def layers(params: Mapping[str, Any]) -> list[PrunedLayer]:
        kept = fractions.channel_fractions(params)
        out = []
        for s, depthwise, positions in full:
            kept_in, kept_out = kept.get(s.name, (1.0, 1.0))
            cin = max(1, round(s.in_channels * kept_in))
            cout = cin if depthwise else max(1, round(s.out_channels * kept_out))  # depthwise: one filter per input
            per_out = (1 if depthwise else cin) * math.prod(s.kernel)
            out.append(
                PrunedLayer(
                    name=s.name,
                    macs=positions * cout * per_out,
                    weights=cout * per_out,
                    in_numel=math.prod(s.input_shape) // s.in_channels * cin,
                    out_numel=math.prod(s.output_shape) // s.out_channels * cout,
                    w_bits=s.w_bits,
                    a_bits=s.a_bits,
                    weight_quantizer=s.weight_quantizer,
                )
            )
        return out

    return layers
