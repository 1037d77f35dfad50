"""Joint pruning + quantisation: channel preserve ratios and bit-widths in one policy.

The dimensions are the union of a :class:`ChannelPruningSpace` (``<group root>:ratio``) and a
:class:`MixedPrecisionSpace` (``<layer>:w_bits`` / ``:a_bits``); module names survive pruning,
so ``apply`` prunes first and then quantises (and calibrates) the pruned model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automc.errors import UserError
from automc.compress.spaces import SearchSpace
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.search_spaces.mixed_precision import MixedPrecisionSpace


class JointSpace(SearchSpace):
    name = "joint"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        pruning: Mapping[str, Any] | None = None,
        precision: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        for setting, value in (("pruning", pruning), ("precision", precision)):
            if value is not None and not isinstance(value, Mapping):
                raise UserError(f"{setting} must be a mapping of that space's settings, got {value!r}", field=setting)
        self.pruning = ChannelPruningSpace(model, example_input, calibration=calibration, **dict(pruning or {}))
        self.precision = MixedPrecisionSpace(model, example_input, calibration=calibration, **dict(precision or {}))
        self._dims = {**self.pruning.dimensions, **self.precision.dimensions}
        self.layer_macs = self.pruning.layer_macs
        self.layer_params = self.pruning.layer_params
        self.keep_count = self.pruning.keep_count

    def locked_notes(self) -> list[str]:
        return self.pruning.locked_notes() + self.precision.locked_notes()

    def config(self) -> dict[str, Any]:
        return {"pruning": self.pruning.config(), "precision": self.precision.config()}

    def canonical(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        params = self.validate(params, partial=True)
        return self.pruning.canonical({k: params[k] for k in self.pruning.dimensions}) + self.precision.canonical({k: params[k] for k in self.precision.dimensions})

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        params = self.validate(params, partial=True)
        pruned = self.pruning.apply(model, {k: params[k] for k in self.pruning.dimensions})
        return self.precision.apply(pruned, {k: params[k] for k in self.precision.dimensions})
