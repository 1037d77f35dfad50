"""The agent contract: ``ask() -> params | None``, ``tell(candidate)``, state round trip.

Agents are plugins (entry-point group ``automc.agents``). They see the search space and the
objectives, never the model, the evaluator or the store: every candidate's outcome reaches
them through :meth:`Agent.tell`. On resume the runner first replays every finished candidate
through ``tell`` (in order) and then restores ``state_dict`` where one was saved, so an agent
continues rather than restarts without the runner knowing how it learns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from automc.search.candidate import Candidate
from automc.config import Objective
from automc.errors import UserError
from automc.registry import registry
from automc.compress.spaces import SearchSpace

AGENTS = registry("automc.agents")


class Agent(ABC):
    """Base class of search agents. ``multi_objective`` agents get the objective values of
    each candidate; the others optimise the scalar reward."""

    name: ClassVar[str] = ""
    multi_objective: ClassVar[bool] = False
    # How many proposals may await their outcome at once (None: any; parallel workers use it).
    max_outstanding: ClassVar[int | None] = None

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.seed = int(seed)

    @abstractmethod
    def ask(self) -> dict[str, Any] | None:
        """The next policy to evaluate, or None when the agent has nothing more to try."""

    @abstractmethod
    def tell(self, candidate: Candidate) -> None:
        """The outcome of a policy this agent (or a previous run of it) proposed."""

    def state_dict(self) -> dict[str, Any]:
        """Anything replaying ``tell`` cannot rebuild (networks, buffers); JSON or tensors."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` after the history was replayed."""

    def close(self) -> None:
        """Release threads or processes (the runner calls it when the search ends)."""


def build_agent(name: str, space: SearchSpace, objectives: Sequence[Objective], *, seed: int, config: Mapping[str, Any] | None = None) -> Agent:
    cls = AGENTS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise UserError(f"agent {name!r} resolves to {cls!r}, which is not an automc.search.agent.Agent subclass", field="agent")
    try:
        return cls(space, objectives, seed=seed, **dict(config or {}))
    except TypeError as exc:
        raise UserError(f"agent {name!r} rejects its settings {sorted(dict(config or {}))}: {exc}", field="agent.config") from None
