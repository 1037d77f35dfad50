"""Timing a candidate next to a reference: latency that a busy, shared CPU does not move.

On a virtualised 2-core CPU the machine's speed changes in states that last seconds: during
a search on an AMD EPYC guest, a quarter to three fifths of the candidates measured over 20%
slower than the same models measured again side by side afterwards
(``benchmarks/latency_aware.py``, docs/device_profiles.md). A state that lasts seconds slows
a candidate and a reference timed in alternating chunks alike, so their ratio is the
candidate's own cost; a profile multiplies it by the reference's latency measured once, when
the run started, and every candidate of the run stands on that one figure.

:func:`paired_timing` alternates ``chunk`` calls of each function and, per round of one chunk
each, takes the ratio of their fastest and of their median calls; the medians of those
per-round ratios are the result.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PairedTiming:
    """Candidate / reference, per round then the median over rounds: of the fastest call of
    each chunk (``ratio_min``) and of each chunk's median call (``ratio_median``)."""

    ratio_min: float
    ratio_median: float
    rounds: int
    repeats: int  # calls timed of each function
    ratio_iqr: float  # inter-quartile range of the per-round ratios (of minima)
    reference_min_ms: float  # the reference's fastest call seen: what the machine ran at
    seconds: float


def _chunk(fn: Callable[[], Any], n: int, clock: Callable[[], float]) -> list[float]:
    out = []
    for _ in range(n):
        t0 = clock()
        fn()
        out.append((clock() - t0) * 1e3)
    return out


def _quartiles(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


def paired_timing(
    candidate: Callable[[], Any],
    reference: Callable[[], Any],
    *,
    warmup: int = 50,
    chunk: int = 20,
    min_repeats: int = 100,
    max_repeats: int = 5000,
    max_seconds: float = 5.0,
    rel_tol: float = 0.005,
    clock: Callable[[], float] = time.perf_counter,
) -> PairedTiming:
    """Time ``candidate`` and ``reference`` in alternating chunks of ``chunk`` calls (after
    ``warmup`` untimed calls of each) until at least ``min_repeats`` calls of each ran and two
    consecutive medians of the per-round ratio agree within ``rel_tol``, or ``max_repeats`` /
    ``max_seconds`` is reached."""
    if chunk < 1 or min_repeats < 1:
        raise ValueError(f"chunk and min_repeats must be >= 1, got {chunk} and {min_repeats}")
    for _ in range(warmup):
        candidate()
        reference()
    mins: list[float] = []
    meds: list[float] = []
    ref_min = float("inf")
    start = clock()
    previous = float("inf")
    stable = 0
    while True:
        a = _chunk(candidate, chunk, clock)
        b = _chunk(reference, chunk, clock)
        ref_min = min(ref_min, min(b))
        mins.append(min(a) / min(b))
        meds.append(statistics.median(a) / statistics.median(b))
        ratio = statistics.median(mins)
        stable = stable + 1 if abs(ratio - previous) <= rel_tol * ratio else 0
        previous = ratio
        done = len(mins) * chunk
        if (done >= min_repeats and stable >= 2) or done >= max_repeats or clock() - start >= max_seconds:
            break
    return PairedTiming(statistics.median(mins), statistics.median(meds), len(mins), len(mins) * chunk, _quartiles(mins), ref_min, clock() - start)
