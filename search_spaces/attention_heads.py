"""Whole attention heads as channel-pruning groups, where removing them is exact.

torch-pruning follows a packed ``qkv`` projection's output channels through the reshape into
heads only when told the head count, and prunes single channels within heads, which changes
every head's width; the channel-level proof in :mod:`automc.search_spaces.pruning_graph` then
rightly locks the group. A *whole* head, though, can go: its query, key and value rows leave
``qkv``, its columns leave the output projection, and the module's ``num_heads`` drops by one —
the other heads compute exactly what they did.

Recognised: a module with an integer ``num_heads``, a ``qkv`` linear of ``3 × heads ×
head_dim`` outputs (query, key, value blocks, each head contiguous) and a ``proj`` linear
taking ``heads × head_dim`` inputs — the layout of timm's and DeiT's ``Attention`` and of
torch-pruning's ViT examples. Nothing is taken on trust: :func:`verify_heads` removes two
*dead* heads (their output-projection columns zeroed) on a copy and requires the model's output
to be unchanged, so a forward that reshapes to the input width or splits heads differently is
locked with the reason. ``nn.MultiheadAttention`` ties its head width to the embedding width
(the residual stream, normalised by LayerNorm), so its heads cannot leave on their own.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import LayerStats
from automc.search_spaces.common import layer_info
from automc.search_spaces.pruning_graph import exception_line, output_change


@dataclass(frozen=True)
class Heads:
    """Where one attention module's heads live (module paths in the model)."""

    module: str
    qkv: str
    proj: str
    heads: int
    head_dim: int

    def info(self, stats: Mapping[str, LayerStats]) -> dict[str, Any]:
        """The dimension's facts: ``channels`` counts heads; the cost model scales ``qkv``'s
        outputs and the projection's inputs by the kept fraction of heads."""
        width, members = self.heads * self.head_dim, [self.qkv, self.proj]
        return {
            **layer_info(stats[self.qkv]), "layer": self.module, "channels": self.heads, "unit": "heads", "head_dim": self.head_dim,
            "members": members, "producers": [self.qkv], "consumers": [self.proj], "consumer_channels": {self.proj: [width, width]},
            "macs": int(sum(stats[n].macs for n in members)), "params": int(sum(stats[n].params for n in members)),
        }  # fmt: skip

    def rows(self, heads: Sequence[int], current: int | None = None) -> list[int]:
        """``qkv`` output rows of ``heads``: their query, key and value blocks (in a ``qkv`` of
        ``current`` heads; default: all of them)."""
        width = (self.heads if current is None else current) * self.head_dim
        return [part * width + h * self.head_dim + i for part in range(3) for h in heads for i in range(self.head_dim)]

    def columns(self, heads: Sequence[int]) -> list[int]:
        """Output-projection input columns of ``heads``."""
        return [h * self.head_dim + i for h in heads for i in range(self.head_dim)]


def find_heads(model: nn.Module) -> list[Heads]:
    """Every attention module of the recognised layout, in network order."""
    found = []
    for name, m in model.named_modules():
        heads, qkv, proj = getattr(m, "num_heads", None), getattr(m, "qkv", None), getattr(m, "proj", None)
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1:
            continue
        if not isinstance(qkv, nn.Linear) or not isinstance(proj, nn.Linear) or qkv.out_features % (3 * heads):
            continue
        head_dim = qkv.out_features // (3 * heads)
        if proj.in_features != heads * head_dim:
            continue
        prefix = f"{name}." if name else ""
        found.append(Heads(name, prefix + "qkv", prefix + "proj", heads, head_dim))
    return found


def importance(model: nn.Module, layout: Heads) -> torch.Tensor:
    """Per head of the module as it is now: mean |weight| over its ``qkv`` rows and its
    output-projection columns (L1 magnitude, as the channel groups' default criterion)."""
    qkv, proj = model.get_submodule(layout.qkv), model.get_submodule(layout.proj)
    heads = int(model.get_submodule(layout.module).num_heads)
    hd = layout.head_dim
    w = qkv.weight.detach().abs().reshape(3, heads, hd, -1).mean(dim=(0, 2, 3))
    p = proj.weight.detach().abs().reshape(proj.weight.shape[0], heads, hd).mean(dim=(0, 2))
    return w + p


def drop_heads(model: nn.Module, layout: Heads, drop: Sequence[int]) -> tuple[list[int], list[int]]:
    """Remove heads ``drop`` (positions among the module's current heads) in place; returns the
    kept ``qkv`` rows and output-projection columns (positions before the removal)."""
    module = model.get_submodule(layout.module)
    qkv, proj = model.get_submodule(layout.qkv), model.get_submodule(layout.proj)
    current = int(module.num_heads)
    kept_heads = [h for h in range(current) if h not in set(drop)]
    rows, cols = layout.rows(kept_heads, current), layout.columns(kept_heads)
    with torch.no_grad():  # new tensors, never written in place (the traced copy shares the old ones)
        qkv.weight = nn.Parameter(qkv.weight[rows].clone(), requires_grad=qkv.weight.requires_grad)
        if qkv.bias is not None:
            qkv.bias = nn.Parameter(qkv.bias[rows].clone(), requires_grad=qkv.bias.requires_grad)
        proj.weight = nn.Parameter(proj.weight[:, cols].clone(), requires_grad=proj.weight.requires_grad)
    qkv.out_features, proj.in_features = len(rows), len(cols)
    module.num_heads = len(kept_heads)
    return rows, cols


def prune_heads(model: nn.Module, layout: Heads, count: int, kept: dict[str, tuple[list[int], list[int]]] | None = None) -> None:
    """Remove the ``count`` least important heads in place; with ``kept`` (the channel
    re-fit's record: layer → kept outputs, kept inputs, original indices), narrow the output
    projection's inputs there too."""
    if count <= 0:
        return
    drop = torch.argsort(importance(model, layout), stable=True)[:count].tolist()
    proj = model.get_submodule(layout.proj)
    record = kept.setdefault(layout.proj, (list(range(proj.weight.shape[0])), list(range(proj.weight.shape[1])))) if kept is not None else None
    _, columns = drop_heads(model, layout, drop)
    if record is not None:
        record[1][:] = [record[1][i] for i in columns]


def verify_heads(model: nn.Module, example_input: torch.Tensor, layout: Heads) -> str | None:
    """Remove two dead heads on a copy; None if the output is unchanged, else why not."""
    if layout.heads < 2:
        return "a single head cannot be removed"
    work = copy.deepcopy(model).eval()
    drop = sorted({0, layout.heads - 1})
    try:
        with torch.no_grad():
            work.get_submodule(layout.proj).weight[:, layout.columns(drop)] = 0.0
            reference = work(example_input)
            drop_heads(work, layout, drop)
            out = work(example_input)
    except Exception as exc:  # noqa: BLE001 - any failure means: heads cannot be removed here
        return f"removing heads fails: {exception_line(exc)}"
    return output_change(reference, out, shape="removing heads changes the output shape", values="removing dead heads changes the output (heads are split or mixed differently)")
