"""What an RL agent's action means to :class:`~automc.search.gym_env.CompressionEnv`: a
continuous action in [-1, 1] and the unit value it sets, the number of tokens a discrete
controller chooses from, and the bisection the env's clamp and balanced value use (a
predicate on a 0.01 grid of unit values)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from automc.compress.spaces import Choice, SearchSpace


def token_count(space: SearchSpace, grid: int) -> int:
    """How many tokens a discrete controller chooses from at each step: the least common
    multiple of the choices' sizes (so every value of a choice gets the same number of
    tokens) and ``grid`` when the space has real-valued dimensions; the largest of them if
    that multiple would exceed 64."""
    sizes = {len(d.values) for d in space.dimensions.values() if isinstance(d, Choice)}
    if any(not isinstance(d, Choice) for d in space.dimensions.values()):
        sizes.add(int(grid))
    n = math.lcm(*sizes) if sizes else int(grid)
    return max(2, n if n <= 64 else max(sizes))


def to_unit(action: Any) -> float:
    """A continuous action in [-1, 1] (clipped) as the unit value it sets, in [0, 1]."""
    return (float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0)) + 1.0) / 2.0


def from_unit(u: float) -> float:
    """The continuous action that sets unit value ``u``."""
    return 2.0 * float(u) - 1.0


def last_true(pred: Callable[[int], bool], n: int = 101) -> int:
    """The last i in [0, n) with ``pred(i)`` for a predicate true on a prefix (-1: none)."""
    lo, hi = -1, n  # pred(lo) true (or lo = -1), pred(hi) false (or hi = n)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            lo = mid
        else:
            hi = mid
    return lo
