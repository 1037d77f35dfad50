"""GhostNet (Han et al. 2020) for 32×32 inputs: ghost modules make half of each layer's
feature maps with a cheap depthwise convolution of the other half.

A ghost module: primary 1×1 conv → ``ceil(out/2)`` maps; cheap 3×3 depthwise conv of those →
as many more; concatenated and sliced to ``out``. Ghost bottlenecks (ghost → [depthwise
stride 2] → [squeeze-excite] → ghost, plus a shortcut) follow the paper's table, shortened
for 32×32 inputs: a stride-1 stem and three stride-2 stages (32 → 16 → 8 → 4).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# kernel, expansion (hidden), output, squeeze-excite ratio, stride — CIFAR-length table.
CIFAR_CFG: tuple[tuple[int, int, int, float, int], ...] = (
    (3, 16, 16, 0.0, 1),
    (3, 48, 24, 0.0, 2), (3, 72, 24, 0.0, 1),
    (5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0.0, 2), (3, 200, 80, 0.0, 1), (3, 480, 112, 0.25, 1), (5, 672, 160, 0.25, 1),
)  # fmt: skip


def _div(v: float, d: int = 4) -> int:
    return max(d, int(v + d / 2) // d * d)


class GhostModule(nn.Module):
    def __init__(self, cin: int, cout: int, relu: bool = True) -> None:
        super().__init__()
        self.cout = cout
        init = math.ceil(cout / 2)
        act: list[nn.Module] = [nn.ReLU(inplace=True)] if relu else []
        self.primary = nn.Sequential(nn.Conv2d(cin, init, 1, bias=False), nn.BatchNorm2d(init), *act)
        self.cheap = nn.Sequential(nn.Conv2d(init, init, 3, 1, 1, groups=init, bias=False), nn.BatchNorm2d(init), *act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.primary(x)
        return torch.cat([a, self.cheap(a)], dim=1)[:, : self.cout]


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        hidden = _div(channels * ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.reduce(x.mean((2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.expand(s))


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, se: float) -> None:
        super().__init__()
        self.ghost1 = GhostModule(cin, hidden)
        self.dw = (
            nn.Sequential(nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False), nn.BatchNorm2d(hidden))
            if stride > 1
            else nn.Identity()
        )
        self.se = SqueezeExcite(hidden, se) if se > 0 else nn.Identity()
        self.ghost2 = GhostModule(hidden, cout, relu=False)
        if cin == cout and stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cin, kernel, stride, kernel // 2, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ghost2(self.se(self.dw(self.ghost1(x)))) + self.shortcut(x)


class GhostNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        cin = _div(16 * width_mult)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        for k, exp, c, se, s in CIFAR_CFG:
            cout = _div(c * width_mult)
            blocks.append(GhostBottleneck(cin, _div(exp * width_mult), cout, k, s, se))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        last = _div(480 * width_mult)
        self.conv_last = nn.Sequential(nn.Conv2d(cin, last, 1, bias=False), nn.BatchNorm2d(last), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.blocks(self.stem(x)))
        return self.classifier(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def ghostnet(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2) -> GhostNet:
    """CIFAR GhostNet with width multiplier ``width_mult``."""
    return GhostNet(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult, dropout=dropout)
