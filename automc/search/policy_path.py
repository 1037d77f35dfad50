"""The one path along which a policy is made cheaper or dearer as a whole.

Every dimension's unit value ``u`` (0 = its cheapest setting, 1 = the uncompressed one) moves
by the same ``s``: towards 0 as ``u·(1 + s)`` for ``s < 0``, towards 1 as ``u + s·(1 - u)``
for ``s > 0``. The relative preferences between layers survive and the cost is monotone in
``s``, so bisection finds the largest ``s`` that meets a limit. The runner's projection of
proposals (:mod:`automc.search.projection`), DDPG's warm-up policies
(:meth:`automc.search.gym_env.CompressionEnv.warmup_units`) and a relative action (one unit
value moved from the step's balanced one, :meth:`~automc.search.gym_env.CompressionEnv.unit_of`)
all move along it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from automc.compress.dimensions import Dimension

Params = dict[str, Any]


def moved(u: float, s: float) -> float:
    """One unit value ``u`` moved by ``s`` along the path."""
    return u * (1.0 + s) if s < 0 else u + s * (1.0 - u)


def step_to(u0: float, u: float) -> float:
    """The ``s`` that moves ``u0`` to ``u`` (the inverse of :func:`moved`; 0 where ``u0`` is 1
    and ``u`` is not below it, as every ``s >= 0`` leaves it there)."""
    if u < u0:
        return u / u0 - 1.0
    return (u - u0) / (1.0 - u0) if u0 < 1.0 else 0.0


def at(dims: Mapping[str, Dimension], params: Mapping[str, Any], s: float) -> Params:
    """``params`` moved by ``s`` along the path (``s`` in [-1, 1]; 0: unchanged)."""
    if s == 0.0:
        return dict(params)
    out = dict(params)
    for k, d in dims.items():
        out[k] = d.from_unit(moved(float(d.to_unit(params[k])), s))
    return out


def largest(dims: Mapping[str, Dimension], params: Mapping[str, Any], lo: float, hi: float, ok: Callable[[Params], bool], steps: int) -> float:
    """The largest ``s`` in [lo, hi] with ``ok(at(s))``, by ``steps`` bisections (``ok(at(lo))``
    is assumed: the caller knows the cheapest end fits)."""
    if ok(at(dims, params, hi)):
        return hi
    return _bisect(dims, params, lo, hi, ok, lambda good, bad, done: done >= steps)


def largest_near(dims: Mapping[str, Dimension], params: Mapping[str, Any], guess: float, hi: float, ok: Callable[[Params], bool], tol: float = 2**-7, first: float = 1 / 32) -> float:
    """The largest ``s`` in [-1, ``hi``] with ``ok(at(s))`` (to within ``tol``), found near
    ``guess``: steps of ``first``, doubling, walk from it (down while it fails, up while it
    holds) until the answer is bracketed, then bisection. Where each ``ok`` builds a model and
    the guess comes from a good estimate, a few builds do instead of a bisection over the
    whole path. ``ok(at(-1))`` is assumed: the caller knows the cheapest end fits."""
    guess = min(guess, hi)
    good: float | None = guess if ok(at(dims, params, guess)) else None
    bad: float | None = None if good is not None else guess
    step = first
    while good is None:
        t = max(-1.0, bad - step)  # type: ignore[operator]
        if t <= -1.0 or ok(at(dims, params, t)):
            good = t
        else:
            bad, step = t, 2 * step
    while bad is None and good < hi:
        t = min(hi, good + step)
        if ok(at(dims, params, t)):
            good, step = t, 2 * step
        else:
            bad = t
    if bad is None:
        return good
    return _bisect(dims, params, good, bad, ok, lambda lo, hi, done: hi - lo <= tol)


def _bisect(dims: Mapping[str, Dimension], params: Mapping[str, Any], good: float, bad: float, ok: Callable[[Params], bool], stop: Callable[[float, float, int], bool]) -> float:
    """Narrow ``[good, bad]`` (``ok`` at ``good``, not at ``bad``) by halving until ``stop(good,
    bad, halvings)``; the last ``good``."""
    done = 0
    while not stop(good, bad, done):
        mid = (good + bad) / 2
        if ok(at(dims, params, mid)):
            good = mid
        else:
            bad = mid
        done += 1
    return good
