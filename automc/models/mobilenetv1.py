"""MobileNetV1 (Howard et al. 2017) for 32×32 inputs: depthwise-separable convolutions.

CIFAR adaptation: the stem has stride 1 and three of the original stride-2 stages are kept
(32 → 16 → 8 → 4), so small inputs (8×8 digits, 28×28 MNIST) still reach the head.
"""

from __future__ import annotations

import torch
from torch import nn

from automc.models.mobilenetv2 import make_divisible

# (output channels, stride) of each depthwise-separable block; CIFAR strides.
CIFAR_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (1024, 1),
)  # fmt: skip


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        cin = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [conv_bn(in_channels, cin, 3)]
        for c, s in CIFAR_BLOCKS:
            cout = make_divisible(c * width_mult)
            layers.append(nn.Sequential(conv_bn(cin, cin, 3, s, groups=cin), conv_bn(cin, cout, 1)))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def mobilenetv1(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.0) -> MobileNetV1:
    """CIFAR MobileNetV1 with width multiplier ``width_mult`` (0.25, 0.5, 0.75, 1.0)."""
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult, dropout=dropout)
