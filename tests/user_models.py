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


class ShuffleBlockNet(nn.Module):
    """A ShuffleNetV2-style net written independently of the zoo: channel split (``chunk``),
    a branch, concat and a channel shuffle (``view`` + ``transpose``)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        half = width // 2
        self.branch = nn.Sequential(
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3, padding=1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], dim=1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        return self.head(x.mean((2, 3)))


class TinyViT(nn.Module):
    """A small vision transformer: conv patch embedding, one ``nn.TransformerEncoderLayer``
    (multi-head attention + MLP), mean pooling and a linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dim: int = 32, heads: int = 4, patch: int = 4) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.encoder = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        return self.head(self.encoder(tokens).mean(1))


def shuffle_block_net(num_classes: int = 10, in_channels: int = 3) -> ShuffleBlockNet:
    return ShuffleBlockNet(num_classes, in_channels)


def tiny_vit(num_classes: int = 10, in_channels: int = 3) -> TinyViT:
    return TinyViT(num_classes, in_channels)


class _Residual(nn.Module):
    """``relu(x + f(x))`` with a 5×5 depthwise conv in the branch; ``shortcut`` is an empty
    ``nn.Sequential`` (the identity, as many hand-written ResNets spell it)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 5, padding=2, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.pw(torch.relu(self.bn1(self.dw(x))))) + self.shortcut(x))


class _Projected(nn.Module):
    """A block whose shortcut is a 1×1 conv (not droppable): starts a stage."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.proj = nn.Conv2d(cin, cout, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)) + self.proj(x))


class _Branchy(nn.Module):
    """Residual, but with data-dependent control flow torch.fx cannot trace: stays fixed."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if float(x.sum()) != 0.0 else x


class ResidualCNN(nn.Module):
    """Hand-written residual stages (one with a projected first block), a 5×5 stem."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 8) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w, 5, padding=2, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stage1 = nn.Sequential(_Residual(w), _Residual(w), _Residual(w))
        self.stage2 = nn.Sequential(_Projected(w, 2 * w), _Residual(2 * w), _Residual(2 * w), _Branchy(2 * w))
        self.head = nn.Linear(2 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(self.stem(x))).mean((2, 3)))


def residual_cnn(num_classes: int = 10, in_channels: int = 1, width: int = 8) -> ResidualCNN:
    return ResidualCNN(num_classes, in_channels, width)


class HeadAttention(nn.Module):
    """timm/DeiT-style attention: one packed ``qkv`` linear (query, key, value blocks, heads
    contiguous), ``num_heads``, an output ``proj``. ``width_from_input`` reshapes the heads'
    output to the *input* width, as timm's own forward does (then heads cannot leave);
    ``head_major`` packs qkv per head instead ((heads, 3, head_dim) — another layout)."""

    def __init__(self, dim: int, num_heads: int, *, width_from_input: bool = False, head_major: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.scale = num_heads, dim // num_heads, (dim // num_heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.width_from_input, self.head_major = width_from_input, head_major

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        if self.head_major:
            q, k, v = self.qkv(x).reshape(b, n, self.num_heads, 3, self.head_dim).permute(3, 0, 2, 1, 4).unbind(0)
        else:
            q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)
        out = (attn @ v).transpose(1, 2)
        return self.proj(out.reshape(b, n, c) if self.width_from_input else out.reshape(b, n, -1))


class HeadViT(nn.Module):
    """A small timm-style vision transformer: conv patch embedding, pre-norm blocks of
    ``HeadAttention`` and an MLP, final LayerNorm, mean pooling, linear head."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, dim: int = 32, heads: int = 4, depth: int = 2, **attention: bool) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_channels, dim, 4, stride=4)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"norm1": nn.LayerNorm(dim), "attn": HeadAttention(dim, heads, **attention), "norm2": nn.LayerNorm(dim),
                           "fc1": nn.Linear(dim, 2 * dim), "fc2": nn.Linear(2 * dim, dim)})
            for _ in range(depth)
        )  # fmt: skip
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            t = t + blk["attn"](blk["norm1"](t))
            t = t + blk["fc2"](nn.functional.gelu(blk["fc1"](blk["norm2"](t))))
        return self.head(self.norm(t).mean(1))


def head_vit(num_classes: int = 10, in_channels: int = 3) -> HeadViT:
    return HeadViT(num_classes, in_channels)
