"""Hardware-friendly channel counts per group, read off measured kernels.

A runtime pads channels to its vector width and picks kernels by shape, so a layer's latency
is a staircase in its channel count: pruning 16 channels to 12 may save nothing, and a free
count can even be slower than the next larger one. One global ``round_to`` guesses the
step; this module measures it per group instead.

``automc profile widths`` measures, on a latency profile (``onnxruntime-cpu`` by default),
each channel group's latency at every count the space can reach, in one of two contexts:

- ``model`` (default): the whole model with that group at ``c`` channels and every other
  group full — what a deployed model runs, layout reorders and fused epilogues included, at
  one export and measurement per count. A count is kept when it saves at least
  ``tolerance`` (default 1%) of the full model's latency over the last count kept.
- ``layer``: the group's producers at ``c`` outputs and consumers at ``c`` inputs measured
  alone, as the latency table builder does (each distinct shape once, the empty model's
  time subtracted). Much cheaper, but a layer alone may run a different kernel than in the
  model (measured on ResNet-20: odd counts looked efficient alone and were slow in the
  model). A count is kept when at least ``tolerance`` (default 3%) faster than the last kept.

Walking down from the full width, what remains are the right-hand edges of the staircase's
steps — the most channels for each latency. ``channel_pruning`` with ``widths: FILE`` rounds
every group's kept channels to the nearest of its widths.

The file (``automc.widths/1``) records where it was measured (device, threads, library
versions, date), the context and tolerance and, per group, the widths and the latency curve they came
from: widths measured on one CPU are that CPU's (an AVX2 and an AVX-512 machine differ).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any

import torch
from automc.device_profiles.lut_keys import layer_options, make_layer
from torch import nn

from automc.compress.spaces import SearchSpace
from automc.compress.widths_file import FORMAT
from automc.errors import UserError
from automc.measure.profiles import DeviceProfile

# measuring context → default tolerance (see derive_widths; for "step", the least efficiency that pays)
CONTEXTS = {"model": 0.01, "layer": 0.03, "step": 0.5}


def _jobs(options: Mapping[str, Mapping[str, Any]], info: Mapping[str, Any], c: int) -> list[tuple[str, int, int]]:
    """(layer key, in, out) of the group's layers at ``c`` kept channels (others full)."""
    jobs = []
    for layer in info["producers"]:
        if layer in options:  # a parameter-free gather (option-A shortcut) is not a layer here
            jobs.append((options[layer]["keys"][0], max(options[layer]["in"]), c))
    for layer in info["consumers"]:
        if layer in options:
            key = options[layer]["keys"][0]
            jobs.append((key, c, c if json.loads(key)["op"] == "dwconv" else max(options[layer]["out"])))
    return jobs


def efficient_widths(curve: Mapping[int, float], tolerance: float, scale: float | None = None) -> list[int]:
    """The counts kept walking down from the largest: each faster than the last one kept by at
    least ``tolerance`` of that one's latency — or of ``scale`` when given (a whole model's
    latency, for curves measured in context) — the right-hand edges of the latency staircase,
    ascending."""
    counts = sorted(curve, reverse=True)
    kept = [counts[0]]
    for c in counts[1:]:
        step = tolerance * (curve[kept[-1]] if scale is None else scale)
        if curve[c] <= curve[kept[-1]] - step:
            kept.append(c)
    return sorted(kept)


def _group_plan(space: SearchSpace) -> dict[str, tuple[str, float, list[int]]]:
    """Channel group → (dimension, its lowest ratio, the kept counts the space can reach)."""
    plan = {}
    for dim, d in space.dimensions.items():
        info = dict(d.info)
        if not dim.endswith(":ratio") or "producers" not in info:
            continue
        full, low = int(info["channels"]), float(getattr(d, "low", 0.0))
        lowest = max(1, int(full * low + 0.5))
        plan[dim.rsplit(":", 1)[0]] = (dim, low, list(range(lowest, full + 1)))
    if not plan:
        raise UserError("the search space has no channel groups: widths are for channel_pruning (or joint) spaces")
    return plan


def _curves_alone(profile: DeviceProfile, model: nn.Module, space: SearchSpace, example_input: torch.Tensor, plan: Mapping[str, Any], progress: Callable[[int, int], None] | None) -> tuple[dict[str, dict[int, float]], int]:
    """Per group, the summed latency of its layers measured alone (each distinct shape once,
    the empty model's time subtracted) at each count; and the number of shapes measured."""
    options = layer_options(model, space, example_input, 1)
    jobs = {group: {c: _jobs(options, dict(space.dimensions[dim].info), c) for c in counts} for group, (dim, _, counts) in plan.items()}
    shapes = sorted({job for rows in jobs.values() for js in rows.values() for job in js})
    overhead = profile.measure(nn.Identity(), torch.zeros(1, 1)).values["latency_ms"]
    measured: dict[tuple[str, int, int], float] = {}
    for n, (key, cin, cout) in enumerate(shapes):
        layer, x = make_layer(key, cin, cout)
        measured[(key, cin, cout)] = max(0.0, profile.measure(layer, x).values["latency_ms"] - overhead)
        if progress:
            progress(n + 1, len(shapes))
    return {group: {c: sum(measured[j] for j in js) for c, js in rows.items()} for group, rows in jobs.items()}, len(shapes)


