"""ShuffleNetV2 (Ma et al. 2018) for 32×32 inputs: channel split, two branches, concat and
channel shuffle.

CIFAR adaptation: a 3×3 stride-1 stem without max-pooling, so the three stages run at 16, 8
and 4 pixels. ``width_mult`` picks the paper's stage widths (0.5, 1.0, 1.5, 2.0).

The split (``chunk``) and the shuffle (``view``/``transpose``) tie channels across branches in
a way dependency-graph pruners cannot express; channel pruning locks those groups (see
``automc.search_spaces.channel_pruning``) and prunes the branch-internal ones.
"""

from __future__ import annotations

import torch
from torch import nn

STAGE_WIDTHS = {0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048)}
REPEATS = (4, 8, 4)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([nn.ReLU(inplace=True)] if relu else [])


class ShuffleUnit(nn.Module):
    """Stride 1: split → (identity ‖ branch) → concat → shuffle. Stride 2: both halves are
    branches over the full input, each halving the resolution."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        branch_in = cin if stride > 1 else cin // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*_conv(cin, cin, 3, stride, groups=cin, relu=False), *_conv(cin, half, 1))
        self.branch2 = nn.Sequential(
            *_conv(branch_in, half, 1), *_conv(half, half, 3, stride, groups=half, relu=False), *_conv(half, half, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 0.5) -> None:
        super().__init__()
        if width_mult not in STAGE_WIDTHS:
            raise ValueError(f"width_mult must be one of {sorted(STAGE_WIDTHS)}, got {width_mult}")
        *stages, last = STAGE_WIDTHS[width_mult]
        self.stem = nn.Sequential(*_conv(in_channels, 24, 3))
        cin = 24
        blocks: list[nn.Module] = []
        for cout, repeats in zip(stages, REPEATS):
            for i in range(repeats):
                blocks.append(ShuffleUnit(cin, cout, 2 if i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*blocks)
        self.conv_last = nn.Sequential(*_conv(cin, last, 1))
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.stages(self.stem(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def shufflenetv2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 0.5) -> ShuffleNetV2:
    """CIFAR ShuffleNetV2 at the paper's width ``width_mult`` (0.5, 1.0, 1.5, 2.0)."""
    return ShuffleNetV2(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult)
