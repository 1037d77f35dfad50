"""``netadapt``: NetAdapt's budget-driven, layer-by-layer shrinking (Yang et al. 2018).

Each iteration *i* asks for a resource reduction ``initial × decay^i`` (relative to the
uncompressed model) from the current policy P: for every dimension (a channel group of the
pruning space, any dimension in general) the proposal is P with that one dimension at the
*largest* value whose estimated cost meets ``cost(P) − reduction`` (never below the target:
the last iteration lands on it), found by bisection on the unit scale; dimensions that cannot
reach it alone propose nothing. The proposals go out as candidates — in parallel, any number
at once — and are scored as the run scores candidates; with ``fidelity: {steps: [N],
promote: all}`` every proposal gets NetAdapt's short-term fine-tune (N steps of KD) before
it is scored. The most accurate proposal becomes P, and the next iteration starts from it,
until P meets the target — by its measurements (a latency target is decided by the measured
latency, not its estimate; without a target, by the analytic estimate); then the agent has nothing more to ask and the run's ``finetune:``
recovers the final model (``candidates: best`` — the only feasible iteration).

Mapping onto ask/tell: what carries over between iterations is the *policy* P applied to
the original weights (each proposal is evaluated from the pretrained model, fine-tuned
anew), not the fine-tuned weights themselves — the ask/tell contract keeps a candidate a
function of its policy. The cost estimate is the run's target (:meth:`use_target`: MACs
exactly, latency through the line the runner fits to the measured candidates or a LUT
profile) or, without a target, ``budget`` of the space's analytic cost.

Resumable exactly: its decisions depend only on the outcomes told, and its state (the
iteration, P, the proposals, the numbers asked and the scores) is saved after every tell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from automc.compress.spaces import SearchSpace
from automc.config import Constraint, Objective
from automc.errors import UserError, notice, require_number
from automc.search.agent import Agent
from automc.search.candidate import Candidate
from automc.search.cost_model import CostModel

_GRID = 200  # bisection resolution on a dimension's unit scale
_RETRIES = 4  # halve a reduction no single dimension can make this many times before stopping


class NetAdaptAgent(Agent):
    """NetAdapt (see the module docstring)."""

    name = "netadapt"

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        constraints: Sequence[Constraint] = (),
        budget: float | None = None,
        initial: float = 0.05,
        decay: float = 0.96,
        metric: str = "accuracy",
    ) -> None:
        super().__init__(space, objectives, seed=seed, constraints=constraints)
        if budget is not None:
            require_number("budget", budget, 0, 1, low_open=True, field="agent.config.budget")
        require_number("initial", initial, 0, 1, low_open=True, field="agent.config.initial")
        require_number("decay", decay, 0, 1, low_open=True, field="agent.config.decay")
        if not isinstance(metric, str) or not metric:
            raise UserError(f"metric must name what picks an iteration's proposal (e.g. accuracy), got {metric!r}", field="agent.config.metric")
        self.budget = None if budget is None else float(budget)
        self.cost: Callable[[Mapping[str, Any]], float] = CostModel(space)
        self.initial, self.decay, self.metric = float(initial), float(decay), metric
        self.policy: dict[str, Any] = space.default_params()
        self.iteration = 0
        self.proposals: list[dict[str, Any]] = []  # this iteration's, built at its first ask
        self.asked: dict[int, int] = {}  # candidate number → proposal index
        self.scores: dict[int, float] = {}  # proposal index → score
        self.metrics: dict[int, dict[str, float]] = {}  # proposal index → measured metrics
        self.finished = False
        self.log: list[dict[str, Any]] = []  # per iteration: reduction asked, chosen proposal, cost, score
        self.told: list[int] = []

    def use_target(self, cost: Callable[[Mapping[str, Any]], float], budget: float) -> bool:
        """The run's target is NetAdapt's resource constraint (the estimate steers, the
        projector's measurements refit it)."""
        if self.budget is not None:
            raise UserError("agent.config.budget and the experiment's target both limit the cost: keep one", field="agent.config.budget")
        self.cost, self.budget = cost, float(budget)
        return True

    # -- proposals --------------------------------------------------------------------------------
    def _largest(self, name: str, limit: float) -> Any | None:
        """P with ``name`` at its largest value whose cost meets ``limit`` (None: none does)."""
        d = self.space.dimensions[name]
        top = round(float(d.to_unit(self.policy[name])) * _GRID)

        def fits(i: int) -> bool:
            return self.cost({**self.policy, name: d.from_unit(i / _GRID)}) <= limit + 1e-12

        if top <= 0 or not fits(0):
            return None
        lo, hi = 0, top  # fits(lo); the largest fitting index is in [lo, hi)
        if fits(hi):
            return None  # already within the limit unchanged: this dimension is not the one to shrink
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return d.from_unit(lo / _GRID)

    def _build(self) -> None:
        """This iteration's proposals (one per dimension that can make its reduction alone)."""
        assert self.budget is not None
        current = self.cost(self.policy)
        reduction = self.initial * self.decay**self.iteration
        for _ in range(_RETRIES + 1):
            # land on the target, unless the estimate already meets it and a measurement did not
            limit = max(current - reduction, self.budget) if current > self.budget else current - reduction
            seen: set[tuple[Any, ...]] = {self.space.canonical(self.policy)}
            proposals = []
            for name in self.space.dimensions:
                value = self._largest(name, limit)
                if value is None:
                    continue
                p = {**self.policy, name: value}
                key = self.space.canonical(p)
                if key not in seen:
                    seen.add(key)
                    proposals.append(p)
            if proposals:
                self.proposals = proposals
                self.log.append({"iteration": self.iteration, "cost": current, "limit": limit, "proposals": len(proposals)})
                return
            reduction /= 2
        notice(f"netadapt: no single dimension can cut the estimated cost from {current:.4f} (target {self.budget:.4f}) at iteration {self.iteration}: stopping")
        self.finished = True

    # -- ask / tell -------------------------------------------------------------------------------
    def can_ask(self) -> bool:
        """Not while every proposal of the iteration is out and some outcome is awaited."""
        return self.finished or not self.proposals or len(self.asked) < len(self.proposals)

    def ask(self, number: int) -> dict[str, Any] | None:
        if self.budget is None:
            raise UserError("agent 'netadapt' needs a resource constraint: give the experiment a target (e.g. target: {latency_ms: 3.0}) or agent.config.budget (a fraction of the MACs)", field="agent.config.budget")
        if not self.finished and not self.proposals:
            self._build()
        if self.finished:
            return None
        index = len(self.asked)
        self.asked[number] = index
        return dict(self.proposals[index])

    def tell(self, candidate: Candidate) -> None:
        self.told.append(candidate.number)
        index = self.asked.get(candidate.number)
        if index is None:
            return  # not one of this iteration's proposals (a replay the state already covers)
        score = float(candidate.metrics.get(self.metric, float("-inf"))) if candidate.ok else float("-inf")
        self.scores[index] = score
        self.metrics[index] = {k: float(v) for k, v in candidate.metrics.items()}
        if len(self.scores) == len(self.proposals):
            best = max(range(len(self.proposals)), key=lambda i: (self.scores[i], -i))
            if self.scores[best] == float("-inf"):
                notice(f"netadapt: every proposal of iteration {self.iteration} failed: stopping")
                self.finished = True
                return
            self.policy = dict(self.proposals[best])
            self.log[-1].update(chosen=best, score=self.scores[best], new_cost=self.cost(self.policy))
            self.iteration += 1
            self.finished = self._meets(self.metrics[best])
            self.proposals, self.asked, self.scores, self.metrics = [], {}, {}, {}

    def _meets(self, metrics: Mapping[str, float]) -> bool:
        """Whether the chosen proposal meets the target: by its measurements when the run has
        limits (a measured latency decides, not its estimate), else by the estimate."""
        limits = [k for k in self.constraints if k.max is not None]
        if limits:
            return all(k.violation(metrics) is None for k in limits)
        return self.budget is not None and self.cost(self.policy) <= self.budget + 1e-12

    def state_dict(self) -> dict[str, Any]:
        return {
            "told": list(self.told),
            "policy": dict(self.policy),
            "iteration": self.iteration,
            "proposals": [dict(p) for p in self.proposals],
            "asked": [[n, i] for n, i in self.asked.items()],
            "scores": [[i, s] for i, s in self.scores.items()],
            "metrics": [[i, m] for i, m in self.metrics.items()],
            "finished": self.finished,
            "log": [dict(e) for e in self.log],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.told = [int(n) for n in state["told"]]
        self.policy = dict(state["policy"])
        self.iteration = int(state["iteration"])
        self.proposals = [dict(p) for p in state["proposals"]]
        self.asked = {int(n): int(i) for n, i in state["asked"]}
        self.scores = {int(i): float(s) for i, s in state["scores"]}
        self.metrics = {int(i): dict(m) for i, m in state["metrics"]}
        self.finished = bool(state["finished"])
        self.log = [dict(e) for e in state["log"]]