def exact_builder(model: nn.Module, space: SearchSpace, plan: Mapping[str, Any], context: str) -> Callable[[Mapping[str, int]], nn.Module]:
    """``build(kept)``: ``model`` with each group of ``kept`` at exactly that many channels
    (others full; no rounding, no widths, never below what the space reaches), in eval mode."""
    pruning = getattr(space, "pruning", space)  # joint spaces hold a channel_pruning space
    if not hasattr(pruning, "keep_count") or not hasattr(pruning, "round_to"):
        raise UserError(f"space {space.name!r}: widths measured in context {context} need a channel_pruning (or joint) space; use --context layer", field="context")
    exact = copy.copy(pruning)
    exact.round_to, exact.min_channels, exact.widths = 1, 1, {}

    def build(kept: Mapping[str, int]) -> nn.Module:
        params = {}
        for group, c in kept.items():
            dim, low, counts = plan[group]
            c = max(c, counts[0])
            params[dim] = max(low, c / counts[-1])  # the lowest count is reached from the lowest ratio
            assert exact.keep_count(counts[-1], params[dim]) == c, (group, c)
        return exact.apply(model, params).eval()

    return build


def _curves_in_model(profile: DeviceProfile, model: nn.Module, space: SearchSpace, example_input: torch.Tensor, plan: Mapping[str, Any], progress: Callable[[int, int], None] | None) -> tuple[dict[str, dict[int, float]], float]:
    """Per group, the whole model's measured latency with that group at each count and every
    other group full (layout changes, fused epilogues and the neighbours' kernels included);
    and the full model's latency."""
    build = exact_builder(model, space, plan, "model")
    full_ms = profile.measure(model, example_input).values["latency_ms"]
    total, done = sum(len(counts) - 1 for _, _, counts in plan.values()), 0
    curves: dict[str, dict[int, float]] = {}
    for group, (_, _, counts) in plan.items():
        curves[group] = {counts[-1]: full_ms}
        for c in counts[:-1]:
            pruned = build({group: c})
            curves[group][c] = profile.measure(pruned, example_input).values["latency_ms"]
            done += 1
            if progress:
                progress(done, total)
    return curves, full_ms


def derive_widths(
    profile: DeviceProfile,
    model: nn.Module,
    space: SearchSpace,
    example_input: torch.Tensor,
    *,
    context: str = "model",
    tolerance: float | None = None,
    rounds: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Per channel group of ``space``, its latency at every reachable count and its efficient
    widths. ``context="model"`` (default) measures the whole model with the group at each
    count — what a deployed model runs, at one model build per count; a width is kept when it
    saves ``tolerance`` (default 0.01) of the full model's latency over the next kept one up.
    ``context="layer"`` measures the group's layers alone (each distinct shape once: faster,
    but blind to layout changes between layers); the saving is then relative to the group's
    own latency (default 0.03). ``context="step"`` measures whole pruned models side by side
    (``rounds`` interleaved rounds) to choose the runtime's channel step, and per group the
    multiples of it (:mod:`automc.device_profiles.steps`; ``tolerance`` is the least
    latency saved per MACs removed for channels to pay, default 0.5)."""
    if "latency_ms" not in profile.metrics:
        raise UserError(f"device profile {profile.name!r} reports no latency_ms: widths are read off a measured latency profile", field="device")
    if context not in CONTEXTS:
        raise UserError(f"context {context!r} is not known; valid: {', '.join(CONTEXTS)}", field="context")
    tolerance = CONTEXTS[context] if tolerance is None else float(tolerance)
    if not 0.0 <= tolerance < 1.0:
        raise UserError(f"tolerance must be in [0, 1), got {tolerance}", field="tolerance")
    plan = _group_plan(space)
    if context == "step":
        from automc.device_profiles.steps import derive_steps

        groups, evidence = derive_steps(profile, model, example_input, plan, exact_builder(model, space, plan, "step"), min_efficiency=tolerance, rounds=rounds, progress=progress)
        return {"format": FORMAT, "context": context, "tolerance": tolerance, "measured_on": _where(profile, space, evidence), "groups": groups}
    if context == "layer":
        curves, shapes = _curves_alone(profile, model, space, example_input, plan, progress)
        scale, extra = None, {"layer_shapes": shapes}
    else:
        curves, scale = _curves_in_model(profile, model, space, example_input, plan, progress)
        extra = {"models": 1 + sum(len(c) - 1 for c in curves.values()), "full_model_ms": round(scale, 6)}
    groups = {group: {"channels": max(curve), "widths": efficient_widths(curve, tolerance, scale), "latency_ms": {str(c): round(v, 6) for c, v in sorted(curve.items())}} for group, curve in curves.items()}
    return {
        "format": FORMAT,
        "context": context,
        "tolerance": tolerance,
        "measured_on": _where(profile, space, extra),
        "groups": groups,
    }


def _where(profile: DeviceProfile, space: SearchSpace, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Where and when widths were measured (device, library versions, space) and how."""
    return {**profile.describe(), "profile_config": profile.config(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "space": space.name, "space_config": space.config(), **extra}
