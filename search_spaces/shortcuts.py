"""Option-A shortcuts (zero-padding, CIFAR ResNets) made prunable: during pruning each becomes
a fixed 0/1 1×1 strided convolution (:class:`ShortcutConv`) with its own torch-pruning pruner,
so torch-pruning couples its input and output channels; afterwards it becomes a
parameter-free channel gather (:class:`~automc.models.resnet_cifar.ChannelMapShortcut`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from automc.models.resnet_cifar import ChannelMapShortcut, PadShortcut
from automc.search_spaces.common import set_module


class ShortcutConv(nn.Module):
    """Pruning-time stand-in for a zero-padding shortcut: a fixed 0/1 1×1 strided conv.

    The weight is a buffer (never trained, ignored by importance); one ``F.conv2d`` consumes
    the input directly, so torch-pruning's tracer sees a single layer.
    """

    def __init__(self, weight: torch.Tensor, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("weight", weight)

    @classmethod
    def from_index(cls, index: torch.Tensor, in_channels: int, stride: int) -> ShortcutConv:
        w = torch.zeros(len(index), in_channels, 1, 1)
        for j, i in enumerate(index.tolist()):
            if i >= 0:
                w[j, i] = 1.0
        return cls(w, stride)

    def to_index(self) -> torch.Tensor:
        w = self.weight[:, :, 0, 0]
        has = w.sum(1) > 0
        return torch.where(has, w.argmax(1), torch.full((w.shape[0],), -1, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=self.stride)


class ShortcutConvPruner(tp.pruner.function.BasePruningFunc):
    """torch-pruning pruner for :class:`ShortcutConv`: slice rows (out) or columns (in)."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = [i for i in range(layer.weight.shape[0]) if i not in set(idxs)]
        layer.weight = layer.weight[keep].contiguous()
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = [i for i in range(layer.weight.shape[1]) if i not in set(idxs)]
        layer.weight = layer.weight[:, keep].contiguous()
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return int(layer.weight.shape[0])

    def get_in_channels(self, layer: nn.Module) -> int:
        return int(layer.weight.shape[1])


def pad_index(sc: PadShortcut) -> torch.Tensor:
    extra = sc.out_channels - sc.in_channels
    left = extra // 2
    return torch.tensor([-1] * left + list(range(sc.in_channels)) + [-1] * (extra - left), dtype=torch.long)


def prepare_shortcuts(model: nn.Module) -> None:
    """Make every channel-changing shortcut traceable (in place)."""
    for name, m in list(model.named_modules()):
        if isinstance(m, PadShortcut):
            set_module(model, name, ShortcutConv.from_index(pad_index(m), m.in_channels, m.stride))
        elif isinstance(m, ChannelMapShortcut):  # pruning an already pruned model
            set_module(model, name, ShortcutConv.from_index(m.index, m.in_channels, m.stride))


def finalize_shortcuts(model: nn.Module) -> None:
    for name, m in list(model.named_modules()):
        if isinstance(m, ShortcutConv):
            set_module(model, name, ChannelMapShortcut(m.to_index(), m.stride, in_channels=int(m.weight.shape[1])))
