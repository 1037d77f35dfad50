"""Hardware-friendly channel counts per group, read off measured kernels.

A runtime pads channels to its vector width and picks kernels by shape, so a layer's latency
is a staircase in its channel count: pruning 16 channels to 12 may save nothing, and a free
count can even be slower than the next larger one. One global ``round_to`` guesses the
step; this module measures it per group instead.

``automc profile widths`` measures, on a latency profile (``onnxruntime-cpu`` by default),
every layer of every channel group alone at every count the space can reach, as the latency
table builder does (each distinct layer shape once, the empty model's time subtracted): a
group's latency at ``c`` kept channels is the sum of its producers at ``c`` outputs and its
consumers at ``c`` inputs (every other width full). Walking down from the full width, a count is kept when it is
at least ``tolerance`` faster than the last count kept: what remains are the right-hand edges
of the staircase's steps — the most channels for each latency. ``channel_pruning`` with
``widths: FILE`` rounds every group's kept channels to the nearest of its widths.

The file (``automc.widths/1``) records where it was measured (device, threads, library
versions, date), the tolerance and, per group, the widths and the latency curve they came
from: widths measured on one CPU are that CPU's (an AVX2 and an AVX-512 machine differ).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from automc.device_profiles.lut_keys import layer_options, make_layer
from torch import nn

from automc.compress.spaces import SearchSpace
from automc.errors import UserError
from automc.measure.profiles import DeviceProfile

FORMAT = "automc.widths/1"


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


def efficient_widths(curve: Mapping[int, float], tolerance: float) -> list[int]:
    """The counts kept walking down from the largest: each at least ``tolerance`` faster than
    the last one kept (the right-hand edges of the latency staircase), ascending."""
    counts = sorted(curve, reverse=True)
    kept = [counts[0]]
    for c in counts[1:]:
        if curve[c] <= (1.0 - tolerance) * curve[kept[-1]]:
            kept.append(c)
    return sorted(kept)


def derive_widths(
    profile: DeviceProfile,
    model: nn.Module,
    space: SearchSpace,
    example_input: torch.Tensor,
    *,
    tolerance: float = 0.03,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Per channel group of ``space``, its latency at every reachable count (its layers
    measured alone on ``profile``, each distinct layer shape once) and its efficient widths."""
    if "latency_ms" not in profile.metrics:
        raise UserError(f"device profile {profile.name!r} reports no latency_ms: widths are read off a measured latency profile", field="device")
    if not 0.0 <= tolerance < 1.0:
        raise UserError(f"tolerance must be in [0, 1), got {tolerance}", field="tolerance")
    options = layer_options(model, space, example_input, 1)
    plan: dict[str, list[tuple[int, list[tuple[str, int, int]]]]] = {}
    for dim, d in space.dimensions.items():
        info = dict(d.info)
        if not dim.endswith(":ratio") or "producers" not in info:
            continue
        full = int(info["channels"])
        lowest = max(1, int(full * float(getattr(d, "low", 0.0)) + 0.5))
        plan[dim.rsplit(":", 1)[0]] = [(c, _jobs(options, info, c)) for c in range(lowest, full + 1)]
    if not plan:
        raise UserError("the search space has no channel groups: widths are for channel_pruning (or joint) spaces")
    shapes = sorted({job for rows in plan.values() for _, jobs in rows for job in jobs})
    overhead = profile.measure(nn.Identity(), torch.zeros(1, 1)).values["latency_ms"]
    measured: dict[tuple[str, int, int], float] = {}
    for n, (key, cin, cout) in enumerate(shapes):
        layer, x = make_layer(key, cin, cout)
        measured[(key, cin, cout)] = max(0.0, profile.measure(layer, x).values["latency_ms"] - overhead)
        if progress:
            progress(n + 1, len(shapes))
    groups: dict[str, Any] = {}
    for group, rows in plan.items():
        curve = {c: sum(measured[job] for job in jobs) for c, jobs in rows}
        groups[group] = {"channels": rows[-1][0], "widths": efficient_widths(curve, tolerance), "latency_ms": {str(c): round(v, 6) for c, v in curve.items()}}
    return {
        "format": FORMAT,
        "tolerance": tolerance,
        "measured_on": {**profile.describe(), "profile_config": profile.config(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "space": space.name, "space_config": space.config(), "layer_shapes": len(shapes)},
        "groups": groups,
    }


def load_widths(source: str | Path | Mapping[str, Any]) -> dict[str, list[int]]:
    """Group → allowed kept-channel counts from a widths file (or its parsed content)."""
    if isinstance(source, Mapping):
        data, where = dict(source), "widths"
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"widths file {path} does not exist: write one with 'automc profile widths'", field="widths")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"widths file {path} is not valid JSON ({exc.msg}): write it again with 'automc profile widths'", field="widths") from None
        where = str(path)
    if data.get("format") != FORMAT or not isinstance(data.get("groups"), Mapping):
        raise UserError(f"{where} is not an automc widths file (format {data.get('format')!r}, expected {FORMAT!r})", field="widths")
    out: dict[str, list[int]] = {}
    for group, entry in data["groups"].items():
        widths = entry.get("widths") if isinstance(entry, Mapping) else None
        if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise UserError(f"{where}: group {group!r} needs a list of positive channel counts under 'widths'", field="widths")
        out[str(group)] = sorted(set(widths))
    return out
