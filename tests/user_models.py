"""Models a user might bring: not from the zoo, reached as ``tests.user_models:NAME``."""

from __future__ import annotations

import torch
from torch import nn


class ConcatDepthwiseCNN(nn.Module):
    """Two branches concatenated, a depthwise-separable block, a residual add and a head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.branch_a = nn.Sequential(nn.Conv2d(16, 12, 1, bias=False), nn.BatchNorm2d(12), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(16, 20, 3, padding=1, bias=False), nn.BatchNorm2d(20), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(32, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(48, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(),
                                 nn.Conv2d(24, 48, 3, padding=1, bias=False), nn.BatchNorm2d(48))
        self.head = nn.Linear(48, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = self.pw(self.dw(x))
        x = torch.relu(x + self.res(x))
        return self.head(x.mean((2, 3)))


class MLPBlockNet(nn.Module):
    """A transformer-style MLP block (Linear-GELU-Linear with a residual) on flattened pixels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dim: int = 32, size: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(in_channels * size * size, dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.flatten(1))
        h = h + self.fc2(nn.functional.gelu(self.fc1(self.norm(h))))
        return self.head(h)


def concat_cnn(num_classes: int = 10, in_channels: int = 3) -> ConcatDepthwiseCNN:
    return ConcatDepthwiseCNN(num_classes, in_channels)


def mlp_net(num_classes: int = 10, in_channels: int = 1) -> MLPBlockNet:
    return MLPBlockNet(num_classes, in_channels)
