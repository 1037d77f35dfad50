"""A lookup table's latency for a policy, read off its channel counts without building the model.

A ``target: {latency_ms: ...}`` on the ``lut`` profile is guaranteed: every projected proposal
is checked against the table. Building the pruned model for each step of that search costs
about 0.35 s per ResNet-20 candidate; the table itself only needs each conv/linear layer's
input and output channel counts, and those follow from the policy the way its MACs do
(:meth:`automc.search.cost_model.CostModel.channel_fractions`: producers keep the group's
count, consumers their share of it; a depthwise conv's entry reads its input count).

Only channel-ratio spaces are read this way. Bit-widths change a layer's table key, and
elastic depth and kernel knobs change which layers exist, so those spaces get None and their
projections are built. The projection compares this estimate with built models before it
trusts it, and with every candidate after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from automc.compress.spaces import SearchSpace
from automc.device_profiles.lut_keys import keyed_layers
from automc.device_profiles.policy_layers import channel_cost_model

LayerLatency = Callable[[str, int, int], "float | None"]  # (table key, in, out) -> ms, None if absent


def policy_latency(
    layer_latency: LayerLatency, fitted: Callable[[float], float], model: nn.Module, space: SearchSpace, example_input: torch.Tensor
) -> Callable[[Mapping[str, Any]], Mapping[str, float]] | None:
    """``estimate(params) -> {"latency_ms": ...}`` equal to the table's latency of
    ``space.apply(model, params)`` (its entries ``layer_latency``, their sum through
    ``fitted``), or None where the space changes more than channel counts (or the table lacks
    a layer: measuring says which)."""
    fractions = channel_cost_model(space)
    if fractions is None:
        return None
    layers = [(s.name, key, s.in_channels, s.out_channels) for s, key in keyed_layers(model, example_input)]
    if any(layer_latency(key, cin, cout) is None for _, key, cin, cout in layers):
        return None

    def estimate(params: Mapping[str, Any]) -> dict[str, float]:
        kept = fractions.channel_fractions(params)
        total = 0.0
        for name, key, cin, cout in layers:  # the order predict() sums in: the same floats
            kept_in, kept_out = kept.get(name, (1.0, 1.0))
            # a depthwise entry reads its input count only (its output count follows it)
            total += float(layer_latency(key, max(1, round(cin * kept_in)), max(1, round(cout * kept_out))) or 0.0)
        return {"latency_ms": fitted(total)}

    return estimate
