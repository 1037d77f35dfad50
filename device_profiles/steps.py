"""The channel step each group should be rounded to, chosen from measured whole models.

A convolution runtime works in blocks of channels — 8 floats with AVX2, 16 with AVX-512 in
onnxruntime's blocked (NCHWc) kernels — so a channel count off the block costs about as much
as the next multiple up. Reading that block off one group's latency curve is hopeless on a
busy CPU: one group changes a ResNet-20's latency by a few percent, about the run-to-run
noise. The block is a property of the machine, though, not of the group, so this module
measures it on *whole pruned models*, where every group moves at once:

1. **Global step.** For each candidate block ``B`` (32, 16, 8, 4, 2), a probe model prunes
   every group to an *odd* multiple of ``B/2`` near ``PROBE_RATIO`` of its channels (on the
   grid of ``B/2``, off the grid of ``B``), and its twin keeps ``B/2`` more channels per group
   (a multiple of ``B``). The twins and probes are measured side by side (``rounds``
   interleaved rounds, each probe next to its twin). The last ``B/2`` channels *pay* when the
   latency they save is at least ``min_efficiency`` (0.5) of the MACs they remove (both
   relative to the twin); on a runtime that pads to ``B`` they save nothing. Scanning from the
   coarsest block down, the step is the first ``B`` whose half-block does not pay: the
   runtime's block. The efficiency is taken round by round, probe over its neighbouring twin
   (a machine state lasting seconds divides out), and its median decides. A verdict the step
   rests on that fewer than ``AGREE`` of the rounds agree with is not settled: ``rounds``
   more rounds are measured, up to ``MAX_ROUND_FACTOR`` times as many (on a 2-core AMD EPYC
   guest at two onnxruntime threads, medians of 5 rounds of whole-model times read 2 once and
   32 once where the block is 8, and 32 in 1 of 8 repeats of ``benchmarks/step_repeat.py``;
   the paired rounds read 8 in all 8). The file keeps every round.
2. **Narrow groups.** A group narrower than twice the chosen step cannot take it. It is
   measured alone at half its channels (its largest fitting step) against the full model,
   side by side; when the latency it saves is under ``min_efficiency`` of the MACs it
   removes — on a 16-wide machine a 16-channel group at 8 still runs a 16-wide kernel — it is
   left unpruned (widths: its full count only), otherwise it gets the smaller step.

Each group's widths are then the multiples of its step it can reach, and its full count.
The result is a widths file (:mod:`automc.device_profiles.widths`, ``context: step``) with
the probes, the per-group checks and where they were measured: a space reading it builds the
same counts on resume and export, whatever machine runs them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.errors import UserError
from automc.measure.profiles import DeviceProfile

STEPS = (1, 2, 4, 8, 16, 32)
AGREE = 0.8  # a verdict stands when this share of the rounds agrees with it; else more rounds
MAX_ROUND_FACTOR = 3  # ... up to this many times the rounds asked for
PROBE_RATIO = 0.625  # probes keep about this share of every group: between half and full
# channels pay when they save at least this share of the latency their MACs would (latency
# saved relative / MACs removed relative); below it the runtime pads them away
MIN_EFFICIENCY = 0.5


def fitting_step(channels: int, step: int) -> int:
    """The largest candidate step ≤ ``step`` that still lets a group of ``channels`` keep half
    of them (at least one step below its full count)."""
    fits = [s for s in STEPS if s <= step and 2 * s <= channels]
    return max(fits) if fits else 1


def step_widths(channels: int, step: int, lowest: int) -> list[int]:
    """Multiples of ``step`` from the smallest ≥ ``lowest`` up to ``channels``, and ``channels``."""
    first = max(step, -(-lowest // step) * step)
    return sorted({*range(first, channels + 1, step), channels})


def probe_count(channels: int, step: int, lowest: int) -> int | None:
    """An odd multiple of ``step`` in [``lowest``, ``channels``) nearest ``PROBE_RATIO`` of
    ``channels`` (ties: the larger); None when there is none."""
    odd = [k * step for k in range(1, channels // step + 1, 2) if lowest <= k * step < channels]
    return min(odd, key=lambda c: (abs(c - PROBE_RATIO * channels), -c)) if odd else None


def half(channels: int, step: int) -> int:
    """About half of ``channels`` on the grid of ``step`` (at least one step)."""
    return max(step, int(channels / 2 / step + 0.5) * step)


def _side_by_side(profile: DeviceProfile, models: Mapping[str, nn.Module], example_input: torch.Tensor, rounds: int, progress: Callable[[int, int], None] | None, count: list[int], times: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Each model's latency in ``rounds`` more interleaved rounds (the order alternating), added
    to ``times``: one list per model, one entry per round."""
    names = list(models)
    times = times if times is not None else {}
    for n in names:
        times.setdefault(n, [])
    done = len(times[names[0]])
    for r in range(done, done + rounds):
        for name in names if r % 2 == 0 else reversed(names):
            times[name].append(profile.measure(models[name], example_input).values["latency_ms"])
            count[0] += 1
            if progress:
                progress(count[0], count[1])
    return times


