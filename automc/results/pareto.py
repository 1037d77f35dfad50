"""Pareto fronts and hypervolume over a run's candidates — numbers only, no plotting.

Objectives are ``(metric, direction)`` pairs (accuracy maximised; latency, size, energy, MACs
minimised). Internally every objective is turned into a *loss* (maximised metrics are
negated) so that "smaller is better" everywhere.

* A candidate is **feasible** when it finished, every objective metric is present and finite,
  and every constraint (``min``/``max`` on any metric) holds.
* The **front** is the set of feasible candidates that no other feasible candidate
  dominates (at least as good in every objective, strictly better in one). Identical points
  do not dominate each other, so duplicates are all on the front.
* **Hypervolume** is the volume dominated by the front and bounded by a reference point,
  computed exactly by Optuna's implementation (WFG for three or more objectives).

Reference point, per objective, unless given explicitly (first rule that applies):

1. the bound of a constraint on that metric (``min`` for a maximised metric, ``max`` for a
   minimised one): the feasibility boundary;
2. for a minimised metric, the uncompressed model's value (``base_<metric>`` in the run):
   a candidate only adds volume for what it saves over not compressing at all;
3. for a maximised metric, 0;
4. otherwise the worst value any candidate reached.

The *normalised* hypervolume divides each minimised axis by ``|reference|`` (when non-zero),
so with the defaults accuracy × latency gives a number in [0, 1]: 1 would be 100% accuracy
at zero latency, and a run's figures are comparable across devices and models.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from automc.config import Constraint, Objective, limit_constraints
from automc.errors import UserError
from automc.search.candidate import COMPLETE, Candidate

def parse_objectives(items: Iterable[Mapping[str, Any] | Objective]) -> list[Objective]:
    """Objectives from config mappings (``{metric, direction}``); at least two are needed."""
    out = []
    for o in items:
        if isinstance(o, Objective):
            out.append(o)
            continue
        if o.get("direction") not in ("maximize", "minimize"):
            raise UserError(f"objective {o.get('metric')}: direction is {o.get('direction')!r}; use maximize or minimize", field="objectives")
        out.append(Objective(metric=str(o["metric"]), direction=o["direction"]))
    if len(out) < 2:
        raise UserError(f"a Pareto front needs at least two objectives, got {len(out)}: add one (e.g. latency_ms:minimize)", field="objectives")
    if len({o.metric for o in out}) != len(out):
        raise UserError("objectives name the same metric twice", field="objectives")
    return out


def parse_constraints(items: Iterable[Mapping[str, Any] | Constraint]) -> list[Constraint]:
    """Constraints from config mappings (``{metric, min and/or max}``)."""
    return [c if isinstance(c, Constraint) else Constraint(metric=str(c["metric"]), min=c.get("min"), max=c.get("max")) for c in items]


def run_constraints(config: Mapping[str, Any], meta: Mapping[str, Any]) -> list[Constraint]:
    """A run's constraints: its config's and its target's resolved limits (store meta
    ``target``, written by the runner)."""
    return parse_constraints(config.get("constraints", [])) + limit_constraints(meta.get("target", []) or [])


def losses(candidates: Sequence[Candidate], objectives: Sequence[Objective]) -> np.ndarray:
    """``(n, d)`` losses; NaN where a metric is missing or the candidate did not finish."""
    out = np.full((len(candidates), len(objectives)), np.nan)
    for i, c in enumerate(candidates):
        if c.state != COMPLETE:
            continue
        for j, o in enumerate(objectives):
            v = c.metrics.get(o.metric)
            if v is not None and math.isfinite(float(v)):
                out[i, j] = o.sign() * float(v)
    return out


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (losses, finite) that no other row dominates."""
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        le = np.all(pts <= pts[i], axis=1)
        lt = np.any(pts < pts[i], axis=1)
        if np.any(le & lt):
            mask[i] = False
    return mask


@dataclass(frozen=True)
class FrontResult:
    """Per-candidate feasibility, violations and front membership (aligned with the input)."""

    feasible: list[bool]
    violations: list[list[str]]
    on_front: list[bool]
    losses: np.ndarray

    def front_indices(self) -> list[int]:
        return [i for i, f in enumerate(self.on_front) if f]


