"""Dependency-aware channel pruning with torch-pruning's DepGraph.

One dimension per prunable *coupled channel group* — the channels that must be removed
together because a residual addition, a concatenation or a depthwise convolution ties
layers to each other. A dimension's value is the group's **preserve ratio** in
[lbound, 1.0]; the number of channels kept is ``round(C × ratio)``, rounded to a multiple of
``round_to``. Which channels go is decided by a group importance (L1 or L2 magnitude over
every layer in the group, FPGM, or BN scale) from torch-pruning. ``apply`` returns a
physically smaller copy: convolutions, BatchNorms and linears are sliced, nothing is masked.

Option-A shortcuts (CIFAR ResNets) pad channels with zeros, which torch-pruning cannot trace
as an operator. During pruning each one becomes a fixed 0/1 1×1 strided convolution with a
registered custom pruner (so torch-pruning couples its input and output channels correctly,
while the importance ignores it); after pruning it becomes a parameter-free channel gather
(:class:`~automc.models.resnet_cifar.ChannelMapShortcut`), so the pruned model pays no MACs
for it.

``mode="inner_only"`` keeps only groups with a single producing layer — the channels inside a
residual block (AMC's choice for ResNets) — so residual stage widths stay intact.

Models nobody wrote for automc: a group that passes through anything but convolutions,
BatchNorm, concatenation and channel-preserving element-wise ops (a split, a channel shuffle,
a reshape, a slice, a custom op) is proved on a copy before it becomes a dimension (see
:mod:`automc.search_spaces.pruning_graph`); one that fails is **locked** — left unpruned, listed in
:attr:`ChannelPruningSpace.locked` with the reason — so pruning never crashes and never
removes the wrong channels. Attention modules with a packed ``qkv`` projection get one
dimension that removes whole heads (:mod:`automc.search_spaces.attention_heads`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from automc.compress.analysis import analyze
from automc.errors import UserError, require_number
from automc.compress.spaces import Float, SearchSpace
from automc.compress.widths_file import inline_widths, space_widths
from automc.search_spaces.attention_heads import Heads, find_heads, prune_heads, verify_heads
from automc.search_spaces.common import check_layer_names, layer_info, output_layers
from automc.search_spaces.pruning_graph import build_graph, group_risks, rooted_groups, verify_group
from automc.search_spaces.reconstruction import Reconstructor, track_kept
from automc.search_spaces.shortcuts import ShortcutConv, ShortcutConvPruner, finalize_shortcuts, prepare_shortcuts
from automc.search_spaces.traced_model import TracedModel

CRITERIA = ("l1", "l2", "fpgm", "bn_scale")
MODES = ("all", "inner_only")


def _importance(criterion: str) -> tp.importance.Importance:
    if criterion == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, group_reduction="mean", normalizer=None)
    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer=None)
    if criterion == "fpgm":
        return tp.importance.FPGMImportance(p=2, group_reduction="mean", normalizer=None)
    return tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)


class ChannelPruningSpace(SearchSpace):
    """Per coupled-channel-group preserve ratios (knob ``ratio``)."""

    name = "channel_pruning"

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
        lbound: float = 0.2,
        round_to: int = 1,
        criterion: str = "l1",
        mode: str = "all",
        keep_layers: Sequence[str] = (),
        min_channels: int = 1,
        widths: str | Mapping[str, Any] | None = None,
        reconstruct: bool = False,
    ) -> None:
        super().__init__(model, example_input, calibration=calibration)
        if not isinstance(reconstruct, bool):
            raise UserError(f"reconstruct must be true or false, got {reconstruct!r}", field="reconstruct")
        self.reconstruct = reconstruct
        self._model = model
        self._refit: Reconstructor | None = None
        require_number("lbound", lbound, 0, 1, low_open=True)
        require_number("round_to", round_to, 1, None, integer=True)
        require_number("min_channels", min_channels, 1, None, integer=True)
        if criterion not in CRITERIA:
            raise UserError(f"criterion {criterion!r} is not known; valid: {', '.join(CRITERIA)}", field="criterion")
        if mode not in MODES:
            raise UserError(f"mode {mode!r} is not known; valid: {', '.join(MODES)}", field="mode")
        self.lbound = float(lbound)
        self.round_to = int(round_to)
        self.criterion = criterion
        self.mode = mode
        self.keep_layers = tuple(check_layer_names(model, keep_layers, "keep_layers"))
        self.min_channels = max(1, int(min_channels))
        self.widths: dict[str, list[int]] = {}  # dim → kept counts allowed (measured per group)
        self.classifier = tuple(output_layers(model, example_input))
        self.locked: list[dict[str, Any]] = []
        self._importance = _importance(criterion)

        self._traced = TracedModel(model, self._graph_and_opaque)  # traced once; reused by apply
        work, dg, opaque = self._traced.work, self._traced.graph, self._traced.opaque
        names = {m: n for n, m in work.named_modules()}
        order = {n: i for i, (n, _) in enumerate(work.named_modules())}
        stats = {layer.name: layer for layer in analyze(model, example_input).layers}
        # for analytic cost models (automc.search.cost_model)
        self.layer_macs = {n: float(st.macs) for n, st in stats.items()}
        self.layer_params = {n: float(st.params) for n, st in stats.items()}
        self._roots: dict[str, str] = {}
        self._channels: dict[str, int] = {}
        self._heads: dict[str, Heads] = {}  # dim → the attention module whose whole heads it prunes
        ignored = set(self._ignored(work))
        for heads in find_heads(work):
            if work.get_submodule(heads.qkv) in ignored or heads.heads < 2:
                continue
            why = verify_heads(model, self.example_input, heads)
            if why is not None:  # its qkv channels are analysed (and locked) as any group
                self.locked.append({"group": heads.module, "channels": heads.heads, "unit": "heads", "through": ["attention heads"], "reason": why})
                continue
            ignored.add(work.get_submodule(heads.qkv))  # pruned by whole heads, not channel by channel
            dim = f"{heads.module}:ratio"
            self._heads[dim], self._roots[dim], self._channels[dim] = heads, heads.module, heads.heads
            self._dims[dim] = Float(self.lbound, 1.0, 1.0, knob="ratio", info=heads.info(stats))
        for root_name, group in rooted_groups(work, dg, ignored, self.locked):
            producers, consumers = [], []
            shares: dict[str, list[int]] = {}  # consumer → [its input channels from this group, all its inputs]
            for dep, idxs in group:
                mod = dep.target.module
                if not isinstance(mod, (nn.Conv2d, nn.Linear)):
                    if isinstance(mod, ShortcutConv) and dg.is_out_channel_pruning_fn(dep.handler):
                        producers.append(names[mod])
                    continue
                depthwise = isinstance(mod, nn.Conv2d) and mod.groups > 1 and mod.groups == mod.in_channels
                if dg.is_out_channel_pruning_fn(dep.handler) and not depthwise:
                    producers.append(names[mod])
                elif depthwise or dg.is_in_channel_pruning_fn(dep.handler):
                    consumers.append(names[mod])
                    total = mod.in_channels if isinstance(mod, nn.Conv2d) else mod.in_features
                    shares[names[mod]] = [len(idxs), int(total)]
            root = root_name
            channels = int(dg.get_out_channels(work.get_submodule(root)))
            if channels <= self.min_channels:
                continue
            if mode == "inner_only" and len(producers) != 1:
                continue
            risks = group_risks(group, opaque)
            if risks:
                why = verify_group(model, self.example_input, root, self._graph_and_opaque, finalize_shortcuts)
                if why is not None:
                    self.locked.append({"group": root, "channels": channels, "through": risks, "reason": why})
                    continue
            members = sorted(set(producers + consumers), key=lambda n: order.get(n, 0))
            info = {
                **layer_info(stats[root]),
                "members": members,
                "producers": sorted(set(producers), key=lambda n: order.get(n, 0)),
                "consumers": sorted(set(consumers), key=lambda n: order.get(n, 0)),
                "consumer_channels": shares,
                "macs": int(sum(stats[n].macs for n in members if n in stats)),
                "params": int(sum(stats[n].params for n in members if n in stats)),
            }
            self._roots[f"{root}:ratio"] = root
            self._channels[f"{root}:ratio"] = channels
            self._dims[f"{root}:ratio"] = Float(self.lbound, 1.0, 1.0, knob="ratio", info=info)
        # network order
        self._dims = dict(sorted(self._dims.items(), key=lambda kv: order[self._roots[kv[0]]]))
        if not self._dims:
            raise UserError("the model has no prunable channel group (all are classifier or keep_layers)")
        if widths is not None:
            self.widths = space_widths(widths, self._roots, self._channels)

    def config(self) -> dict[str, Any]:
        return {
            "lbound": self.lbound,
            "round_to": self.round_to,
            "criterion": self.criterion,
            "mode": self.mode,
            "keep_layers": list(self.keep_layers),
            "min_channels": self.min_channels,
            "widths": inline_widths(self.widths, self._roots),
            "reconstruct": self.reconstruct,
        }

    def canonical(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Kept channels per group: ratios that round to the same counts build one model."""
        params = self.validate(params, partial=True)
        return tuple((k, self.keep_count(self._channels[k], params[k], k)) for k in self._dims)

    def _ignored(self, model: nn.Module) -> list[nn.Module]:
        return [model.get_submodule(n) for n in (*self.classifier, *self.keep_layers)]

    def _graph_and_opaque(self, model: nn.Module) -> tuple[tp.DependencyGraph, set[Any]]:
        """Prepare ``model`` (in place) and trace it; kept layers are traced too, they are only
        never a pruned *output*."""
        prepare_shortcuts(model)
        return build_graph(model, self.example_input, {ShortcutConv: ShortcutConvPruner()})

    def _graph(self, model: nn.Module) -> tp.DependencyGraph:
        return self._graph_and_opaque(model)[0]

    def locked_notes(self) -> list[str]:
        """One line per locked group: which, how many channels, through what, and why."""
        return [f"{g['group']} ({g['channels']} {g.get('unit', 'ch')}) via {', '.join(g['through'])}: {g['reason']}" for g in self.locked]

    def keep_count(self, channels: int, ratio: float, dim: str | None = None) -> int:
        """Channels kept for ``ratio``: rounded, at least ``min_channels`` and ``round_to`` — or,
        for a group ``dim`` with measured widths, the nearest of them (ties: the larger)."""
        allowed = self.widths.get(dim) if dim is not None else None
        if allowed:
            target = channels * ratio
            return min(allowed, key=lambda w: (abs(w - target), -w))
        if dim in self._heads:  # whole heads: at least one, no channel rounding
            return min(channels, max(1, int(math.floor(channels * ratio + 0.5))))
        n = max(self.min_channels, int(math.floor(channels * ratio + 0.5)))
        if self.round_to > 1:
            n = max(self.round_to, int(math.floor(n / self.round_to + 0.5)) * self.round_to)
        return min(n, channels)

    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        params = self.validate(params, partial=True)
        kept: dict[str, tuple[list[int], list[int]]] = {}  # layer → (outputs, inputs) kept, original indices
        traced = self._traced_for(model)
        if traced is not None:  # the space's own model, unchanged: prune the traced copy, hand out a copy
            with traced.borrowed() as (work, dg):
                self._prune(work, dg, params, kept)
                out = copy.deepcopy(work)
        else:
            out = copy.deepcopy(model)
            self._prune(out, self._graph(out), params, kept)
        finalize_shortcuts(out)
        if self.reconstruct and kept:
            self._reconstructor().refit(model, out, kept)
        out.train(model.training)
        return out

    def _traced_for(self, model: nn.Module) -> TracedModel | None:
        """The traced copy of ``model`` when it is the space's model (re-traced if its weights
        were changed in place since); None for any other model."""
        if model is not self._model:
            return None
        if not self._traced.serves(model):
            self._traced = TracedModel(model, self._graph_and_opaque)
        return self._traced if self._traced.usable else None

    def _prune(self, out: nn.Module, dg: tp.DependencyGraph, params: Mapping[str, Any], kept: dict[str, tuple[list[int], list[int]]]) -> None:
        """Prune ``out`` (traced as ``dg``) in place to ``params``, group by group in network
        order (each group's importance measured on the model as earlier groups left it)."""
        names = {m: n for n, m in out.named_modules()}
        for dim, root_name in ((d, r) for d, r in self._roots.items() if d not in self._heads):
            root = out.get_submodule(root_name)
            channels = int(dg.get_out_channels(root))
            keep = self.keep_count(channels, params[dim], dim)
            if keep >= channels:
                continue
            pruner = dg.get_pruner_of_module(root)
            full = dg.get_pruning_group(root, pruner.prune_out_channels, list(range(channels)))
            imp = self._importance(full)
            if imp is None:
                continue
            drop = torch.argsort(imp, stable=True)[: channels - keep].tolist()
            group = dg.get_pruning_group(root, pruner.prune_out_channels, drop)
            if dg.check_pruning_group(group):
                if self.reconstruct:
                    track_kept(kept, group, dg, names)
                group.prune()
        for dim, heads in self._heads.items():  # whole attention heads, after the channel groups
            prune_heads(out, heads, heads.heads - self.keep_count(heads.heads, params[dim], dim), kept if self.reconstruct else None)

    def prepare(self, state: Mapping[str, Any] | None = None) -> None:
        """With ``reconstruct``, the re-fit's Gram matrices: one calibration pass, once, or
        ``state["grams"]`` from another copy's :meth:`prepared`."""
        if self.reconstruct:
            self._reconstructor().grams((state or {}).get("grams"))

    def prepared(self) -> dict[str, Any]:
        return {"grams": self._reconstructor().grams()} if self.reconstruct else {}

    def _reconstructor(self) -> Reconstructor:
        """The least-squares re-fit of the layers that can lose inputs (built once: its Gram
        matrices come from one pass of the calibration batches through the model)."""
        if self._refit is None:
            layers = [c for d in self._dims.values() for c in dict(d.info).get("consumers", [])]
            self._refit = Reconstructor(self._model, self.calibration or [self.example_input], layers)
        return self._refit

