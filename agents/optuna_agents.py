"""Optuna samplers as agents: ``optuna-tpe`` (reward) and ``optuna-nsga2`` (objectives,
with constraints).

Each agent keeps its own in-memory Optuna study: ``ask`` draws from the sampler, ``tell``
records the outcome. The persistent record of the run is the runner's store, not this study.

Resuming continues the sequence exactly: the sampler is re-seeded before every ``ask`` from
(seed, the study's trial count), so a proposal depends only on the seed and the trials before
it, never on how many processes the run took; and ``state_dict`` holds the finished trials
with their sampler attributes (NSGA-II's generation of each individual), which replaying
outcomes alone would lose — NSGA-II would start its first generation again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from automc.compress.spaces import SearchSpace
from automc.config import Constraint, Objective
from automc.errors import require_number
from automc.search.agent import Agent
from automc.search.candidate import Candidate
from automc.search.store import space_distributions

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _OptunaAgent(Agent):
    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, constraints: Sequence[Constraint] = ()) -> None:
        super().__init__(space, objectives, seed=seed, constraints=constraints)
        self.dists = space_distributions(space)
        self.study = optuna.create_study(sampler=self._sampler(self.seed), directions=self._directions())
        self._pending: dict[int, optuna.trial.Trial] = {}  # candidate number → its sampler trial
        self._numbers: dict[int, int] = {}  # sampler trial number → candidate number

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:  # pragma: no cover - abstract
        raise NotImplementedError

    def _directions(self) -> list[str]:
        return ["maximize"]

    def _values(self, c: Candidate) -> list[float] | None:
        return None if c.reward is None or not math.isfinite(c.reward) else [float(c.reward)]

    def ask(self, number: int) -> dict[str, Any] | None:
        index = len(self.study.get_trials(deepcopy=False))
        self.study.sampler = self._sampler(int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0]))
        trial = self.study.ask(self.dists)
        self._pending[number] = trial
        self._numbers[trial.number] = number
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
        self._numbers[len(self.study.get_trials(deepcopy=False)) - 1] = candidate.number

    def state_dict(self) -> dict[str, Any]:
        """The finished trials of the sampler's study, with their system attributes."""
        finished = [t for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()]
        trials = [
            {
                "state": t.state.name,
                "values": t.values,
                "params": t.params,
                "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in t.distributions.items()},
                "system_attrs": t.system_attrs,
                "number": self._numbers.get(t.number, -1),
            }
            for t in finished
        ]
        return {"trials": json.dumps(trials), "told": [t["number"] for t in trials]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Rebuild the sampler's study from :meth:`state_dict` (in the same order)."""
        for t in json.loads(state["trials"]):
            frozen = optuna.trial.create_trial(
                state=optuna.trial.TrialState[t["state"]],
                values=t["values"],
                params=t["params"],
                distributions={k: optuna.distributions.json_to_distribution(d) for k, d in t["distributions"].items()},
                system_attrs=t["system_attrs"],
            )
            self.study.add_trial(frozen)
            self._numbers[len(self.study.get_trials(deepcopy=False)) - 1] = int(t["number"])

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
        require_number("n_startup_trials", n_startup_trials, 0, None, integer=True, field="agent.config.n_startup_trials")
        self.n_startup_trials = int(n_startup_trials)
        self.multivariate = bool(multivariate)
        super().__init__(space, objectives, seed=seed, constraints=constraints)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=self.multivariate)


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
        require_number("population_size", population_size, 2, None, integer=True, field="agent.config.population_size")  # NSGA-II breeds pairs
        self.population_size = int(population_size)
        super().__init__(space, objectives, seed=seed, constraints=constraints)

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        # constrained domination applies to trials that carry constraint values (set in tell)
        return optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)

    def _directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Also rebuild NSGA-II's parent-population cache as the live run had it: each
        generation's parents were computed (and cached, in trial order) at that generation's
        first ask; computing them again, oldest generation first, gives the same lists."""
        super().load_state_dict(state)
        generations = [v for t in self.study.get_trials(deepcopy=False) for k, v in t.system_attrs.items() if k.endswith(":generation")]
        sampler = self._sampler(self.seed)
        for g in range(1, max(generations, default=0) + 1):
            sampler.get_parent_population(self.study, g)

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
