"""Live progress of a search: a ``rich`` bar on a terminal (candidates done / budget, elapsed,
ETA, failures, the best feasible candidate so far), one plain line per candidate otherwise
(or with ``--verbose``), nothing with ``--json``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from automc.config import Constraint, ExperimentConfig, limit_constraints


def metric_line(metrics: Mapping[str, float], names: list[str]) -> str:
    """The objectives of ``metrics`` as a short text (accuracy in percent)."""
    parts = []
    for n in names:
        if n in metrics:
            v = metrics[n]
            parts.append(f"{n} {100 * v:.2f}%" if n == "accuracy" else f"{n} {v:,.4g}")
    return ", ".join(parts)


class SearchProgress:
    """``on_candidate(candidate, done, total)`` for :func:`automc.search.loop.run_experiment`.

    Feasibility counts the experiment's constraints and its target, resolved from the
    uncompressed model's metrics every candidate carries (``base_<metric>``)."""

    def __init__(self, cfg: ExperimentConfig, *, bar: bool, quiet: bool) -> None:
        self.cfg = cfg
        self.names = [o.metric for o in cfg.objectives]
        self.quiet = quiet
        self.failed = 0
        self.best: tuple[float, str] | None = None
        self._target: list[Constraint] | None = None if cfg.target is not None else []
        self.bar = None
        if bar and not quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
            self.bar.start()
            self.task = self.bar.add_task(cfg.name, total=cfg.budget.candidates, status="")

    def _constraints(self, metrics: Mapping[str, float]) -> list[Constraint]:
        target = self.cfg.target
        if self._target is None and target is not None:
            base = {k.removeprefix("base_"): float(v) for k, v in metrics.items() if k.startswith("base_")}
            if not all(m in base for m in target.limits):
                return list(self.cfg.constraints)  # a failed candidate carries no base metrics
            self._target = limit_constraints(target.resolve(base))
        return list(self.cfg.constraints) + (self._target or [])

    def __call__(self, c: Any, done: int, total: int) -> None:
        if c.duplicate_of is not None:
            if self.bar is None and not self.quiet:
                print(f"[{done}/{total or '?'}] proposal #{c.number} repeats candidate #{c.duplicate_of}: answered from the record, not evaluated", flush=True)
            return
        feasible = c.ok and all(k.violation(c.metrics) is None for k in self._constraints(c.metrics))
        if not c.ok:
            self.failed += 1
        elif feasible and c.reward is not None and math.isfinite(c.reward) and (self.best is None or c.reward > self.best[0]):
            self.best = (float(c.reward), f"best feasible #{c.number}: reward {c.reward:.4g}, {metric_line(c.metrics, self.names)}")
        status = (self.best[1] if self.best else "no feasible candidate yet") + (f"; {self.failed} failed" if self.failed else "")
        if self.bar is not None:
            self.bar.update(self.task, completed=done, status=status)
        elif not self.quiet:
            if c.ok:
                what = f"reward {c.reward:.4g}, {metric_line(c.metrics, self.names)}" + ("" if feasible else " (infeasible)")
            else:
                what = f"FAILED: {c.error}"
            print(f"[{done}/{total or '?'}] candidate #{c.number}: {what}", flush=True)

    def stop(self) -> None:
        """Close the bar (the recovery after the search shows its own progress)."""
        if self.bar is not None:
            self.bar.stop()