def pareto_front(candidates: Sequence[Candidate], objectives: Sequence[Objective], constraints: Sequence[Constraint] = ()) -> FrontResult:
    """Which candidates are feasible, why the others are not, and which form the front."""
    L = losses(candidates, objectives)
    feasible, violations = [], []
    for i, c in enumerate(candidates):
        why: list[str] = []
        if c.state != COMPLETE:
            why.append(c.state)
        else:
            why += [f"{o.metric} missing" for j, o in enumerate(objectives) if np.isnan(L[i, j])]
            why += [v for k in constraints if (v := k.violation(c.metrics)) is not None]
        feasible.append(not why)
        violations.append(why)
    idx = [i for i, f in enumerate(feasible) if f]
    on_front = [False] * len(candidates)
    if idx:
        for i, keep in zip(idx, non_dominated(L[idx])):
            on_front[i] = bool(keep)
    return FrontResult(feasible, violations, on_front, L)


@dataclass(frozen=True)
class Reference:
    """The hypervolume reference point: value and rule per objective, and axis scales."""

    values: dict[str, float]
    sources: dict[str, str]

    def loss_point(self, objectives: Sequence[Objective]) -> np.ndarray:
        return np.array([o.sign() * self.values[o.metric] for o in objectives])

    def scales(self, objectives: Sequence[Objective]) -> np.ndarray:
        """Per-axis divisor of the normalised hypervolume (|reference| of minimised metrics)."""
        return np.array([abs(self.values[o.metric]) if o.direction == "minimize" and self.values[o.metric] != 0 else 1.0 for o in objectives])


def reference_point(
    objectives: Sequence[Objective],
    candidates: Sequence[Candidate],
    *,
    constraints: Sequence[Constraint] = (),
    base_metrics: Mapping[str, float] | None = None,
    overrides: Mapping[str, float] | None = None,
) -> Reference:
    """The reference point by the rules in the module docstring (``overrides`` win)."""
    base = dict(base_metrics or {})
    overrides = dict(overrides or {})
    unknown = set(overrides) - {o.metric for o in objectives}
    if unknown:
        raise UserError(f"reference given for {', '.join(sorted(unknown))}, which is not an objective; objectives: {', '.join(o.metric for o in objectives)}", field="reference")
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for j, o in enumerate(objectives):
        bound = [(c.min if o.direction == "maximize" else c.max) for c in constraints if c.metric == o.metric]
        bound = [b for b in bound if b is not None]
        if o.metric in overrides:
            values[o.metric], sources[o.metric] = float(overrides[o.metric]), "given"
        elif bound:
            values[o.metric] = min(bound) if o.direction == "minimize" else max(bound)
            sources[o.metric] = "constraint"
        elif o.direction == "minimize" and f"base_{o.metric}" in base:
            values[o.metric], sources[o.metric] = float(base[f"base_{o.metric}"]), "uncompressed model"
        elif o.direction == "maximize":
            values[o.metric], sources[o.metric] = 0.0, "zero"
        else:
            L = losses(candidates, [o])[:, 0]
            L = L[np.isfinite(L)]
            values[o.metric], sources[o.metric] = (float(L.max()) if len(L) else 0.0), "worst candidate"
    return Reference(values, sources)


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume of ``points`` (losses) up to ``reference``; points that do not
    strictly dominate the reference add nothing."""
    from optuna._hypervolume import compute_hypervolume  # exact, WFG beyond two objectives

    pts = np.asarray(points, dtype=float).reshape(-1, len(reference))
    pts = pts[np.all(np.isfinite(pts), axis=1) & np.all(pts < reference, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[non_dominated(pts)]
    return float(compute_hypervolume(pts, np.asarray(reference, dtype=float), assume_pareto=True))


def hypervolume_history(
    candidates: Sequence[Candidate], front: FrontResult, objectives: Sequence[Objective], reference: Reference
) -> list[dict[str, float]]:
    """Hypervolume of the feasible candidates among the first k evaluations, for every k
    (candidates in number order), raw and normalised."""
    ref = reference.loss_point(objectives)
    scale = float(np.prod(reference.scales(objectives)))
    order = sorted(range(len(candidates)), key=lambda i: candidates[i].number)
    out: list[dict[str, float]] = []
    current: list[np.ndarray] = []
    hv = 0.0
    for k, i in enumerate(order, start=1):
        if front.feasible[i] and np.all(front.losses[i] < ref):
            current.append(front.losses[i])
            pts = np.array(current)
            current = list(pts[non_dominated(pts)])
            hv = hypervolume(np.array(current), ref)
        out.append({"evaluations": k, "candidate": candidates[i].number, "hypervolume": hv, "normalized": hv / scale})
    return out
