"""DenseNet-BC (Huang et al. 2017) for 32×32 inputs: every layer's output is concatenated to
all earlier ones within a dense block; bottleneck (1×1, 4k) layers and 0.5 compression in the
transitions.

``depth`` sets the layers per block as (depth − 4) / 6 (the paper's DenseNet-BC-100 has
k = 12 and 16 layers per block); the default, depth 40 and k = 12, trains on a CPU in minutes.
"""

from __future__ import annotations

import torch
from torch import nn


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1×1(4k)-BN-ReLU-Conv3×3(k), output concatenated to the input."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))
        return torch.cat([x, out], dim=1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2))


class DenseNetBC(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 40, growth: int = 12, compression: float = 0.5) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 (e.g. 40, 100), got {depth}")
        n = (depth - 4) // 6
        c = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False)]
        for block in range(3):
            for _ in range(n):
                layers.append(DenseLayer(c, growth))
                c += growth
            if block < 2:
                out = int(c * compression)
                layers.append(Transition(c, out))
                c = out
        layers += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def densenet_bc(num_classes: int = 10, in_channels: int = 3, depth: int = 40, growth: int = 12) -> DenseNetBC:
    """CIFAR DenseNet-BC (bottleneck + compression 0.5) of ``depth`` layers, growth ``growth``."""
    return DenseNetBC(num_classes=num_classes, in_channels=in_channels, depth=depth, growth=growth)
