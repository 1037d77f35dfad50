"""The arguments of the SB3 agents: those they pass through to their stable-baselines3
algorithm — which a config may set, and which the algorithm gets without being asked
(recorded by the run, see :mod:`automc.search.agent_settings`) — and the checks of their own
network and environment settings."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from automc.errors import UserError, require_number
from automc.search.agent_settings import keyword_defaults

# SB3 arguments automc always sets itself: never taken from a config, never recorded
FIXED = frozenset({"self", "policy", "env", "seed", "device", "verbose", "policy_kwargs", "learning_rate", "_init_setup_model"})


# the environment's settings (CompressionEnv's ``actions`` and ``observation``): value -> meaning
ENV_SETTINGS = {
    "actions": {"absolute": "AMC's: the action is the unit value", "relative": "0 spreads the budget left evenly"},
    "observation": {"fixed": "layer features on fixed scales", "minmax": "AMC's: each stretched to [0, 1] over the layers"},
}

# an agent's algorithm: the SB3 class, its policy's name, the policy settings automc passes
Algorithm = tuple[type, str, Mapping[str, Any]]


def settable(algorithm: Algorithm, derived: frozenset[str]) -> frozenset[str]:
    """The arguments of the algorithm and its policy a config may set: all but those automc
    sets (:data:`FIXED`) or the agent derives (``derived``)."""
    algo, _, extra = algorithm
    return frozenset((set(inspect.signature(algo.__init__).parameters) - FIXED - derived) | set(extra))


def check_algo_kwargs(agent: str, algorithm: Algorithm, derived: frozenset[str], kwargs: Mapping[str, Any]) -> None:
    """Reject a setting the algorithm (and its policy) does not take or that the agent derives
    itself, in one line listing those it does take."""
    valid = sorted(settable(algorithm, derived))
    for key in kwargs:
        if key not in valid:
            raise UserError(f"agent {agent!r} has no setting {key!r}; besides its own it takes {algorithm[0].__name__}'s: {', '.join(valid)}", field=f"agent.config.{key}")


def unasked(algorithm: Algorithm, ours: Mapping[str, Any], exclude: frozenset[str]) -> dict[str, Any]:
    """What the algorithm runs with where the config says nothing: its own defaults, automc's
    values (``ours``) over them, and the policy settings; less what the agent derives or
    computes from its other settings (``exclude``)."""
    algo, _, extra = algorithm
    return {**keyword_defaults(algo, FIXED | exclude), **ours, **extra}


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *, integer: bool = False, low_open: bool = False) -> None:
    """:func:`~automc.errors.require_number` for the agent setting ``name`` (field ``agent.config.<name>``)."""
    require_number(name, value, low, high, integer=integer, low_open=low_open, field=f"agent.config.{name}")


def check_own_settings(agent: str, net_arch: Any, env_settings: Mapping[str, str]) -> None:
    """Reject a ``net_arch`` that is not a list of layer widths, or an environment setting
    (:data:`ENV_SETTINGS`) with a value it does not take, in one line naming the field."""
    if isinstance(net_arch, (str, bytes)) or not isinstance(net_arch, Sequence) or not net_arch or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in net_arch):
        raise UserError(f"net_arch must be a list of layer widths (integers >= 1), got {net_arch!r}", field="agent.config.net_arch")
    for key, value in env_settings.items():
        if value not in ENV_SETTINGS[key]:
            allowed = " or ".join(f"{v!r} ({why})" for v, why in ENV_SETTINGS[key].items())
            raise UserError(f"agent {agent!r} {key} must be {allowed}, got {value!r}", field=f"agent.config.{key}")