def paired_efficiency(probe: list[float], twin: list[float], removed: float) -> tuple[float, list[float]]:
    """Latency saved per MACs removed (both relative to the twin), round by round — probe and
    twin measured next to each other, so a machine state lasting seconds divides out — and its
    median over the rounds."""
    per_round = [(1.0 - p / t) / removed if removed > 0 else 0.0 for p, t in zip(probe, twin)]
    return statistics.median(per_round), per_round


def settled(per_round: list[float], threshold: float) -> bool:
    """Whether at least ``AGREE`` of the rounds fall on the median's side of ``threshold``."""
    pays = statistics.median(per_round) >= threshold
    return sum((e >= threshold) == pays for e in per_round) >= AGREE * len(per_round)


def derive_steps(
    profile: DeviceProfile,
    model: nn.Module,
    example_input: torch.Tensor,
    groups: Mapping[str, tuple[str, float, list[int]]],
    build: Callable[[Mapping[str, int]], nn.Module],
    *,
    min_efficiency: float = MIN_EFFICIENCY,
    rounds: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The global step and each group's widths on ``profile`` (``groups``: group →
    (dimension, lowest ratio, reachable counts), as ``widths._group_plan`` gives; ``build``:
    the model with given groups at exact counts, ``widths.exact_builder``).

    Returns (group → ``{channels, step, widths[, check]}``, the evidence: probe and twin per
    block, the chosen step, the full model's latency, the measurements made)."""
    if rounds < 1:
        raise UserError(f"rounds must be at least 1, got {rounds}", field="rounds")
    channels = {g: counts[-1] for g, (_, _, counts) in groups.items()}
    lowest = {g: counts[0] for g, (_, _, counts) in groups.items()}
    blocks = [b for b in sorted(STEPS[1:], reverse=True) if any(probe_count(c, b // 2, lowest[g]) for g, c in channels.items())]
    pairs: dict[str, nn.Module] = {"full": model.eval()}
    for b in blocks:
        probe = {g: probe_count(c, b // 2, lowest[g]) or c for g, c in channels.items()}
        pairs[f"{b}/probe"] = build(probe)
        pairs[f"{b}/twin"] = build({g: min(c, k + b // 2) if k < c else c for (g, c), k in zip(channels.items(), probe.values())})
    count = [0, rounds * len(pairs)]  # measurements done, planned
    macs = {name: float(analyze(m, example_input).macs) for name, m in pairs.items()}
    base_macs = macs["full"]
    removed = {b: 1.0 - macs[f"{b}/probe"] / macs[f"{b}/twin"] for b in blocks}
    times = _side_by_side(profile, pairs, example_input, rounds, progress, count)
    while True:  # until every verdict the step rests on is settled, or the rounds run out
        eff = {b: paired_efficiency(times[f"{b}/probe"], times[f"{b}/twin"], removed[b]) for b in blocks}
        chosen = next((b for b in blocks if eff[b][0] < min_efficiency), 1)
        open_ = [b for b in blocks if b >= chosen and not settled(eff[b][1], min_efficiency)]
        if not open_ or len(times["full"]) >= MAX_ROUND_FACTOR * rounds:
            break
        count[1] += rounds * len(pairs)
        _side_by_side(profile, pairs, example_input, rounds, progress, count, times)
    latency = {n: statistics.median(ts) for n, ts in times.items()}
    table: dict[str, dict[str, Any]] = {}
    for b in blocks:
        p, t = f"{b}/probe", f"{b}/twin"
        table[str(b)] = {
            "probe_ms": round(latency[p], 6),
            "twin_ms": round(latency[t], 6),
            "probe_macs_ratio": round(macs[p] / base_macs, 4),
            "twin_macs_ratio": round(macs[t] / base_macs, 4),
            "efficiency": round(eff[b][0], 4),
            "per_round": [round(e, 4) for e in eff[b][1]],
            "settled": settled(eff[b][1], min_efficiency),
        }

    narrow = [g for g, c in channels.items() if fitting_step(c, chosen) < chosen]
    count[1] += 2 * rounds * len(narrow)
    out: dict[str, Any] = {}
    for g, c in channels.items():
        step = fitting_step(c, chosen)
        entry: dict[str, Any] = {"channels": c, "step": step}
        if step < chosen:  # narrower than the step: worth pruning at a smaller one?
            kept = max(half(c, step), lowest[g])
            pruned = build({g: kept})
            pair = _side_by_side(profile, {"full": model, "half": pruned}, example_input, rounds, progress, count)
            cut = 1.0 - float(analyze(pruned, example_input).macs) / base_macs
            saved = 1.0 - statistics.median(pair["half"]) / statistics.median(pair["full"])
            group_eff, per_round = paired_efficiency(pair["half"], pair["full"], cut)
            entry["check"] = {"kept": kept, "latency_saved": round(saved, 4), "macs_removed": round(cut, 4), "efficiency": round(group_eff, 4), "per_round": [round(e, 4) for e in per_round]}
            if group_eff < min_efficiency:
                entry["step"] = c
        entry["widths"] = step_widths(c, entry["step"], groups[g][2][0])
        out[g] = entry
    evidence = {
        "step": chosen,
        "rounds": len(times["full"]),
        "rounds_asked": rounds,
        "min_efficiency": min_efficiency,
        "full_model_ms": round(latency["full"], 6),
        "probes": table,
        "rounds_ms": {n: [round(v, 6) for v in ts] for n, ts in times.items()},
        "measurements": count[0],
    }
    return out, evidence
