"""SqueezeNet 1.1 (Iandola et al. 2016) for 32×32 inputs: fire modules (squeeze 1×1, then
expand 1×1 and 3×3 concatenated).

CIFAR adaptation: a 3×3 stride-1 stem, max-pooling after the stem and after fire 2 and 4
(32 → 16 → 8 → 4), and BatchNorm after every convolution (the original has none; with it the
network trains in a few epochs on a CPU). The classifier is a 1×1 convolution to the classes
followed by global average pooling, as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Fire(nn.Module):
    """squeeze (1×1) → [expand 1×1 ‖ expand 3×3] concatenated along channels."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = _conv(cin, squeeze, 1)
        self.expand1x1 = _conv(squeeze, expand, 1)
        self.expand3x3 = _conv(squeeze, expand, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")

        def w(c: int) -> int:
            return max(4, int(round(c * width_mult)))

        fires = [(16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256)]
        layers: list[nn.Module] = [_conv(in_channels, w(64), 3), nn.MaxPool2d(2)]
        cin = w(64)
        for i, (s, e) in enumerate(fires):
            layers.append(Fire(cin, w(s), w(e)))
            cin = 2 * w(e)
            if i in (1, 3):
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Conv2d(cin, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.classifier(self.features(x)), 1).flatten(1)


def squeezenet(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2) -> SqueezeNet:
    """CIFAR SqueezeNet 1.1 (with BatchNorm); ``width_mult`` scales every fire module."""
    return SqueezeNet(num_classes=num_classes, in_channels=in_channels, width_mult=width_mult, dropout=dropout)
