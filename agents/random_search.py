"""``random``: uniform random policies (the baseline every search must beat)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from automc.compress.spaces import SearchSpace
from automc.config import Constraint, Objective
from automc.search.agent import Agent
from automc.search.candidate import Candidate


class RandomAgent(Agent):
    """Draws candidate *n*'s policy from a generator seeded with (seed, n): the sequence is
    the same whether or not the run was interrupted, so a resumed run continues it exactly."""

    name = "random"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, constraints: Sequence[Constraint] = (), sampler: str = "iid") -> None:
        super().__init__(space, objectives, seed=seed, constraints=constraints)
        if sampler not in ("iid", "budgets"):
            from automc.errors import UserError

            raise UserError(f"random agent sampler must be 'iid' or 'budgets', got {sampler!r}", field="agent.config.sampler")
        self.sampler = sampler

    def ask(self, number: int) -> dict[str, Any] | None:
        rng = np.random.default_rng([self.seed, number])
        return self.space.sample_across_budgets(rng) if self.sampler == "budgets" else self.space.sample(rng)

    def tell(self, candidate: Candidate) -> None:
        pass  # the sequence depends on the candidate numbers only
