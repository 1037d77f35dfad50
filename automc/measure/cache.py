"""Measurements shared by equal architectures: a cache any profile can use.

A profile whose figures depend only on the architecture (types, shapes, bit-widths, settings
— not weight values) says so with ``cacheable = True``; ``onnxruntime-cpu`` does, because
measuring takes seconds and two candidates with the same channel counts run equally fast. The
run wraps such profiles in :class:`CachedProfile`: a measurement is keyed by the profile's
name, its settings and :func:`structural_hash`, kept in memory and appended to the run's
``measure_cache.jsonl``, so a resumed search does not measure again. An experiment can turn
caching on or off per profile (``profiles: [{name: ..., cache: false}]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from automc.measure.profiles import DeviceProfile, Measurement, structural_hash

if TYPE_CHECKING:
    from automc.compress.spaces import SearchSpace


class CachedProfile(DeviceProfile):
    """``profile`` with its measurements cached by model structure (optionally in a file)."""

    def __init__(self, profile: DeviceProfile, path: Path | None = None) -> None:
        self.inner = profile
        self.name = profile.name  # type: ignore[misc] - mirrors the wrapped plugin
        self.metrics = profile.metrics  # type: ignore[misc]
        self.analytic = profile.analytic  # type: ignore[misc]
        self.path = path
        self._entries: dict[str, Measurement] = {}
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[entry["key"]] = Measurement.from_dict(entry["measurement"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a kill: that measurement is simply redone

    def config(self) -> dict[str, Any]:
        return self.inner.config()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def policy_estimate(self, model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> Callable[[Mapping[str, Any]], Mapping[str, float]] | None:
        return self.inner.policy_estimate(model, space, example_input)

    def set_reference(self, model: nn.Module, example_input: torch.Tensor, measured: Mapping[str, float]) -> None:
        self.inner.set_reference(model, example_input, measured)

    def key(self, model: nn.Module, example_input: torch.Tensor) -> str:
        return structural_hash(model, example_input, {"profile": self.inner.name, **self.inner.config()})

    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        key = self.key(model, example_input)
        hit = self._entries.get(key)
        if hit is not None:
            return Measurement(hit.values, hit.spread, hit.repeats, {**hit.provenance, "cached": True})
        result = self.inner.measure(model, example_input)
        result = Measurement(result.values, result.spread, result.repeats, {**result.provenance, "structural_hash": key, "cached": False})
        self._entries[key] = result
        if self.path is not None:
            line = json.dumps({"key": key, "measurement": result.to_dict()}, default=str) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:  # one write of a whole line: concurrent workers never interleave within it
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        return result
