"""A model prepared and traced once per search space, pruned in place and restored after each
candidate — so a candidate does not pay for a deep copy of the full model and a new
torch-pruning trace (issue 14's per-candidate overhead: 0.105 → 0.085 s of compression per
ResNet-20 candidate, measured side by side by ``benchmarks/candidate_overhead.py --compare
retrace``).

torch-pruning prunes a layer by replacing its parameters and buffers with sliced tensors and
updating its plain attributes (``out_channels``, ``num_features``, a concatenation's
``concat_sizes``…); it never changes the modules' identity, and it recomputes the graph's index
mappings from the modules' current sizes whenever it forms a group. So a snapshot of every
module's parameter and buffer *references* and plain attributes, taken right after tracing,
restores the unpruned state exactly (the original tensors are never written: slicing makes new
ones). The model handed out is a deep copy of the pruned one.

A graph whose pruning rewires the graph itself (an ``nn.Parameter`` used outside any module
— torch-pruning re-keys its nodes) is not reused: :attr:`TracedModel.usable` is False and the
space traces a fresh copy per candidate, as before.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch_pruning as tp
from torch import nn

# the dicts pruners write into (a pruned tensor replaces an entry): copied, not shared; other
# dicts (children, hooks) pruning never edits are shared with the snapshot
_STATE = ("_parameters", "_buffers")


def fingerprint(model: nn.Module) -> tuple[tuple[int, int], ...]:
    """Identity and in-place version of every parameter and buffer: changes when the model's
    weights are written, replaced or its structure is edited."""
    return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))


class TracedModel:
    """A private copy of ``model`` with its dependency graph, restorable to unpruned."""

    def __init__(self, model: nn.Module, trace: Callable[[nn.Module], tuple[tp.DependencyGraph, Any]]) -> None:
        self.source = model
        self.key = fingerprint(model)
        self.work = copy.deepcopy(model)
        self.graph, self.opaque = trace(self.work)
        self._lock = threading.Lock()
        mods = {id(m): m for m in self.work.modules()}
        for node in self.graph.module2node.values():  # torch-pruning's op stand-ins (concat, split…)
            if isinstance(node.module, nn.Module):
                mods.setdefault(id(node.module), node.module)
        self._snapshot = [(m, _copied(m.__dict__)) for m in mods.values()]
        self.usable = not any(node.type == tp.ops.OPTYPE.PARAMETER for node in self.graph.module2node.values())

    def serves(self, model: nn.Module) -> bool:
        """Whether this copy is of ``model`` as it is now (the same model, unchanged since)."""
        return model is self.source and fingerprint(model) == self.key

    @contextmanager
    def borrowed(self) -> Iterator[tuple[nn.Module, tp.DependencyGraph]]:
        """The work model and its graph, for one candidate; restored to unpruned on exit
        (also after an exception), one candidate at a time."""
        with self._lock:
            try:
                yield self.work, self.graph
            finally:
                self._restore()

    def _restore(self) -> None:
        for module, state in self._snapshot:
            module.__dict__.clear()  # also drops attributes a pruner added after the snapshot
            module.__dict__.update(_copied(state))
        self.graph._pruning_history.clear()


def _copied(attributes: dict[str, Any]) -> dict[str, Any]:
    """A module's attributes with the containers pruners edit in place copied: the
    parameter/buffer dicts (their tensors shared: pruning replaces, never writes them) and
    lists (torch-pruning's concat pruner edits ``concat_sizes`` in place)."""
    return {k: copy.copy(v) if k in _STATE or isinstance(v, list) else v for k, v in attributes.items()}

