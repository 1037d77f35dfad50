"""Least-squares reconstruction of the layers that lose input channels (He et al. 2017, the
channel pruning AMC evaluates its policies with).

Removing input channels of a convolution or linear layer changes its output by the removed
channels' contribution. Part of that contribution is predictable from the kept channels
(neighbouring feature maps are correlated), so the kept weights are re-fitted to reproduce the
*uncompressed* layer's output on calibration data:

    min_W' ‖X_K W'ᵀ − X Wᵀ‖²  →  W'_K = W_K + (G_KK + λI)⁻¹ G_KD W_D      (G = XᵀX)

with ``X`` the layer's unfolded input in the uncompressed model (rows: sampled output
positions; columns: input channel × kernel tap, plus a constant column for a layer with a
bias), ``K``/``D`` the kept/dropped columns. ``G`` depends only on the uncompressed model and
the calibration batches, so it is computed once per run (lazily, for the layers that can lose
inputs) and every candidate costs one small solve per changed layer — no forward pass.

Inputs come from the uncompressed model, not the pruned one (a candidate would otherwise need
a forward pass per layer); BN recalibration afterwards absorbs the remaining shift. Grouped and
depthwise convolutions are left as they are (their input channels are removed with their
outputs), as are layers whose unfolded input is wider than ``MAX_COLUMNS`` (the Gram matrix
would not fit comfortably in memory).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from automc.compress.analysis import forward_with_hooks

MAX_COLUMNS = 4608  # 512 channels × 3×3
ROWS_PER_BATCH = 4096  # sampled output positions per calibration batch and layer
RIDGE = 1e-4  # λ relative to the mean diagonal of G_KK
CACHE_BYTES = 64 << 20  # re-fitted weights kept for reuse (an LRU of solves), per space


def reconstructable(layer: nn.Module) -> bool:
    """Whether ``layer``'s input channels can be re-fitted (dense conv or linear)."""
    if isinstance(layer, nn.Conv2d):  # zero padding of fixed size: what the rows reproduce
        fixed = isinstance(layer.padding, tuple) and layer.padding_mode == "zeros"
        return fixed and layer.groups == 1 and layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1] <= MAX_COLUMNS
    return isinstance(layer, nn.Linear) and layer.in_features <= MAX_COLUMNS


def _columns(layer: nn.Module) -> int:
    """Columns of the layer's regression rows: input channels × kernel taps (+1 for a bias)."""
    taps = math.prod(layer.kernel_size) if isinstance(layer, nn.Conv2d) else 1
    return layer.weight.shape[1] * taps + (layer.bias is not None)


