"""torch-pruning's dependency graph for any traced model, and which channel groups are safe.

torch-pruning traces a model through autograd and maps channel indices through concatenations,
splits, reshapes and slices. Two things go wrong on models nobody wrote for it:

* an index mapping it cannot compute (ShuffleNetV2's 5-D ``view`` for the channel shuffle
  raises ``ZeroDivisionError``) aborts the whole analysis;
* an op it does not know (``transpose``, ``permute``, a reduction over channels, a custom
  autograd function) is treated as element-wise, i.e. channel-preserving, so pruning runs and
  silently removes the wrong channels downstream.

:func:`build_graph` maps indices node by node, recording nodes it could not map as opaque
instead of giving up. :func:`group_risks` names what in a group is not plainly
channel-preserving; :func:`verify_group` then *proves* such a group on a copy of the model:
the channels to be removed are made dead (every consumer ignores them), they are pruned, and
the output must be unchanged up to float rounding. A group that fails is locked — it stays
unpruned and gets a one-line note — so any traced CNN yields a working space.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from automc.compress.analysis import outputs_close

# Element-wise ops that keep every channel where it is (grad_fn names, lower case, without
# the "backward<N>" suffix). Reductions (mean, sum) are absent: over dim 1 they mix channels.
CHANNEL_PRESERVING = frozenset(
    """add sub mul div neg abs pow sqrt rsqrt exp log clamp clampmin clampmax maximum minimum where
    relu relu6 hardtanh leakyrelu elu gelu silu sigmoid hardsigmoid hardswish tanh softplus mish threshold
    maxpool2dwithindices avgpool2d adaptiveavgpool2d adaptivemaxpool2d upsamplenearest2d upsamplebilinear2d
    clone tocopy contiguous alias nativedropout dropout""".split()
)
PLAIN_TYPES = frozenset({tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.DEPTHWISE_CONV, tp.ops.OPTYPE.LINEAR, tp.ops.OPTYPE.BN, tp.ops.OPTYPE.CONCAT})


def _op_name(node: Any) -> str:
    """The op a graph node stands for, e.g. ``view`` for ``ViewBackward0``."""
    name = node.grad_fn.name() if getattr(node, "grad_fn", None) is not None else str(getattr(node.module, "_name", "unknown"))
    name = name.lower()
    for suffix in ("backward0", "backward1", "backward"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def build_graph(model: nn.Module, example_input: torch.Tensor, customized_pruners: dict[type, Any]) -> tuple[tp.DependencyGraph, set[Any]]:
    """torch-pruning's graph of ``model`` and the set of nodes whose index mapping failed.

    Tracing follows autograd, so parameters temporarily require grad (restored after).
    """
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(True)
    dg = tp.DependencyGraph()
    opaque: set[Any] = set()
    try:
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.simplefilter("ignore")
            try:
                dg.build_dependency(model, example_inputs=example_input, customized_pruners=customized_pruners, verbose=False)
            except Exception:  # noqa: BLE001 - torch-pruning gave up on some op; redo the mapping node by node
                if not getattr(dg, "module2node", None):
                    raise  # tracing itself failed: nothing to analyse
                opaque = _map_indices_node_by_node(dg)
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    return dg, opaque


def _map_indices_node_by_node(dg: tp.DependencyGraph) -> set[Any]:
    """torch-pruning's index-mapping pass, one node at a time; returns the nodes that failed.

    A failed node is re-typed element-wise, because torch-pruning re-runs the whole mapping
    pass for every group it builds; it stays in the returned set, so every group through it
    is verified (and locked when wrong) rather than trusted.
    """
    im, ops = tp.dependency.index_mapping, tp.ops.OPTYPE
    updates = {
        ops.CONCAT: im.update_concat_index_mapping, ops.SPLIT: im.update_split_index_mapping,
        ops.RESHAPE: im.update_reshape_index_mapping, ops.UNBIND: im.update_unbind_index_mapping,
        ops.EXPAND: im.update_expand_index_mapping, ops.SLICE: im.update_slice_index_mapping,
    }  # fmt: skip
    failed = set()
    for node in dg.module2node.values():
        update = updates.get(node.type)
        if update is None:
            continue
        try:
            update(dg, node)
        except Exception:  # noqa: BLE001 - this node's channel mapping is unknown: groups through it get verified
            failed.add(node)
            node.type = ops.ELEMENTWISE
    return failed


def rooted_groups(model: nn.Module, dg: tp.DependencyGraph, ignored: set[nn.Module], locked: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Coupled groups rooted at the first conv/linear of each, in network order; a group with
    an ``ignored`` producer is left out, one torch-pruning cannot form is appended to ``locked``.

    Like torch-pruning's ``get_all_groups`` but rooted in definition order, so a
    concatenation's inputs each get their own group (rooted at the producer, not at the
    depthwise conv that consumes the concatenation) and names are stable.
    """
    visited: set[nn.Module] = set()
    out = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)) or m in visited or m in ignored or m not in dg.module2node:
            continue
        pruner = dg.get_pruner_of_module(m)
        channels = pruner.get_out_channels(m) if pruner is not None else None
        if not channels:
            continue
        try:
            group = dg.get_pruning_group(m, pruner.prune_out_channels, list(range(channels)))
        except Exception as exc:  # noqa: BLE001 - torch-pruning cannot follow this group's channels
            locked.append({"group": name, "channels": int(channels), "through": ["?"], "reason": f"torch-pruning cannot form the group ({type(exc).__name__})"})
            visited.add(m)
            continue
        prunable = True
        for dep, _ in group:
            if dg.is_out_channel_pruning_fn(dep.handler):
                visited.add(dep.target.module)
                prunable = prunable and dep.target.module not in ignored
        if prunable:
            out.append((name, group))
    return out


