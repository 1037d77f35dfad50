"""Optuna samplers as agents: ``optuna-tpe`` (reward) and ``optuna-nsga2`` (objectives,
with constraints).

Each agent keeps its own in-memory Optuna study: ``ask`` draws from the sampler, ``tell``
records the outcome (and, on resume, the replayed history), so the sampler's model is the
same as if the run had never stopped. The persistent record of the run is the runner's
store, not this study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import optuna

from automc.search.agent import Agent
from automc.search.candidate import Candidate
from automc.config import Constraint, Objective
from automc.search.store import space_distributions
from automc.compress.spaces import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _OptunaAgent(Agent):
    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, constraints: Sequence[Constraint] = ()) -> None:
        super().__init__(space, objectives, seed=seed, constraints=constraints)
        self.dists = space_distributions(space)
        self.study = optuna.create_study(sampler=self._sampler(), directions=self._directions())
        self._pending: dict[int, optuna.trial.Trial] = {}  # candidate number → its sampler trial

    def _sampler(self) -> optuna.samplers.BaseSampler:  # pragma: no cover - abstract
        raise NotImplementedError

    def _directions(self) -> list[str]:
        return ["maximize"]

    def _values(self, c: Candidate) -> list[float] | None:
        return None if c.reward is None or not math.isfinite(c.reward) else [float(c.reward)]

    def ask(self, number: int) -> dict[str, Any] | None:
        trial = self.study.ask(self.dists)
        self._pending[number] = trial
        return dict(trial.params)

    def tell(self, candidate: Candidate) -> None:
        values = self._values(candidate) if candidate.ok else None
        constraints = self._constraint_values(candidate) if candidate.ok else {}
        trial = self._pending.pop(candidate.number, None)
        if trial is not None:
            for key, value in constraints.items():
                trial.set_constraint(key, value)
            self.study.tell(trial, values, state=None if values else optuna.trial.TrialState.FAIL)
            return
        # a replayed (or foreign) candidate: record it as a finished trial
        params = {k: v for k, v in candidate.params.items() if k in self.dists}
        if values is None:
            frozen = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params=params, distributions={k: self.dists[k] for k in params})
        else:
            frozen = optuna.trial.create_trial(values=values, params=params, distributions={k: self.dists[k] for k in params}, constraints=constraints or None)
        self.study.add_trial(frozen)

    def _constraint_values(self, c: Candidate) -> dict[str, float]:
        return {}


class TPEAgent(_OptunaAgent):
    """Tree-structured Parzen estimator on the scalar reward."""

    name = "optuna-tpe"

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        constraints: Sequence[Constraint] = (),
        n_startup_trials: int = 10,
        multivariate: bool = True,
    ) -> None:
        self.n_startup_trials = int(n_startup_trials)
        self.multivariate = bool(multivariate)
        super().__init__(space, objectives, seed=seed, constraints=constraints)

    def _sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate)


class NSGA2Agent(_OptunaAgent):
    """NSGA-II on the objectives (e.g. accuracy max, latency min), with constraints
    ``metric <= max`` / ``metric >= min`` handled by Optuna's constrained domination."""

    name = "optuna-nsga2"
    multi_objective = True

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        constraints: Sequence[Constraint] = (),
        population_size: int = 20,
    ) -> None:
        self.population_size = int(population_size)
        super().__init__(space, objectives, seed=seed, constraints=constraints)

    def _sampler(self) -> optuna.samplers.BaseSampler:
        # constrained domination applies to trials that carry constraint values (set in tell)
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=self.seed)

    def _directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def _values(self, c: Candidate) -> list[float] | None:
        try:
            vals = [float(c.metrics[o.metric]) for o in self.objectives]
        except KeyError:
            return None
        return vals if all(math.isfinite(v) for v in vals) else None

    def _constraint_values(self, c: Candidate) -> dict[str, float]:
        out = {}
        for k in self.constraints:  # Optuna: a value <= 0 means satisfied
            v = float(c.metrics.get(k.metric, math.inf))
            if k.max is not None:
                out[f"{k.metric}<={k.max:g}"] = v - k.max
            if k.min is not None:
                out[f"{k.metric}>={k.min:g}"] = k.min - v if math.isfinite(v) else math.inf
        return out
