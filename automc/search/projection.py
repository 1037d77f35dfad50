"""Projection of proposals onto the run's target (``target:``, :mod:`automc.targets`).

Users think "half the MACs" or "3 ms"; agents propose whatever their sampler draws. The
runner moves every proposal of an agent that does not honour the target itself (all but the
RL agents, whose environment clamps each step as AMC does) along one fixed path before it is
evaluated:

* every dimension's unit value ``u`` (0 = its cheapest setting, 1 = the uncompressed one)
  moves by the same ``s``: towards 0 as ``u·(1 + s)`` for ``s < 0``, towards 1 as
  ``u + s·(1 - u)`` for ``s > 0`` (:mod:`automc.search.policy_path`). The agent's relative
  preferences between layers survive, and the cost is monotone in ``s``, so bisection finds
  the largest ``s`` whose estimated cost meets every limit;
* ``boundary`` projection takes that ``s`` (every candidate spends the budget; proposals far
  under it are raised), ``feasible`` only lowers proposals that are over it;
* estimates: :class:`~automc.search.cost_model.CostModel` for MACs, BitOps, parameters and
  size; a profile's own reading of the policy where it offers one
  (:meth:`~automc.measure.profiles.DeviceProfile.policy_estimate`: a lookup table's latency
  from the channel counts); otherwise, for latency and energy, the MACs estimate scaled by a
  line fitted to the candidates measured so far. For metrics of an analytic profile
  (``flops``, ``lut``, ``accelerator``: computed from the architecture, not timed) whose
  estimate is not exact — checked at the start against 8 built policies, and again by every
  candidate's measurement — the projected policy is built and measured, and the bisection
  continues on the measured value: analytic targets hold. For timed metrics the estimate
  steers and the measurement decides feasibility.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from automc.compress.spaces import SearchSpace
from automc.errors import UserError, notice
from automc.measure.profiles import DeviceProfile
from automc.search import policy_path
from automc.search.agent import Agent
from automc.search.candidate import Candidate
from automc.search.context import Context
from automc.search.cost_model import METRICS as COST_METRICS
from automc.search.cost_model import CostModel

Params = dict[str, Any]
# measures the analytic metrics of a policy's (unrecalibrated) model
Exact = Callable[[Mapping[str, Any]], Mapping[str, float]]
_BISECTIONS = 30


class _LineFit:
    """``metric / base ≈ c0 + c1 · (MACs / base MACs)``, refitted as candidates are measured
    (starting from proportionality); the slope stays positive so the cost stays monotone."""

    def __init__(self, macs: CostModel) -> None:
        self.macs = macs
        self.x: list[float] = [1.0]
        self.y: list[float] = [1.0]  # the uncompressed model: both ratios are 1
        self.c0, self.c1 = 0.0, 1.0

    def add(self, params: Mapping[str, Any], ratio: float) -> None:
        self.x.append(self.macs(params))
        self.y.append(float(ratio))
        if len(set(self.x)) >= 3:
            c1, c0 = np.polyfit(np.asarray(self.x), np.asarray(self.y), 1)
            if c1 > 1e-6:
                self.c0, self.c1 = float(c0), float(c1)

    def __call__(self, params: Mapping[str, Any]) -> float:
        return self.c0 + self.c1 * self.macs(params)


class Projector:
    """``projector(params)``: the proposal moved onto the target (see the module docstring).

    ``limits``: the resolved target (``[{metric, max, fraction}]``); ``base``: the uncompressed
    model's metrics; ``analytic``: the metrics ``exact`` measures exactly; ``estimates``: a
    profile's own estimate of a metric relative to ``base`` (instead of the MACs line). Raises
    UserError when even the cheapest policy misses an analytic limit (before any budget is
    spent)."""

    def __init__(
        self,
        space: SearchSpace,
        limits: Sequence[Mapping[str, Any]],
        base: Mapping[str, float],
        *,
        mode: str = "boundary",
        analytic: Sequence[str] = (),
        exact: Exact | None = None,
        estimates: Mapping[str, Callable[[Mapping[str, Any]], float]] | None = None,
    ) -> None:
        self.space = space
        self.dims = space.dimensions
        self.limits = [dict(t) for t in limits]
        self.base = dict(base)
        self.mode = mode
        self.analytic = set(analytic) if exact is not None else set()
        self.exact = exact
        macs = CostModel(space, "macs", reference=self.base.get("macs"))
        self.estimators: dict[str, Callable[[Mapping[str, Any]], float]] = {}
        self._fits: dict[str, _LineFit] = {}
        for t in self.limits:
            m = t["metric"]
            if estimates and m in estimates:  # a profile's own reading of the policy (a lookup table)
                self.estimators[m] = estimates[m]
            elif m in COST_METRICS and m != "auto":
                self.estimators[m] = CostModel(space, m, reference=self.base.get(m))
            else:
                self._fits[m] = self.estimators[m] = _LineFit(macs)
        self._check_reachable()
        self.verify = self._untrusted()
        self.jitters = True  # False when the agent clamps itself (its policies are its own)

    # -- the path and the estimates ------------------------------------------------------------
    def _at(self, params: Mapping[str, Any], s: float) -> Params:
        return policy_path.at(self.dims, params, s)

    def relative_cost(self, params: Mapping[str, Any]) -> float:
        """The estimated cost against the target: ≤ 1 meets every limit (the RL clamp's cost)."""
        return max(self.estimators[t["metric"]](params) / t["fraction"] for t in self.limits)

    def env_cost(self) -> tuple[Callable[[Mapping[str, Any]], float], float]:
        """``(cost, budget)`` for an agent that clamps itself (:meth:`Agent.use_target`): the
        first limit's estimate relative to the uncompressed model, the others scaled onto it."""
        first = self.limits[0]["fraction"]
        return (lambda params: first * self.relative_cost(params)), float(first)

    def _measured_ok(self, params: Mapping[str, Any]) -> bool:
        metrics = self.exact(params) if self.exact is not None else {}
        return all(float(metrics[t["metric"]]) <= t["max"] for t in self.limits if t["metric"] in self.verify)

    def _untrusted(self) -> set[str]:
        """The analytic limits whose projections are measured: those whose estimate differs
        from the built model's value on any of 8 seeded policies (an exact estimate, as MACs
        are for convolutional pruning, saves building every candidate twice)."""
        if not self.analytic:
            return set()
        rng = np.random.default_rng(0)
        policies = [self.space.sample(rng) for _ in range(8)]
        measured = [self.exact(p) for p in policies] if self.exact is not None else []
        out = set()
        for t in self.limits:
            m = t["metric"]
            if m not in self.analytic:
                continue
            if m in self._fits or any(abs(self.estimators[m](p) * float(self.base[m]) - float(v[m])) > 1e-9 * float(self.base[m]) for p, v in zip(policies, measured)):
                out.add(m)
        return out

    def _largest(self, params: Mapping[str, Any], lo: float, hi: float, ok: Callable[[Params], bool], steps: int) -> float:
        return policy_path.largest(self.dims, params, lo, hi, ok, steps)

    def _check_reachable(self) -> None:
        cheapest = {k: d.from_unit(0.0) for k, d in self.dims.items()}
        measured = dict(self.exact(cheapest)) if self.exact is not None and self.analytic else {}
        for t in self.limits:
            m = t["metric"]
            if m in measured:
                least = float(measured[m]) / float(self.base[m])
            elif m in self._fits:
                continue  # a measured metric: only the measurements can tell
            else:
                least = self.estimators[m](cheapest)
            if least > t["fraction"] * (1 + 1e-9):
                raise UserError(
                    f"target {m} {t['spec']} ({t['fraction']:.1%} of the uncompressed model) is below what the space reaches "
                    f"with every dimension at its cheapest setting ({least:.1%}): raise the target or widen the space (e.g. a lower lbound)",
                    field=f"target.{m}",
                )

    # -- projection -----------------------------------------------------------------------------
    def __call__(self, params: Mapping[str, Any]) -> Params:
        if self.mode == "off":
            return dict(params)

        def estimated_ok(p: Params) -> bool:
            return self.relative_cost(p) <= 1.0 + 1e-12

        if self.mode == "feasible" and estimated_ok(dict(params)):
            s = 0.0
        else:
            s = self._largest(params, -1.0, 1.0 if self.mode == "boundary" else 0.0, estimated_ok, _BISECTIONS)
        if self.verify:  # built and measured: settled near the estimate's s
            hi = 1.0 if self.mode == "boundary" else 0.0
            s = policy_path.largest_near(self.dims, params, s, hi, self._measured_ok)
        return self._at(params, s)

    def jitter(self, params: Mapping[str, Any], seed: Sequence[int], sigma: float) -> Params:
        """``params`` with every unit value moved by N(0, ``sigma``) (clipped to [0, 1]),
        seeded by ``seed``: how the runner steps off a policy an agent keeps proposing."""
        rng = np.random.default_rng(list(seed))
        return {k: d.from_unit(float(np.clip(d.to_unit(params[k]) + rng.normal(0.0, sigma), 0.0, 1.0))) for k, d in self.dims.items()}

    def observe(self, candidate: Candidate) -> None:
        """Refit the estimate of each measured target metric with a finished candidate; an
        analytic limit it exceeds (an estimate wrong where the 8 checks were right) is measured
        for every projection from then on."""
        if not candidate.ok:
            return
        for t in self.limits:
            m = t["metric"]
            if m in self.analytic and m not in self.verify and float(candidate.metrics.get(m, 0.0)) > t["max"]:
                notice(f"candidate {candidate.number}: {m} {candidate.metrics[m]:.6g} is over the target {t['max']:.6g} (the cost model's estimate was off): measuring every projection from now on")
                self.verify.add(m)
        for m, fit in self._fits.items():
            value = candidate.metrics.get(m)
            if value is not None and float(self.base.get(m, 0.0)) > 0:
                fit.add(candidate.params, float(value) / float(self.base[m]))


def projector_for(ctx: Context, agent: Agent) -> Projector | None:
    """The run's projector, or None without a target. An ``agent`` that honours the target
    itself is given the estimate to clamp against; the projector then only refits it (and
    lowers policies over an analytic limit whose estimate is not exact). ``auto`` projection is
    ``boundary`` for every agent (multi-objective ones too: the target is the budget to spend;
    ``feasible`` keeps a front under it)."""
    target = ctx.config.target
    if target is None or not ctx.limits:
        return None
    limited = {t["metric"] for t in ctx.limits}
    # a metric is guaranteed when only analytic profiles report it (a timed profile reporting
    # it too would decide the candidate's figure)
    timed = {m for p in ctx.profiles if not p.analytic for m in p.metrics}
    analytic = sorted({m for p in ctx.profiles if p.analytic for m in p.metrics} & (limited - timed))
    exacting = [p for p in ctx.profiles if p.analytic and set(analytic) & set(p.metrics)]

    def exact(params: Mapping[str, Any]) -> dict[str, float]:
        model = ctx.space.apply(ctx.model, params)
        out: dict[str, float] = {}
        for p in exacting:
            out.update({k: float(v) for k, v in p.measure(model, ctx.example_input).values.items()})
        return out

    mode = target.projection if target.projection != "auto" else "boundary"
    base = {k: v for k, v in ctx.reference.items() if not k.startswith("base_")}
    estimates = _profile_estimates(ctx, exacting, set(analytic) - set(COST_METRICS), base)
    projector = Projector(ctx.space, ctx.limits, base, mode=mode, analytic=analytic, exact=exact, estimates=estimates)
    if agent.use_target(*projector.env_cost()):
        # the agent clamps against the estimate; where that estimate is not exact, its
        # policies over an analytic limit are still lowered onto it (and the estimate refitted)
        projector.mode = "feasible" if projector.verify else "off"
        projector.jitters = False
    return projector


def _profile_estimates(ctx: Context, profiles: Sequence[DeviceProfile], metrics: set[str], base: Mapping[str, float]) -> dict[str, Callable[[Mapping[str, Any]], float]]:
    """For each of ``metrics`` (analytic, beyond what the cost model computes) that one of
    ``profiles`` can read off a policy without building it: that reading relative to ``base``
    (trusted only where it equals the built model's figure, :meth:`Projector._untrusted`)."""
    out: dict[str, Callable[[Mapping[str, Any]], float]] = {}
    for p in profiles:
        wanted = [m for m in p.metrics if m in metrics and m not in out and float(base.get(m, 0.0)) > 0]
        estimate = p.policy_estimate(ctx.model, ctx.space, ctx.example_input) if wanted else None
        if estimate is None:
            continue
        for m in wanted:
            out[m] = (lambda params, m=m, f=estimate: float(f(params)[m]) / float(base[m]))
    return out


def settle_mode(projector: Projector, recorded: str | None, *, resumed: bool, auto: bool, multi_objective: bool) -> str:
    """The projection a (resumed) run keeps: the mode it recorded when it started, so a changed
    default never switches a run halfway. Runs recorded before the mode was (2026-12-06) had
    ``auto`` (the target's projection left at its default) resolve to ``feasible`` for
    multi-objective agents."""
    if recorded is None and resumed and auto and projector.jitters and multi_objective:
        recorded = "feasible"
    if recorded is not None and projector.jitters:  # an agent that clamps itself: set by its clamp
        projector.mode = recorded
    return projector.mode
