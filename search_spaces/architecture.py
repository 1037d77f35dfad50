"""``architecture``: MNasNet's factorized hierarchical search space over a MobileNetV2-like
backbone.

Per block group ``stages.<i>`` six choices (dimension ``stages.<i>:<knob>``): ``op`` (regular
conv, depthwise-separable, MBConv 1/3/6; :mod:`automc.models.factorized`), ``kernel``
(3/5/7), ``se`` (squeeze-and-excitation ratio 0/0.25), ``skip`` (none/identity, where
shapes allow), ``width`` (a multiple of the group's base channels) and ``layers`` (the base
count −1/0/+1, at least 1). Choices are ordered cheapest first (``conv`` last: 9C² MACs a
pixel at kernel 3, above MBConv6's from kernel 5). Backbones: ``mobilenetv2`` (the CIFAR
MobileNetV2's seven groups — its default policy *is* that network, at ``width``) and
``small`` (four groups for 8×8 and 28×28 inputs); ``auto`` picks by input size.

A policy builds a new network from scratch: ``apply`` ignores the base model's weights (it
is the run's reference and, when the proxy distils, the teacher) and takes only its classes
and input channels. Its weights are initialised from ``init_seed`` (the global random state
untouched), so a policy always builds the same network. The space says ``trains_candidates``:
the search trains each candidate on the experiment's proxy task before scoring it
(:mod:`automc.search.proxy`). MACs and parameters are analytic (:meth:`analytic_cost`), so
targets project and the RL agents clamp exactly as on pruning spaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

import torch
from automc.search_spaces.arch_cost import network_cost
from torch import nn

from automc.compress.analysis import eval_mode
from automc.compress.spaces import Choice, SearchSpace
from automc.errors import UserError
from automc.models.factorized import OPS, FactorizedNet, StageSpec
from automc.models.mobilenetv2 import CIFAR_SETTINGS, make_divisible

# (expansion, channels, layers, stride) per group; stem channels; head channels
BACKBONES: dict[str, tuple[tuple[tuple[int, int, int, int], ...], int, int]] = {
    "mobilenetv2": (CIFAR_SETTINGS, 32, 1280),
    "small": (((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 1)), 16, 256),
}
DEFAULT_CHOICES: dict[str, tuple[Any, ...]] = {
    "op": ("dwsep", "mbconv1", "mbconv3", "mbconv6", "conv"),
    "kernel": (3, 5, 7),
    "se": (0.0, 0.25),
    "skip": ("none", "identity"),
    "width": (0.5, 0.75, 1.0, 1.25, 1.5),
    "layers": (-1, 0, 1),
}
KNOBS = tuple(DEFAULT_CHOICES)


class ArchitectureSpace(SearchSpace):
    name = "architecture"
    trains_candidates: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        backbone: str = "auto",
        width: float = 1.0,
        choices: Mapping[str, Sequence[Any]] | None = None,
        init_seed: int = 0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        if backbone == "auto":
            backbone = "mobilenetv2" if min(example_input.shape[-2:]) >= 32 else "small"
        if backbone not in BACKBONES:
            raise UserError(f"backbone must be one of auto, {', '.join(BACKBONES)}; got {backbone!r}", field="space.config.backbone")
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
            raise UserError(f"width must be a multiplier in (0, 4], got {width!r}", field="space.config.width")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise UserError(f"dropout must be a probability in [0, 1), got {dropout!r}", field="space.config.dropout")
        if not isinstance(init_seed, int) or isinstance(init_seed, bool):
            raise UserError(f"init_seed must be an integer, got {init_seed!r}", field="space.config.init_seed")
        self.backbone, self.width, self.init_seed, self.dropout = backbone, float(width), init_seed, float(dropout)
        self.choices = _checked_choices(choices or {})
        settings, stem, head = BACKBONES[backbone]
        self.settings = settings
        self.stem = make_divisible(stem * self.width)
        self.head = make_divisible(head * max(1.0, self.width))
        self.in_channels = int(example_input.shape[1])
        self.input_hw = tuple(int(s) for s in example_input.shape[-2:])
        with eval_mode(model), torch.no_grad():  # the run's reference model keeps its modes
            self.num_classes = int(model(example_input).shape[-1])
        for i, (t, c, n, s) in enumerate(settings):
            base = {"op": "mbconv1" if t == 1 else "mbconv6", "kernel": 3, "se": 0.0, "skip": "identity", "width": 1.0, "layers": 0}
            info = {"type": "conv", "stage": i, "channels": make_divisible(c * self.width), "kernel": [3, 3], "stride": [s, s], "layers": n}
            for knob in KNOBS:
                values = self.choices[knob]
                default = base[knob] if base[knob] in values else values[0]
                self._dims[f"stages.{i}:{knob}"] = Choice(values, default, knob=knob, info=info)
        # each group's share of the default network's MACs: the RL agents' state
        _, _, stage_macs = network_cost(self.stages(self.default_params()), self.in_channels, self.input_hw, self.stem, self.head, self.num_classes)
        self._dims = {k: replace(d, info={**dict(d.info), "macs": float(stage_macs[int(d.info["stage"])])}) for k, d in self._dims.items()}

    def config(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "width": self.width, "choices": {k: list(v) for k, v in self.choices.items()}, "init_seed": self.init_seed, "dropout": self.dropout}

    def stages(self, params: Mapping[str, Any]) -> list[StageSpec]:
        """The block groups ``params`` builds (skip off where no layer of a group can have one)."""
        p = self.validate(params, partial=True)
        out: list[StageSpec] = []
        cin = self.stem
        for i, (_, c, n, s) in enumerate(self.settings):
            g = f"stages.{i}"
            channels = make_divisible(c * self.width * float(p[f"{g}:width"]))
            layers = max(1, n + int(p[f"{g}:layers"]))
            skip = p[f"{g}:skip"] == "identity" and (layers > 1 or (s == 1 and cin == channels))
            out.append(StageSpec(str(p[f"{g}:op"]), int(p[f"{g}:kernel"]), float(p[f"{g}:se"]), skip, channels, layers, s))
            cin = channels
        return out

    def canonical(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The built network's groups: policies differing only where it changes nothing (a
        skip no layer can take, ``layers`` −1 of a one-layer group) are one architecture."""
        return tuple((s.op, s.kernel, s.se, s.skip, s.channels, s.layers, s.stride) for s in self.stages(params))

    def build(self, params: Mapping[str, Any]) -> FactorizedNet:
        """The network of ``params``, initialised from ``init_seed``."""
        stages = self.stages(params)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.init_seed)
            net = FactorizedNet(stages, num_classes=self.num_classes, in_channels=self.in_channels, stem_channels=self.stem, head_channels=self.head, dropout=self.dropout)
        return net.eval()

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        return self.build(params)

    def analytic_cost(self, params: Mapping[str, Any], key: str) -> float:
        """MACs (``key="macs"``) or parameters (``"params"``) of the network ``params`` builds,
        without building it (conv, BN-free counts as :func:`automc.compress.analysis.analyze`)."""
        macs, n_params, _ = network_cost(self.stages(params), self.in_channels, self.input_hw, self.stem, self.head, self.num_classes)
        return float(macs if key == "macs" else n_params)


