"""The agent contract: ``ask(number) -> params | None``, ``tell(candidate)``, state round trip.

Agents are plugins (entry-point group ``automc.agents``). They see the search space, the
objectives and the constraints, never the model, the evaluator or the store: every
candidate's outcome reaches them through :meth:`Agent.tell`. ``ask`` receives the number the
store gives the proposal, and ``tell`` carries it back (``candidate.number``), so two equal
proposals can be outstanding at once and are still told apart.

Resuming: after every ``tell`` the runner saves ``state_dict()`` (checksummed, atomically).
On resume it calls :meth:`Agent.resume` with that state (None when there is none or it is
damaged) and every finished candidate in number order; the default tells the agent each
candidate the state does not cover. An agent must come back in the state it had — the same
proposals it would have made had the run never stopped, not its seed's first ones again.
A told number the agent never asked for is a candidate of an earlier run (replay), one the
runner proposed itself (an interrupted candidate retried), or a duplicate proposal answered
from the record (``candidate.duplicate_of``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
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
    # A class default an agent may set per instance (the RL agents' episodes_in_flight).
    max_outstanding: int | None = None
    # True when a resumed agent proposes exactly what it would have without the stop (checked
    # by automc.testing.check_agent); agents whose learner runs ahead of ask/tell say False.
    exact_resume: ClassVar[bool] = True
    # Settings added after runs began recording theirs, each with the value a run whose record
    # lacks it ran with (a resumed run keeps it even where today's default differs).
    added_settings: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, constraints: Sequence[Constraint] = ()) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.seed = int(seed)

    def extra_settings(self) -> dict[str, Any]:
        """Settings this agent resolved beyond its ``__init__`` parameters' names and defaults
        (see :mod:`automc.search.agent_settings`): recorded by the run, replayed on resume."""
        return {}

    @classmethod
    def passed_through(cls) -> frozenset[str] | None:
        """Settings an agent whose ``__init__`` takes ``**kwargs`` hands on (an RL agent's
        stable-baselines3 arguments); None: any. A resumed run replays only recorded settings
        that are parameters or in this set."""
        return None

    @abstractmethod
    def ask(self, number: int) -> dict[str, Any] | None:
        """The policy to evaluate as candidate ``number``, or None when there is nothing more
        to try."""

    def can_ask(self) -> bool:
        """False while the agent has nothing to propose until outcomes it awaits come back (the
        RL agents between the last policy of a batch and its last reward): the runner then
        waits for an outcome instead of asking."""
        return True

    @abstractmethod
    def tell(self, candidate: Candidate) -> None:
        """The outcome of candidate ``candidate.number`` (proposed by this agent, by a previous
        run of it, or retried by the runner)."""

    def use_target(self, cost: Callable[[Mapping[str, Any]], float], budget: float) -> bool:
        """The run's target offered before the first ``ask``: ``cost(params) <= budget``
        meets it (an estimate relative to the uncompressed model). True: the agent keeps its proposals within it itself (the RL
        agents' clamp); False (the default): the runner projects them
        (:mod:`automc.search.projection`)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What the agent needs to continue exactly (tensors, numbers, strings, lists, dicts:
        it is loaded with ``weights_only=True``). Key ``"told"``: the candidate numbers it
        covers (see :meth:`resume`); an empty dict saves nothing."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (called by :meth:`resume`)."""

    def resume(self, state: Mapping[str, Any] | None, history: Sequence[Candidate]) -> None:
        """Come back after a stop: restore ``state`` (when saved and intact), then tell every
        candidate of ``history`` it does not cover (``state["told"]``), in number order."""
        told: set[int] = set()
        if state:
            self.load_state_dict(state)
            told = {int(n) for n in state.get("told", [])}
        for c in history:
            if c.number not in told:
                self.tell(c)

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
