"""A small CNN for tiny grayscale or colour images (8×8 digits, 28×28 MNIST, 32×32 CIFAR).

Four conv-BN-ReLU layers (two of them stride 2), global average pooling and a linear
classifier. Being size-agnostic, the same definition serves every input size; it trains to a
useful accuracy in seconds on CPU, which makes it the quickstart's model.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        w = width
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w, 1),
            _conv_bn_relu(w, 2 * w, 2),
            _conv_bn_relu(2 * w, 2 * w, 1),
            _conv_bn_relu(2 * w, 4 * w, 2),
        )
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def small_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 16) -> SmallCNN:
    """Small CNN with ``width`` channels in its first layer (doubling twice)."""
    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=width)
