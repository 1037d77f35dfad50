"""The arguments the SB3 agents pass through to their stable-baselines3 algorithm: which a
config may set, and which the algorithm gets without being asked (recorded by the run, see
:mod:`automc.search.agent_settings`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from automc.errors import UserError
from automc.search.agent_settings import keyword_defaults

# SB3 arguments automc always sets itself: never taken from a config, never recorded
FIXED = frozenset({"self", "policy", "env", "seed", "device", "verbose", "policy_kwargs", "learning_rate", "_init_setup_model"})


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
