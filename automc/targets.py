"""A run-level target: "half the MACs", "200 kB", "3 ms on this CPU".

``target:`` in an experiment gives, per metric a profile measures, an upper limit either
**relative** to the uncompressed model or **absolute** with a unit::

    target: {macs: 0.5}                 # half the uncompressed model's MACs
    target: {macs: 50%}                 # the same
    target: {size_bytes: 200kB}         # 200,000 bytes (kB = 1000, KiB = 1024)
    target: {latency_ms: 3.0}           # 3 ms (also "3ms", "3000us")
    target: {macs: 20.3M, projection: feasible}

A plain number is relative when it is at most 1 and the metric is a count (``macs``,
``params``, ``size_bytes``, …: an absolute count of 1 is never meant), and absolute in the
metric's own unit otherwise (``latency_ms: 0.8`` is 0.8 ms; write ``80%`` for a fraction).
``projection`` says how proposals are moved onto the target (see
:mod:`automc.search.projection`): ``boundary`` (every proposal ends on the target: the budget
is used), ``feasible`` (only proposals over the target move), ``off``, or ``auto`` (boundary; a
run keeps the mode it started with, see :func:`automc.search.projection.settle_mode`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

PROJECTIONS = ("auto", "boundary", "feasible", "off")
# metrics whose unit is in their name: a plain number is absolute for them
_UNIT_SUFFIXES = {"_ms": "time_ms", "_us": "time_ms", "_s": "time_ms", "_mj": "energy_mj", "_j": "energy_mj"}
_COUNT = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024.0, "mib": 1024.0**2, "gib": 1024.0**3}
_TIME_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_ENERGY_MJ = {"mj": 1.0, "uj": 1e-3, "µj": 1e-3, "j": 1e3}
_SPEC = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-zµ%]*)\s*$", re.IGNORECASE)


def metric_kind(metric: str) -> str:
    """``time_ms``, ``energy_mj`` or ``count`` (MACs, parameters, bytes: unit-free)."""
    low = metric.lower()
    for suffix, kind in _UNIT_SUFFIXES.items():
        if low.endswith(suffix):
            return kind
    return "count"


def parse_limit(metric: str, spec: Any) -> tuple[str, float]:
    """``("relative", fraction)`` or ``("absolute", value in the metric's unit)`` for one
    target entry; ValueError (with what is allowed) when it cannot be read."""
    kind = metric_kind(metric)
    if isinstance(spec, bool) or not isinstance(spec, (int, float, str)):
        raise ValueError(f"target {metric} must be a number or a string such as 50% or 200kB, got {spec!r}")
    if isinstance(spec, (int, float)):
        value, unit = float(spec), ""
    else:
        m = _SPEC.match(spec)
        if m is None:
            raise ValueError(f"target {metric} {spec!r} is not a number with an optional unit (50%, 0.5, 200kB, 20.3M, 3ms)")
        value, unit = float(m.group(1)), m.group(2).lower()
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"target {metric} must be positive, got {spec!r}")
    if unit == "%":
        if value > 100:
            raise ValueError(f"target {metric} {spec!r}: a relative target is at most 100%")
        return "relative", value / 100.0
    units = {"count": _COUNT, "time_ms": _TIME_MS, "energy_mj": _ENERGY_MJ}[kind]
    if unit and unit not in units:
        raise ValueError(f"target {metric} {spec!r}: unknown unit {unit!r}; for {metric} use % or one of {', '.join(u for u in units if u)}")
    if not unit and kind == "count" and value <= 1.0:
        return "relative", value
    return "absolute", value * units.get(unit, 1.0)


class TargetConfig(BaseModel):
    """``target:``: per-metric upper limits (``limits``) and how proposals are projected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits: dict[str, Any]  # metric → spec (checked by parse_limit: numbers or strings)
    projection: Literal["auto", "boundary", "feasible", "off"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        # users write {macs: 0.5, projection: feasible}; the stored form is {limits: {...}, ...}
        if isinstance(data, Mapping) and "limits" not in data:
            data = {"limits": {k: v for k, v in data.items() if k != "projection"}, **({"projection": data["projection"]} if "projection" in data else {})}
        return data

    @model_validator(mode="after")
    def _readable(self) -> TargetConfig:
        if not self.limits:
            raise ValueError("give at least one metric, e.g. {macs: 0.5}")
        for metric, spec in self.limits.items():
            parse_limit(metric, spec)
        return self

    def resolve(self, base: Mapping[str, float]) -> list[dict[str, Any]]:
        """Absolute limits, one ``{metric, max, spec, fraction}`` per metric, from the
        uncompressed model's metrics ``base`` (keys as measured, without ``base_``);
        ``fraction`` is the limit over the base value. KeyError names a metric not measured."""
        out = []
        for metric, spec in self.limits.items():
            mode, value = parse_limit(metric, spec)
            reference = float(base[metric])
            limit = value * reference if mode == "relative" else value
            out.append({"metric": metric, "max": limit, "spec": str(spec), "fraction": limit / reference if reference > 0 else math.inf})
        return out
