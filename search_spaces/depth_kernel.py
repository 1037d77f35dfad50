"""Elastic depth and kernel of a pretrained network (the structural half of the ``elastic``
space; width is channel pruning): ``<stage>:depth`` keeps a stage's first blocks and drops
the trailing residual ones, ``<conv>:kernel`` shrinks a large kernel to its centre. Which
blocks and convolutions qualify: :mod:`automc.search_spaces.blocks`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.compress.dimensions import Choice, Int
from automc.compress.spaces import SearchSpace
from automc.errors import UserError
from automc.search_spaces.blocks import find_stages, shrink_kernel, shrinkable_convs
from automc.search_spaces.common import layer_info, set_module


class DepthKernelSpace(SearchSpace):
    """Per-stage depth and per-convolution kernel size of a pretrained network.

    ``depth`` / ``kernel``: whether to search them; ``min_depth``: blocks every stage keeps
    (at least its first, non-droppable block). Not registered on its own: use ``elastic``
    (or ``joint`` with ``elastic:``), which add width.
    """

    name = "depth_kernel"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        depth: bool = True,
        kernel: bool = True,
        min_depth: int = 1,
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        for setting, value in (("depth", depth), ("kernel", kernel)):
            if not isinstance(value, bool):
                raise UserError(f"elastic {setting} must be true or false, got {value!r}", field=setting)
        if isinstance(min_depth, bool) or not isinstance(min_depth, int) or min_depth < 0:
            raise UserError(f"elastic min_depth must be an integer >= 0 (blocks every stage keeps), got {min_depth!r}", field="min_depth")
        self.depth, self.kernel, self.min_depth = depth, kernel, min_depth
        stats = {s.name: s for s in analyze(model, example_input).layers}
        self.layer_macs = {n: float(s.macs) for n, s in stats.items()}
        self.layer_params = {n: float(s.params) for n, s in stats.items()}
        self.stages, self._notes = find_stages(model, example_input, min_depth=min_depth) if depth else ([], [])
        for st in self.stages:
            dropped = [layer for block in st.layers[st.fixed :] for layer in block]
            info = {
                "type": "stage",
                "blocks": [list(b) for b in st.layers],
                "block_names": list(st.blocks),
                "fixed": st.fixed,
                "macs": sum(self.layer_macs.get(n, 0.0) for n in dropped),
                "params": sum(self.layer_params.get(n, 0.0) for n in dropped),
            }
            self._dims[f"{st.name}:depth"] = Int(st.fixed, len(st.blocks), len(st.blocks), knob="depth", info=info)
        if kernel:
            for conv, k in shrinkable_convs(model).items():
                if conv in stats:
                    self._dims[f"{conv}:kernel"] = Choice(tuple(range(3, k + 1, 2)), k, knob="kernel", info=layer_info(stats[conv]))
        order = {n: i for i, (n, _) in enumerate(model.named_modules())}
        self._dims = dict(sorted(self._dims.items(), key=lambda kv: order[kv[0].rpartition(":")[0]]))

    def config(self) -> dict[str, Any]:
        return {"depth": self.depth, "kernel": self.kernel, "min_depth": self.min_depth}

    def locked_notes(self) -> list[str]:
        return list(self._notes)

    def dropped_blocks(self, params: Mapping[str, Any]) -> list[str]:
        """The blocks ``params`` drops (module paths), in network order."""
        out: list[str] = []
        for st in self.stages:
            keep = int(params.get(f"{st.name}:depth", len(st.blocks)))
            out += list(st.blocks[keep:])
        return out

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        params = self.validate(params, partial=True)
        out = copy.deepcopy(model)
        for block in self.dropped_blocks(params):
            set_module(out, block, nn.Identity())
        present = dict(out.named_modules())
        for name, value in params.items():
            layer, _, knob = name.rpartition(":")
            if knob == "kernel" and layer in present and value != self._dims[name].default:
                set_module(out, layer, shrink_kernel(present[layer], int(value)))  # type: ignore[arg-type]
        return out
