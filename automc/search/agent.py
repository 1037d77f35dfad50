"""The agent contract: ``ask(number) -> params | None``, ``tell(candidate)``, state round trip.

Agents are plugins (entry-point group ``automc.agents``). They see the search space, the
objectives and the constraints, never the model, the evaluator or the store: every
candidate's outcome reaches them through :meth:`Agent.tell`. ``ask`` receives the number the
store gives the proposal, and ``tell`` carries it back (``candidate.number``), so two equal
proposals can be outstanding at once and are still told apart. On resume the runner first
replays every finished candidate through ``tell`` (in order) and then restores
``state_dict`` where one was saved, so an agent continues rather than restarts without the
runner knowing how it learns. A told number the agent never asked for is a candidate of an
earlier run (replay) or one the runner proposed itself (an interrupted candidate retried).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from automc.compress.spaces import SearchSpace
from automc.config import Constraint, Objective
from automc.registry import create, registry
from automc.search.candidate import Candidate


class Agent(ABC):
    """Base class of search agents. ``multi_objective`` agents get the objective values of
    each candidate; the others optimise the scalar reward. ``constraints`` are the run's
    (``metric <= max`` / ``>= min``); agents that cannot use them ignore them."""

    name: ClassVar[str] = ""
    multi_objective: ClassVar[bool] = False
    # How many proposals may await their outcome at once (None: any; parallel workers use it).
    max_outstanding: ClassVar[int | None] = None

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, constraints: Sequence[Constraint] = ()) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.seed = int(seed)

    @abstractmethod
    def ask(self, number: int) -> dict[str, Any] | None:
        """The policy to evaluate as candidate ``number``, or None when there is nothing more
        to try."""

    @abstractmethod
    def tell(self, candidate: Candidate) -> None:
        """The outcome of candidate ``candidate.number`` (proposed by this agent, by a previous
        run of it, or retried by the runner)."""

    def state_dict(self) -> dict[str, Any]:
        """Anything replaying ``tell`` cannot rebuild (networks, buffers); JSON or tensors."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` after the history was replayed."""

    def close(self) -> None:
        """Release threads or processes (the runner calls it when the search ends)."""


AGENTS = registry("automc.agents").set_contract(Agent)


def build_agent(
    name: str,
    space: SearchSpace,
    objectives: Sequence[Objective],
    *,
    seed: int,
    constraints: Sequence[Constraint] = (),
    config: Mapping[str, Any] | None = None,
) -> Agent:
    """The agent registered as ``name`` with the run's inputs and the user's ``config``."""
    agent: Agent = create(AGENTS.group, name, space, objectives, seed=seed, constraints=list(constraints), config=config)
    return agent