def _checked_choices(given: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
    """The per-knob choices: the defaults, with the knobs the config names replaced (each a
    non-empty list of allowed values, without repeats)."""
    if not isinstance(given, Mapping):
        raise UserError(f"choices must map knobs ({', '.join(KNOBS)}) to lists of values, got {given!r}", field="space.config.choices")
    out = dict(DEFAULT_CHOICES)
    allowed = {
        "op": lambda v: v in OPS,
        "kernel": lambda v: isinstance(v, int) and not isinstance(v, bool) and v in (1, 3, 5, 7, 9),
        "se": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
        "skip": lambda v: v in ("none", "identity"),
        "width": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 4,
        "layers": lambda v: isinstance(v, int) and not isinstance(v, bool) and -4 <= v <= 4,
    }
    hints = {"op": f"one of {', '.join(OPS)}", "kernel": "odd sizes 1-9", "se": "ratios in [0, 1)", "skip": "none or identity", "width": "multipliers in (0, 4]", "layers": "integers in [-4, 4]"}
    for knob, values in given.items():
        field = f"space.config.choices.{knob}"
        if knob not in allowed:
            raise UserError(f"choices has unknown knob {knob!r}; knobs: {', '.join(KNOBS)}", field=field)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise UserError(f"choices.{knob} must be a non-empty list, got {values!r}", field=field)
        bad = [v for v in values if not allowed[knob](v)]
        if bad:
            raise UserError(f"choices.{knob} has {bad[0]!r}: allowed are {hints[knob]}", field=field)
        if len(set(values)) != len(values):
            raise UserError(f"choices.{knob} repeats a value: list each once", field=field)
        out[knob] = tuple(float(v) if knob in ("se", "width") else v for v in values)
    return out
