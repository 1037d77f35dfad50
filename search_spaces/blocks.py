"""Which parts of a network the elastic space may change: residual stages and large kernels.

The rules (documented in ``docs/search_spaces.md``; anything they do not recognise stays fixed):

* **Droppable block.** A child of an ``nn.Sequential`` that torch.fx can trace, whose output
  is its input plus a branch — ``x + f(x)`` or ``f(x) + x``, optionally followed by one ReLU —
  with the shortcut operand being the block's input itself (directly or through
  ``nn.Identity``), and whose output has its input's shape on the example input. Dropping it
  replaces it with ``nn.Identity``: the block without its branch (a ReLU after the add is the
  identity on its input, which a preceding ReLU left non-negative).
* **Stage.** Within one ``nn.Sequential``, a block that is not droppable starts a stage and the
  droppable blocks after it extend it. A stage's depth keeps its first blocks and drops the
  trailing droppable ones (OFA's elastic depth); stages without droppable blocks are fixed.
* **Shrinkable kernel.** A ``Conv2d`` with a square odd kernel k > 3, dilation 1, zero
  "same" padding (k // 2): it can become the centred k' × k' part of itself (OFA's elastic
  kernel without its transform matrices), its padding reduced to keep the output size.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from automc.compress.analysis import forward_with_hooks

_ADDS = {operator.add, torch.add}
_RELUS = {torch.relu, torch.nn.functional.relu}


@dataclass(frozen=True)
class Stage:
    """A run of blocks: ``blocks[:fixed]`` always stay, the rest may be dropped from the end."""

    name: str
    blocks: tuple[str, ...]
    fixed: int
    layers: tuple[tuple[str, ...], ...] = field(default=())  # conv/linear layers of each block


def _is_identity(node: fx.Node, root: nn.Module, x: fx.Node) -> bool:
    while node.op == "call_module" and isinstance(root.get_submodule(str(node.target)), nn.Identity):
        node = node.args[0]  # type: ignore[assignment]
    return node is x


def _unwrap_relu(node: fx.Node, root: nn.Module) -> fx.Node:
    relu = (
        (node.op == "call_function" and node.target in _RELUS)
        or (node.op == "call_method" and node.target == "relu")
        or (node.op == "call_module" and isinstance(root.get_submodule(str(node.target)), nn.ReLU))
    )
    return node.args[0] if relu and isinstance(node.args[0], fx.Node) else node  # type: ignore[return-value]


def residual_form(block: nn.Module) -> str | None:
    """None when ``block`` computes ``[relu](x + f(x))`` with an identity shortcut, else why not."""
    try:
        gm = fx.symbolic_trace(block)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means "not recognised"
        return f"torch.fx cannot trace it ({type(exc).__name__})"
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    if len(inputs) != 1 or not isinstance(output.args[0], fx.Node):
        return "it does not map one tensor to one tensor"
    node = _unwrap_relu(output.args[0], gm)
    is_add = (node.op == "call_function" and node.target in _ADDS) or (node.op == "call_method" and node.target == "add")
    if not is_add or len(node.args) != 2 or not all(isinstance(a, fx.Node) for a in node.args):
        return "its output is not a sum of its input and a branch"
    if not any(_is_identity(a, gm, inputs[0]) for a in node.args):  # type: ignore[arg-type]
        return "its shortcut is not the identity"
    return None


def _shapes(model: nn.Module, example_input: torch.Tensor) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each module's (input shape, output shape) on the example input (first call)."""
    names = {m: n for n, m in model.named_modules()}
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            seen.setdefault(names[mod], (tuple(inputs[0].shape), tuple(output.shape)))

    forward_with_hooks(model, example_input, hook, lambda m: True)
    return seen


def find_stages(model: nn.Module, example_input: torch.Tensor, *, min_depth: int = 1) -> tuple[list[Stage], list[str]]:
    """The stages whose depth can change, in network order, and one note per ``nn.Sequential``
    child that looks like a residual block but was not recognised (why it stays)."""
    shapes = _shapes(model, example_input)
    layers = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    stages: list[Stage] = []
    notes: list[str] = []
    droppable: list[str] = []
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential) or any(seq_name.startswith(d + ".") for d in droppable):
            continue
        runs: list[tuple[list[str], int]] = []  # (blocks, fixed)
        for child_name, child in seq.named_children():
            path = f"{seq_name}.{child_name}" if seq_name else child_name
            why = residual_form(child)
            ok = why is None and path in shapes and shapes[path][0] == shapes[path][1]
            if ok and runs:
                runs[-1][0].append(path)
            elif ok:
                runs.append(([path], 0))
            else:
                runs.append(([path], 1))
                if why and "trace" in why and any(isinstance(m, (nn.Conv2d, nn.Linear)) for m in child.modules()):
                    notes.append(f"{path}: not recognised as a residual block ({why}); it stays")
            if ok:
                droppable.append(path)
        for blocks, fixed in runs:
            lo = max(fixed, min_depth)
            if len(blocks) <= lo:
                continue
            whole = len(runs) == 1 and seq_name
            name = seq_name if whole else blocks[0]
            members = tuple(tuple(sorted(n for n in layers if n.startswith(b + "."))) for b in blocks)
            stages.append(Stage(name=name, blocks=tuple(blocks), fixed=lo, layers=members))
    return stages, notes


def shrinkable_convs(model: nn.Module) -> dict[str, int]:
    """``conv name → kernel size`` of every convolution the elastic kernel may shrink."""
    out: dict[str, int] = {}
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or m.padding_mode != "zeros" or isinstance(m.padding, str):
            continue
        (kh, kw), (ph, pw) = m.kernel_size, m.padding
        if kh == kw > 3 and kh % 2 == 1 and m.dilation == (1, 1) and ph == pw == kh // 2:
            out[name] = int(kh)
    return out


def shrink_kernel(conv: nn.Conv2d, k: int) -> nn.Conv2d:
    """The centred ``k × k`` part of ``conv`` (same channels, stride, groups; "same" padding)."""
    big = conv.kernel_size[0]
    if k == big:
        return conv
    cut = (big - k) // 2
    new = nn.Conv2d(
        conv.in_channels, conv.out_channels, k, stride=conv.stride, padding=k // 2, groups=conv.groups, bias=conv.bias is not None
    ).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, :, cut : cut + k, cut : cut + k])
        if conv.bias is not None:
            new.bias.copy_(conv.bias)  # type: ignore[union-attr]
    return new
