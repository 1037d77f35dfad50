"""Joint compression: channel pruning, elastic depth/kernel and mixed precision in one policy.

The dimensions are the union of the enabled parts — a :class:`ChannelPruningSpace`
(``<group root>:ratio``), a :class:`DepthKernelSpace` (``<stage>:depth``, ``<conv>:kernel``;
off unless ``elastic:`` is given) and a :class:`MixedPrecisionSpace` (``<layer>:w_bits`` /
``:a_bits``). Module names survive each step, so ``apply`` prunes, then drops blocks and
shrinks kernels, then quantises (and calibrates) what is left; knobs of layers inside a
dropped block change nothing, and :meth:`JointSpace.canonical` says so (two policies that
differ only there are one candidate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from automc.compress.spaces import SearchSpace, split_name
from automc.errors import UserError
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.search_spaces.depth_kernel import DepthKernelSpace
from automc.search_spaces.mixed_precision import MixedPrecisionSpace


def _settings(name: str, value: Any, default_on: bool) -> dict[str, Any] | None:
    """A part's settings: a mapping (on, with those), true (on, defaults), false (off);
    None takes the part's default."""
    if value is None:
        return {} if default_on else None
    if isinstance(value, bool):
        return {} if value else None
    if isinstance(value, Mapping):
        return dict(value)
    raise UserError(f"{name} must be true, false or a mapping of that part's settings, got {value!r}", field=name)


class JointSpace(SearchSpace):
    """``pruning`` and ``precision`` are on by default, ``elastic`` (depth and kernel) off;
    each takes ``false``, ``true`` or its part's settings."""

    name = "joint"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        pruning: Mapping[str, Any] | bool | None = None,
        precision: Mapping[str, Any] | bool | None = None,
        elastic: Mapping[str, Any] | bool | None = None,
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        p, e, q = _settings("pruning", pruning, True), _settings("elastic", elastic, False), _settings("precision", precision, True)
        if p is None and e is None and q is None:
            raise UserError("pruning, elastic and precision are all off: turn at least one on", field="pruning")
        self.pruning = ChannelPruningSpace(model, example_input, calibration=calibration, **p) if p is not None else None
        self.elastic = DepthKernelSpace(model, example_input, calibration=calibration, **e) if e is not None else None
        self.precision = MixedPrecisionSpace(model, example_input, calibration=calibration, **q) if q is not None else None
        for part in self.parts:
            self._dims.update(part.dimensions)
        first = self.pruning or self.elastic
        self.layer_macs = getattr(first, "layer_macs", None)
        self.layer_params = getattr(first, "layer_params", None)
        self.keep_count = self.pruning.keep_count if self.pruning else None

    @property
    def parts(self) -> list[SearchSpace]:
        """The enabled parts, in the order ``apply`` runs them."""
        return [s for s in (self.pruning, self.elastic, self.precision) if s is not None]

    def locked_notes(self) -> list[str]:
        return [note for part in self.parts for note in part.locked_notes()]

    def prepare(self, state: Mapping[str, Any] | None = None) -> None:
        states = (state or {}).get("parts") or [None] * len(self.parts)
        for part, own in zip(self.parts, states, strict=True):
            part.prepare(own)

    def prepared(self) -> dict[str, Any]:
        return {"parts": [part.prepared() for part in self.parts]}

    def config(self) -> dict[str, Any]:
        def cfg(part: SearchSpace | None) -> dict[str, Any] | bool:
            return part.config() if part is not None else False

        out = {"pruning": cfg(self.pruning), "precision": cfg(self.precision)}
        return {**out, "elastic": cfg(self.elastic)} if self.elastic is not None else out

    def _live(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` with every knob that cannot matter — its layers all inside blocks the
        policy drops — at its default."""
        dropped = self.elastic.dropped_blocks(params) if self.elastic is not None else []
        if not dropped:
            return params

        def inside(layer: str) -> bool:
            return any(layer == b or layer.startswith(b + ".") for b in dropped)

        out = dict(params)
        for name, d in self._dims.items():
            layer, knob = split_name(name)
            if knob == "depth":
                continue
            layers = dict(d.info).get("producers") if knob == "ratio" else [layer]
            if layers and all(inside(n) for n in layers):
                out[name] = d.default
        return out

    def canonical(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        params = self._live(self.validate(params, partial=True))
        return sum((part.canonical({k: params[k] for k in part.dimensions}) for part in self.parts), ())

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        params = self.validate(params, partial=True)
        for part in self.parts:
            model = part.apply(model, {k: params[k] for k in part.dimensions})
        return model
