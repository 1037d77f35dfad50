"""The device-profile contract: what a candidate costs on a target device.

A profile (entry-point group ``automc.device_profiles``) reports named metrics for a model::

    profile = build_profile("onnxruntime-cpu", {"threads": 1})
    m = profile.measure(model, example_input)     # Measurement
    m.values["latency_ms"], m.spread["latency_ms"], m.repeats, m.provenance

Measured profiles fix their thread count, warm up, repeat until the median is stable and
report the median with its inter-quartile range; analytic ones report spread 0 and one
repeat. ``provenance`` says where a figure came from (device, settings, library versions,
whether it was served from cache) so a result can be trusted or discarded later.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from automc.compress.int8 import cpu_features
from automc.registry import create, registry

if TYPE_CHECKING:
    from automc.compress.spaces import SearchSpace

PROFILES = registry("automc.device_profiles")


@dataclass(frozen=True)
class Measurement:
    """Metric values with their spread, how many repeats produced them, and provenance."""

    values: Mapping[str, float]
    spread: Mapping[str, float] = field(default_factory=dict)
    repeats: int = 1
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "spread": dict(self.spread), "repeats": self.repeats, "provenance": dict(self.provenance)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        return cls(dict(d["values"]), dict(d.get("spread", {})), int(d.get("repeats", 1)), dict(d.get("provenance", {})))


class DeviceProfile(ABC):
    """Base class of device profiles. Subclasses set ``name`` and ``metrics``, take their
    settings as keyword arguments, and implement :meth:`measure`."""

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()
    # True when measurements depend on the architecture only (not weight values), so a run may
    # serve equal structures from its cache (automc.measure.cache) instead of measuring again.
    cacheable: ClassVar[bool] = False
    # True when measurements are computed from the architecture (no timing): exact and
    # repeatable, so a target on them can be guaranteed (automc.search.projection)
    analytic: ClassVar[bool] = False

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings (stored with every run that uses the profile)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The device this profile stands for, in words and numbers (provenance)."""
        return {"profile": self.name, **machine_description()}

    @abstractmethod
    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        """Cost of ``model`` for inputs shaped like ``example_input``; must not modify it."""

    def policy_estimate(self, model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> Callable[[Mapping[str, Any]], Mapping[str, float]] | None:
        """A function giving this profile's figures for a policy of ``space`` on ``model``
        without building the compressed model, or None where the profile cannot (the default).
        Target projection calls it many times per proposal instead of building each step
        (:mod:`automc.search.projection`); it checks the function against built models first
        and against every candidate, and builds the projections again where they disagree."""
        return None

    def set_reference(self, model: nn.Module, example_input: torch.Tensor, measured: Mapping[str, float]) -> None:
        """The run's uncompressed model and what this profile measured of it, handed over
        before candidates are measured (by the driver and by every Ray worker, with the same
        figures). A profile that times candidates relative to the base model keeps them
        (``onnxruntime-cpu`` with ``paired: true``); the others need nothing of it."""


PROFILES.set_contract(DeviceProfile)


def build_profile(name: str, config: Mapping[str, Any] | None = None) -> DeviceProfile:
    """Instantiate the profile registered as ``name`` (or ``module:Class``) with ``config``."""
    profile: DeviceProfile = create(PROFILES.group, name, config=config)
    return profile


def machine_description() -> dict[str, Any]:
    """CPU model, its int8-relevant instruction sets, core count and platform of this machine."""
    import os

    features = cpu_features()
    cpu = features.model if features.model != "unknown" else platform.machine()
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "vnni": features.vnni, "cpu_flags": features.summary()["int8_flags"]}


def structural_hash(model: nn.Module, example_input: torch.Tensor, extra: Mapping[str, Any] | None = None) -> str:
    """A hash of what latency depends on: module types, hyper-parameters, tensor shapes,
    bit-widths and the input shape — not weight values. Equal hashes = same architecture."""
    parts: list[Any] = [list(example_input.shape), dict(extra or {})]
    for name, m in model.named_modules():
        attrs = {k: getattr(m, k) for k in ("stride", "padding", "dilation", "groups", "kernel_size", "w_bits", "a_bits", "weight_quantizer", "int8_scheme") if hasattr(m, k)}
        shapes = {k: list(v.shape) for k, v in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))}
        parts.append([name, type(m).__qualname__, {k: str(v) for k, v in attrs.items()}, shapes])
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Timing:
    median_ms: float
    iqr_ms: float
    repeats: int
    seconds: float
    min_ms: float = math.nan


def time_call(
    fn: Callable[[], Any],
    *,
    warmup: int = 50,
    min_repeats: int = 100,
    max_repeats: int = 5000,
    max_seconds: float = 5.0,
    chunk: int = 20,
    rel_tol: float = 0.005,
    min_warmup_seconds: float = 0.05,
) -> Timing:
    """Median wall time of ``fn`` in ms, repeating until the median is stable.

    After ``warmup`` untimed calls (and at least ``min_warmup_seconds``), calls are timed in chunks; it stops when two consecutive
    chunk medians agree within ``rel_tol`` (and at least ``min_repeats`` ran), or at
    ``max_repeats`` / ``max_seconds``.
    """
    t_warm = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - t_warm < min_warmup_seconds:
        fn()
        done += 1
    samples: list[float] = []
    start = time.perf_counter()
    previous = math.inf
    stable = 0
    while True:
        for _ in range(chunk):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        med = float(np.median(samples))
        stable = stable + 1 if abs(med - previous) <= rel_tol * med else 0
        previous = med
        elapsed = time.perf_counter() - start
        if (len(samples) >= min_repeats and stable >= 2) or len(samples) >= max_repeats or elapsed >= max_seconds:
            break
    q1, q3 = np.percentile(samples, [25, 75])
    return Timing(med, float(q3 - q1), len(samples), time.perf_counter() - start, float(min(samples)))
