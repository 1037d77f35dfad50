"""Elastic architecture over a pretrained network: OFA's elastic depth, kernel and width,
without training a supernet.

:class:`ElasticSpace` (registered as ``elastic``) composes the depth and kernel knobs
(:class:`automc.search_spaces.depth_kernel.DepthKernelSpace`) with channel pruning (width, on
by default) and, optionally, mixed precision — the same composition as the ``joint`` space
with ``elastic:`` set (see :mod:`automc.search_spaces.joint`). Candidates keep their
pretrained weights: the search recalibrates BatchNorm before scoring and, with
multi-fidelity, fine-tunes them briefly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automc.errors import UserError
from automc.search_spaces.joint import JointSpace


class ElasticSpace(JointSpace):
    """OFA's elastic dimensions over a pretrained network: depth and kernel
    (:class:`DepthKernelSpace`) and width (channel pruning, ``width:`` its settings or
    ``false``), optionally with mixed precision (``precision:`` its settings)."""

    name = "elastic"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        depth: bool = True,
        kernel: bool = True,
        min_depth: int = 1,
        width: Mapping[str, Any] | bool = True,
        precision: Mapping[str, Any] | bool = False,
    ) -> None:
        for setting, value, part in (("width", width, "channel_pruning"), ("precision", precision, "mixed_precision")):
            if not isinstance(value, bool | Mapping):
                raise UserError(f"elastic {setting} must be true, false or the {part} settings, got {value!r}", field=setting)
        super().__init__(
            model,
            example_input,
            calibration=calibration,
            pruning=width,
            precision=precision,
            elastic={"depth": depth, "kernel": kernel, "min_depth": min_depth},
        )
        if not self._dims:
            raise UserError("the elastic space found nothing to change in this model: no droppable residual block, no kernel > 3 and width off (see docs/search_spaces.md for the rules)")

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        return {**cfg["elastic"], "width": cfg["pruning"], "precision": cfg["precision"]}
