"""Networks of MNasNet's factorized hierarchical form: a stem, block groups, a head.

Each block group ("stage") repeats one block ``layers`` times with one operation, kernel,
squeeze-and-excitation ratio, skip and width (MNasNet, Tan et al. 2019, Fig. 4): the
``architecture`` search space (:mod:`automc.search_spaces.architecture`) chooses these per
group and builds the network here. Operations:

- ``conv``: a regular k×k convolution, BN, ReLU6;
- ``dwsep``: MobileNetV1's depthwise-separable block — depthwise k×k, BN, ReLU6, then a
  pointwise 1×1, BN, ReLU6;
- ``mbconv1`` / ``mbconv3`` / ``mbconv6``: MobileNetV2's inverted residual with expansion
  1/3/6 — (1×1 expansion, BN, ReLU6), depthwise k×k, BN, ReLU6, optional SE, linear 1×1
  projection, BN.

The skip is an identity shortcut on every layer whose input and output shapes match (never
on a group's first layer when it strides or changes width). With the MobileNetV2 stages and
the defaults (``mbconv1`` first, ``mbconv6`` after, kernel 3, no SE, identity skip) the
network is :class:`automc.models.mobilenetv2.MobileNetV2` layer for layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from automc.models.mobilenetv2 import ConvBNReLU, init_weights

OPS = ("conv", "dwsep", "mbconv1", "mbconv3", "mbconv6")


@dataclass(frozen=True)
class StageSpec:
    """One block group: ``layers`` blocks of ``op`` with ``channels`` outputs; the first
    strides by ``stride``."""

    op: str
    kernel: int
    se: float
    skip: bool
    channels: int
    layers: int
    stride: int

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and positive, got {self.kernel}")
        if not 0 <= self.se < 1:
            raise ValueError(f"se must be in [0, 1), got {self.se}")
        if self.channels < 1 or self.layers < 1 or self.stride < 1:
            raise ValueError(f"channels, layers and stride must be positive, got {self.channels}, {self.layers}, {self.stride}")


class SqueezeExcite(nn.Module):
    """Channel attention: global pool → 1×1 reduce → ReLU → 1×1 expand → sigmoid gate."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.expand(s))


class Block(nn.Module):
    """One layer of a block group (see the module docstring); ``body`` holds its modules in
    order, ``residual`` whether the input is added to its output."""

    def __init__(self, op: str, cin: int, cout: int, kernel: int, stride: int, se: float, skip: bool) -> None:
        super().__init__()
        self.residual = skip and stride == 1 and cin == cout
        layers: list[nn.Module] = []
        squeezed = max(1, int(cin * se))
        if op == "conv":
            layers.append(ConvBNReLU(cin, cout, kernel, stride))
            if se > 0:
                layers.append(SqueezeExcite(cout, squeezed))
        elif op == "dwsep":
            layers.append(ConvBNReLU(cin, cin, kernel, stride, groups=cin))
            if se > 0:
                layers.append(SqueezeExcite(cin, squeezed))
            layers.append(ConvBNReLU(cin, cout, 1))
        else:
            hidden = cin * int(op.removeprefix("mbconv"))
            if hidden != cin:
                layers.append(ConvBNReLU(cin, hidden, 1))
            layers.append(ConvBNReLU(hidden, hidden, kernel, stride, groups=hidden))
            if se > 0:
                layers.append(SqueezeExcite(hidden, squeezed))
            layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class FactorizedNet(nn.Module):
    """Stem (3×3 conv), the block groups of ``stages``, head (1×1 conv), pool, classifier."""

    def __init__(
        self,
        stages: Sequence[StageSpec],
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int = 32,
        stem_stride: int = 1,
        head_channels: int = 1280,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("a factorized network needs at least one stage")
        self.stem = ConvBNReLU(in_channels, stem_channels, 3, stem_stride)
        groups: list[nn.Module] = []
        cin = stem_channels
        for spec in stages:
            blocks = []
            for i in range(spec.layers):
                blocks.append(Block(spec.op, cin, spec.channels, spec.kernel, spec.stride if i == 0 else 1, spec.se, spec.skip))
                cin = spec.channels
            groups.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*groups)
        self.head = ConvBNReLU(cin, head_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.stages(self.stem(x)))
        return self.classifier(self.dropout(x.mean((2, 3))))
