"""Reward functions: ``(metrics, **kwargs) -> float``, pure, registered under ``automc.rewards``.

Metrics are the evaluator's (``accuracy``, ``loss``) and the profiles' (``macs``,
``latency_ms``, ``energy_mj``, ``size_bytes``, …) plus ``base_accuracy`` and ``base_<metric>``
of the uncompressed model, which the runner adds so relative rewards need no other input.
A reward reaches user code only as ``"package.module:function"`` (or an entry point).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from automc.registry import create, registry

REWARDS = registry("automc.rewards")
Reward = Callable[..., float]


def _get(metrics: Mapping[str, float], name: str) -> float:
    if name not in metrics:
        raise KeyError(f"the reward needs metric {name!r}, which no profile reported (have: {', '.join(sorted(metrics))})")
    return float(metrics[name])


def _overshoot(metrics: Mapping[str, float], budget: Mapping[str, float] | None) -> float:
    """Sum of relative budget overshoots (0 when every metric is within its limit)."""
    return sum(max(0.0, _get(metrics, m) / float(limit) - 1.0) for m, limit in (budget or {}).items())


def amc(metrics: Mapping[str, float], *, flops_metric: str = "macs") -> float:
    """AMC's resource-aware reward: ``-error × log(FLOPs)``."""
    return -(1.0 - _get(metrics, "accuracy")) * math.log(max(_get(metrics, flops_metric), 1.0))


def accuracy(metrics: Mapping[str, float], *, budget: Mapping[str, float] | None = None, penalty: float = 1.0) -> float:
    """Accuracy, minus ``penalty`` × the relative overshoot of any budgeted metric.

    With an RL agent's action clamp the budget always holds and this is plain accuracy (AMC).
    """
    return _get(metrics, "accuracy") - penalty * _overshoot(metrics, budget)


def mnas(
    metrics: Mapping[str, float],
    *,
    target: float,
    metric: str = "latency_ms",
    mode: str = "soft",
    w: float = -0.07,
    alpha: float = 0.0,
    beta: float = -1.0,
) -> float:
    """MNasNet: ``accuracy × (m / target)^w``; soft: w = -0.07; hard: w = alpha (0) within
    the target and beta (-1) beyond it."""
    if target <= 0:
        raise ValueError(f"mnas target must be > 0, got {target}")
    ratio = _get(metrics, metric) / float(target)
    if mode == "hard":
        exponent = alpha if ratio <= 1 else beta
    elif mode == "soft":
        exponent = w
    else:
        raise ValueError(f"mnas mode must be 'soft' or 'hard', got {mode!r}")
    return _get(metrics, "accuracy") * ratio**exponent


def haq(metrics: Mapping[str, float], *, budget: Mapping[str, float] | None = None, scale: float = 0.1, penalty: float = 1.0) -> float:
    """HAQ: ``scale × (accuracy - base_accuracy)`` (in points), penalised beyond the budget."""
    delta = 100.0 * (_get(metrics, "accuracy") - _get(metrics, "base_accuracy"))
    return scale * delta - penalty * _overshoot(metrics, budget)


def weighted(metrics: Mapping[str, float], *, weights: Mapping[str, float]) -> float:
    """``Σ weight × metric`` (negative weights for costs), e.g. {accuracy: 1, latency_ms: -0.05}."""
    if not weights:
        raise ValueError("weighted reward needs weights: {metric: weight, ...}")
    return float(sum(float(w) * _get(metrics, m) for m, w in weights.items()))


def resolve_reward(name: str, kwargs: Mapping[str, Any] | None = None) -> Callable[[Mapping[str, float]], float]:
    """The registered (or ``module:function``) reward with its keyword arguments bound."""
    bound = create(REWARDS.group, name, config=kwargs, partial=True)

    def reward(metrics: Mapping[str, float]) -> float:
        value = bound(metrics)
        if not isinstance(value, numbers.Real) and callable(getattr(value, "item", None)) and getattr(value, "ndim", None) == 0:
            value = value.item()  # a 0-d tensor or NumPy array
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"reward {name!r} returned {type(value).__name__} {value!r}: a reward must return a real number")
        return float(value)

    reward.__name__ = getattr(bound, "__name__", name)
    return reward