def group_risks(group: Any, opaque: set[Any]) -> list[str]:
    """What in ``group`` is not plainly channel-preserving (empty = a plain group)."""
    risks: list[str] = []
    for dep, _ in group:
        node = dep.target
        if node in opaque:
            risks.append(f"unmappable {_op_name(node)}")
        elif node.type in PLAIN_TYPES or isinstance(node.module, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            continue
        elif node.type == tp.ops.OPTYPE.ELEMENTWISE:
            name = _op_name(node)
            if name not in CHANNEL_PRESERVING:
                risks.append(name)
        elif node.type == tp.ops.OPTYPE.CUSTOMIZED and hasattr(node.module, "to_index"):
            continue  # our own option-A shortcut stand-in, pruned by its registered pruner
        else:
            risks.append(node.type.name.lower() if hasattr(node.type, "name") else str(node.type))
    return sorted(set(risks))


def verify_group(
    model: nn.Module,
    example_input: torch.Tensor,
    root: str,
    prepare: Callable[[nn.Module], tuple[tp.DependencyGraph, Any]],
    finalize: Callable[[nn.Module], None],
) -> str | None:
    """Prune two dead channels of the group rooted at ``root`` on a copy; None if the output
    is unchanged (up to float rounding), else why not, in a few words."""
    work = copy.deepcopy(model).eval()
    try:
        dg, _ = prepare(work)
        layer = work.get_submodule(root)
        pruner = dg.get_pruner_of_module(layer)
        channels = int(pruner.get_out_channels(layer))
        drop = sorted({0, channels - 1}) if channels > 2 else [0]
        group = dg.get_pruning_group(layer, pruner.prune_out_channels, drop)
        _kill_channels(group, dg)
        with torch.no_grad():
            reference = work(example_input)
        if not dg.check_pruning_group(group):
            return "torch-pruning refuses to prune it"
        group.prune()
        finalize(work)
        with torch.no_grad():
            out = work(example_input)
    except Exception as exc:  # noqa: BLE001 - any failure means: not safely prunable
        return exception_line(exc)
    return output_change(reference, out, shape="output shape changes", values="removing dead channels changes the output (channels are mixed or reordered)")


def exception_line(exc: BaseException) -> str:
    """An exception as the one-line reason of a failed proof: its type and first line."""
    first = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + first if first else ''}"


def output_change(reference: torch.Tensor, out: torch.Tensor, *, shape: str, values: str) -> str | None:
    """The verdict of a dead-part proof: None when removing dead channels (or heads) left the
    output as it was, else ``shape`` (with the two shapes) or ``values``."""
    if out.shape != reference.shape:
        return f"{shape} {tuple(reference.shape)} -> {tuple(out.shape)}"
    if not outputs_close(out, reference):
        return values
    return None


def _kill_channels(group: Any, dg: tp.DependencyGraph) -> None:
    """Make the group's selected channels dead: every consumer's input weights for them → 0."""
    with torch.no_grad():
        for dep, idxs in group:
            mod = dep.target.module
            if not dg.is_in_channel_pruning_fn(dep.handler) or not isinstance(mod, (nn.Conv2d, nn.Linear)):
                continue
            if isinstance(mod, nn.Conv2d) and mod.groups > 1:
                continue  # depthwise: its outputs are pruned with the group and consumed downstream
            cols: Sequence[int] = [int(i) for i in idxs]
            mod.weight[:, cols] = 0.0
