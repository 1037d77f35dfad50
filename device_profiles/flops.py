"""``flops``: static proxy costs — MACs, parameters, storage size and peak activation memory,
honouring per-layer bit-widths and sparsity (see :mod:`automc.compress.analysis`)."""

from __future__ import annotations

import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.measure.profiles import DeviceProfile, Measurement


class FlopsProfile(DeviceProfile):
    name = "flops"
    analytic = True
    metrics = ("macs", "effective_macs", "params", "nonzero_params", "size_bytes", "peak_activation_bytes")

    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        stats = analyze(model, example_input[:1])
        return Measurement(stats.summary(), {k: 0.0 for k in self.metrics}, 1, {"profile": self.name, "analytic": True})
