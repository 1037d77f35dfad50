"""The settings an agent runs with, recorded by a run so that a resumed run keeps them.

A run's ``config.yaml`` holds what the user wrote; the agent fills in the rest from its
defaults. When automc changes a default (DDPG's actor learning rate, the controller's token
prior, PPO's starting σ all did), a run started before and resumed after would otherwise go on
with a different agent than it started with. So the first start writes every setting the
agent ran with to ``RUN/agent_settings.json`` (:meth:`automc.run.RunDir.write_agent_settings`),
and later starts build the agent from that record, the user's config over it.

An agent's settings are the keyword parameters of its class chain (``seed`` and
``constraints`` are the run's, not settings): the user's value, else what the agent says it
resolved (:meth:`~automc.search.agent.Agent.extra_settings`: an RL agent's ``actions``, the
controller's ``auto`` token prior, and every argument an RL agent hands its stable-baselines3
algorithm without the user asking — automc's own values such as DDPG's ``gamma`` 0 and SB3's
defaults for the rest, so an upgrade of either does not change a resumed run), else the
default. A setting added to an agent after runs began recording (the RL agents'
``observation``) replays, for a record that lacks it, the value such runs ran with
(``Agent.added_settings``), not today's default. Only values that survive JSON are
recorded. Not covered: settings derived from recorded ones (DDPG's ``train_freq`` from
``episodes_in_flight``, PPO's ``batch_size`` from ``episodes_per_update``), and the Optuna
samplers' internals, which the Optuna agents do not pass through.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

RUN_INPUTS = frozenset({"self", "space", "objectives", "seed", "constraints"})


def _init_params(cls: type) -> list[inspect.Parameter]:
    """The parameters of every ``__init__`` in ``cls``'s chain, base classes first."""
    inits = [k.__dict__["__init__"] for k in reversed(cls.__mro__) if k is not object and "__init__" in k.__dict__]
    return [p for init in inits for p in inspect.signature(init).parameters.values()]


def accepted(cls: type) -> dict[str, Any]:
    """Keyword parameters of ``cls``'s ``__init__`` chain and their defaults (``inspect._empty``
    where none), the most derived class winning."""
    return {p.name: p.default for p in _init_params(cls) if p.name not in RUN_INPUTS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def keyword_defaults(cls: type, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The parameters of ``cls.__init__`` that have a default, with it (a library class's: what
    the library uses when the caller passes nothing), less ``exclude``."""
    return {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.default is not p.empty and p.name not in exclude}


def resolved_settings(agent: Any, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``agent`` (built from the user's ``config``) runs with, as JSON values."""
    config = dict(config or {})
    out: dict[str, Any] = {}
    for name, default in accepted(type(agent)).items():
        if default is not inspect.Parameter.empty:
            out[name] = default
    # values the agent resolved (``None``/``auto`` defaults); not its attributes in general,
    # which may change after construction (the RL agents' ``budget`` becomes the target's)
    out.update(agent.extra_settings())
    out.update(config)  # what the user wrote is what is replayed
    return {k: v for k, v in out.items() if _json_safe(v)}


def replayed_config(cls: type, recorded: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config a resumed run builds ``cls`` with: its recorded settings that the class still
    takes — its parameters, and for one taking ``**kwargs`` what it hands on
    (``cls.passed_through()``: an SB3 argument that an upgrade removed is left out) — with
    the value a setting added since had before it existed where the record lacks it
    (``cls.added_settings``), the user's config over them."""
    takes_any = any(p.kind is p.VAR_KEYWORD for p in _init_params(cls))
    through = getattr(cls, "passed_through", lambda: None)() if takes_any else frozenset()
    names = accepted(cls)
    kept = {k: v for k, v in recorded.items() if k in names or (takes_any and (through is None or k in through))}
    return {**getattr(cls, "added_settings", {}), **kept, **dict(config or {})}


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == (list(value) if isinstance(value, tuple) else value)
    except (TypeError, ValueError):
        return False