def _rows(layer: nn.Module, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The layer's input as regression rows (one per output position, bias column last): all
    of them, or a seeded sample of ``ROWS_PER_BATCH`` where there are more."""
    if isinstance(layer, nn.Conv2d):
        rows = _conv_rows(layer, x, gen)
    else:
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] > ROWS_PER_BATCH:
            rows = rows[torch.randperm(rows.shape[0], generator=gen)[:ROWS_PER_BATCH]]
    if layer.bias is not None:
        rows = torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype)], dim=1)
    return rows


def _conv_rows(layer: nn.Conv2d, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``F.unfold``'s rows (output positions in (image, row, column) order, columns channel ×
    kernel tap), sampled by ``randperm`` over all positions. Only the sampled patches are
    gathered, not the whole batch unfolded first: ResNet-20's Gram matrices (8 batches of 64)
    took 8.4 s on one thread that way and take 4.3 s, and a large input's unfold would take
    gigabytes."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = layer.kernel_size, layer.stride, layer.dilation, layer.padding
    n, _, h, w = x.shape
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    total = n * oh * ow
    if total <= ROWS_PER_BATCH:
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    pos = torch.randperm(total, generator=gen)[:ROWS_PER_BATCH]
    image, row, col = pos // (oh * ow), pos % (oh * ow) // ow, pos % ow
    rows_in = (row * sh)[:, None] + torch.arange(kh) * dh  # (positions, kh) input rows, padded coordinates
    cols_in = (col * sw)[:, None] + torch.arange(kw) * dw
    padded = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # zero padding, as unfold's; NHWC
    patches = padded[image[:, None, None], rows_in[:, :, None], cols_in[:, None, :]]  # (positions, kh, kw, C)
    return patches.permute(0, 3, 1, 2).reshape(pos.shape[0], -1)


class Reconstructor:
    """Gram matrices of the uncompressed model's layer inputs, and the re-fit from them."""

    def __init__(self, model: nn.Module, calibration: Sequence[torch.Tensor], layers: Sequence[str], *, seed: int = 0) -> None:
        self.model = model
        self.calibration = list(calibration)
        self.layers = [n for n in dict.fromkeys(layers) if reconstructable(model.get_submodule(n))]
        self.seed = seed
        self._grams: dict[str, torch.Tensor] | None = None
        # (layer, source weight's id and version, kept outputs, kept inputs, dtype) → (the source
        # weight, held so its id is not reused while cached; solved weight; solved bias)
        self._solved: OrderedDict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = OrderedDict()
        self._solved_bytes = 0
        self._lock = threading.Lock()

    def grams(self, given: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """``G = XᵀX`` per layer (float64, averaged over rows), computed once, or ``given`` by
        another copy of this model's reconstructor (checked to fit its layers)."""
        if self._grams is None and given is not None:
            for name, gram in given.items():
                size = _columns(self.model.get_submodule(name)) if name in self.layers else None
                if gram.dtype != torch.float64 or gram.shape != (size, size):
                    raise ValueError(f"given Gram matrix {name!r} ({tuple(gram.shape)}, {gram.dtype}) does not fit this model's layer (columns: {size})")
            self._grams = dict(given)
        if self._grams is None:
            self._grams = self._compute()
        return self._grams

    def _compute(self) -> dict[str, torch.Tensor]:
        mods = {self.model.get_submodule(n): n for n in self.layers}
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        gen = torch.Generator().manual_seed(self.seed)

        def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            name = mods[mod]
            rows = _rows(mod, inputs[0].detach().float(), gen).double()
            sums[name] = sums.get(name, 0) + rows.T @ rows
            counts[name] = counts.get(name, 0) + rows.shape[0]

        for batch in self.calibration:
            forward_with_hooks(self.model, batch, hook, lambda m: m in mods)
        return {n: sums[n] / counts[n] for n in sums}

    def refit(self, original: nn.Module, pruned: nn.Module, kept: Mapping[str, tuple[list[int], list[int]]]) -> None:
        """Re-fit, in ``pruned`` (built from ``original``, the model the Gram matrices were
        measured on), every layer whose kept inputs (``kept[name] = (outputs, inputs)``,
        original indices) are fewer than the uncompressed layer's."""
        grams = self.grams()
        for name, (outs, ins) in kept.items():
            source = original.get_submodule(name)
            if name not in grams or len(ins) >= source.weight.shape[1]:
                continue
            layer = pruned.get_submodule(name)
            weight, bias = self._solution(name, source, outs, ins, layer.weight.dtype)
            with torch.no_grad():
                layer.weight.copy_(weight.reshape(layer.weight.shape))
                if bias is not None:
                    layer.bias.copy_(bias)

    def _solution(self, name: str, source: nn.Module, outs: list[int], ins: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The re-fitted weight rows ``outs`` over inputs ``ins`` of layer ``name`` (and bias),
        solved once per (layer, kept outputs, kept inputs) and kept in a bounded LRU cache: a
        search meets the same kept channels of a layer again and again (73% of ResNet-20's
        layer re-fits over 100 random policies), and the solve is deterministic."""
        key = (name, id(source.weight), source.weight._version, tuple(outs), tuple(ins), dtype)
        with self._lock:
            hit = self._solved.get(key)
            if hit is not None:
                self._solved.move_to_end(key)
                return hit[1], hit[2]
        solved = _solve(self.grams()[name], source, outs, ins, dtype)
        size = _nbytes(solved)
        with self._lock:
            self._solved[key] = (source.weight, *solved)
            self._solved_bytes += size
            while self._solved_bytes > CACHE_BYTES and len(self._solved) > 1:
                _, old = self._solved.popitem(last=False)
                self._solved_bytes -= _nbytes(old[1:])
        return solved


def _nbytes(tensors: Sequence[torch.Tensor | None]) -> int:
    """Bytes held by ``tensors`` (None: nothing)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _solve(gram: torch.Tensor, source: nn.Module, outs: list[int], ins: list[int], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``W'_K = W_K + (G_KK + λI)⁻¹ G_KD W_D`` for the kept output rows ``outs`` (float64),
    returned as (weight rows flattened over inputs × taps, bias or None) in ``dtype``."""
    full_in = source.weight.shape[1]
    taps = math.prod(source.weight.shape[2:])  # kernel positions (1 for a linear)
    rows = torch.tensor(outs)
    keep = (torch.tensor(ins)[:, None] * taps + torch.arange(taps)).reshape(-1)  # input channel × tap columns
    w = source.weight.detach().reshape(source.weight.shape[0], -1).index_select(0, rows).double()
    if source.bias is not None:
        keep = torch.cat([keep, torch.tensor([full_in * taps])])  # the constant column
        w = torch.cat([w, source.bias.detach().index_select(0, rows).double()[:, None]], dim=1)
    dropped = torch.ones(w.shape[1], dtype=torch.bool)
    dropped[keep] = False
    drop = dropped.nonzero().squeeze(1)
    g_k = gram.index_select(0, keep)  # the kept rows of G
    g_kk = g_k.index_select(1, keep)
    g_kk = g_kk + (RIDGE * float(g_kk.diagonal().mean()) + 1e-12) * torch.eye(len(keep), dtype=g_kk.dtype)
    # G_kk is symmetric positive definite (a Gram matrix plus a ridge): Cholesky, half LU's work
    rhs = g_k.index_select(1, drop) @ w.index_select(1, drop).T
    new = (w.index_select(1, keep).T + torch.cholesky_solve(rhs, torch.linalg.cholesky(g_kk))).T
    if source.bias is not None:
        return new[:, :-1].to(dtype).contiguous(), new[:, -1].to(dtype).contiguous()
    return new.to(dtype).contiguous(), None


def track_kept(kept: dict[str, tuple[list[int], list[int]]], group: Any, dg: tp.DependencyGraph, names: Mapping[nn.Module, str]) -> None:
    """Record, before ``group`` is pruned, which original channels of its dense layers stay
    (the group's indices are positions in the layers as they are now)."""
    for dep, idxs in group:
        mod = dep.target.module
        if not reconstructable(mod) or mod not in names:
            continue
        outs, ins = kept.setdefault(names[mod], (list(range(mod.weight.shape[0])), list(range(mod.weight.shape[1]))))
        dropped = {int(i) for i in idxs}
        if dg.is_out_channel_pruning_fn(dep.handler):
            outs[:] = [c for i, c in enumerate(outs) if i not in dropped]
        elif dg.is_in_channel_pruning_fn(dep.handler):
            ins[:] = [c for i, c in enumerate(ins) if i not in dropped]
