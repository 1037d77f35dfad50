"""CIFAR ResNets (He et al. 2016, section 4.2) with option-A shortcuts.

Depth 6n+2: a 3×3 stem with 16 channels, three stages of n basic blocks with 16/32/64
channels (the first block of stages 2 and 3 has stride 2), global average pooling and a
linear classifier. Option A: where a block changes shape, the shortcut has no parameters; it
takes every second pixel and zero-pads the missing channels equally on both sides.

Module and parameter names match the widely used pretrained CIFAR-10 checkpoints
(``conv1``, ``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``) so they load with
``strict=True`` once the ``module.`` prefix of a DataParallel checkpoint is stripped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PadShortcut(nn.Module):
    """Parameter-free option-A shortcut: spatial subsample by ``stride``, zero-pad channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_channels} -> {out_channels})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            x = F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class ChannelMapShortcut(nn.Module):
    """Parameter-free shortcut after channel pruning: subsample, then pick channels.

    ``index[j]`` is the input channel that feeds output channel ``j``, or -1 for a zero
    channel. The unpruned option-A shortcut is the special case ``[-1]*p + range(C) + [-1]*p``.
    It costs no MACs (a gather), unlike the equivalent 0/1 1×1 convolution.
    """

    def __init__(self, index: torch.Tensor, stride: int, in_channels: int | None = None) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long).clone())
        referenced = int(self.index.max()) + 1 if (self.index >= 0).any() else 1
        self.in_channels = int(in_channels) if in_channels is not None else referenced

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        zero = x.new_zeros(x.shape[0], 1, *x.shape[2:])
        source = torch.where(self.index < 0, torch.full_like(self.index, x.shape[1]), self.index)
        return torch.cat([x, zero], 1).index_select(1, source)

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.index.numel()}, stride={self.stride}"


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with a residual connection; ReLU after the addition."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32×32 inputs; ``depth`` must be 6n+2."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, base_width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        w = base_width
        self.conv1 = nn.Conv2d(in_channels, w, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.in_planes = w
        self.layer1 = self._make_stage(w, n, 1)
        self.layer2 = self._make_stage(2 * w, n, 2)
        self.layer3 = self._make_stage(4 * w, n, 2)
        self.linear = nn.Linear(4 * w, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _factory(depth: int):
    def build(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels)

    build.__name__ = f"resnet{depth}"
    build.__qualname__ = build.__name__
    build.__doc__ = f"CIFAR ResNet-{depth} (option-A shortcuts, {(depth - 2) // 6} blocks per stage)."
    return build


resnet20 = _factory(20)
resnet32 = _factory(32)
resnet44 = _factory(44)
resnet56 = _factory(56)
resnet110 = _factory(110)
