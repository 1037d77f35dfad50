"""The dimensions of a search space: ``Float``, ``Int`` and ``Choice``, each with its range
check, seeded sampling and the [0, 1] unit encoding agents act on; and the naming rule
``"<module path>:<knob>"`` (:func:`split_name`). :mod:`automc.compress.spaces` builds spaces
from them."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from automc.errors import UserError


@dataclass(frozen=True)
class Float:
    """A real-valued dimension in [low, high]."""

    low: float
    high: float
    default: float
    knob: str = ""
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise UserError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")
        if not self.low <= self.default <= self.high:
            raise UserError(f"default {self.default} is outside [{self.low}, {self.high}]")

    def check(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise UserError(f"policy value for {name!r} must be a number in [{self.low}, {self.high}], got {value!r}", field=name)
        v = float(value)
        if not self.low - 1e-12 <= v <= self.high + 1e-12:
            raise UserError(f"policy value {v} for {name!r} is out of range: allowed [{self.low}, {self.high}]", field=name)
        return min(max(v, self.low), self.high)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def to_unit(self, value: float) -> float:
        return 0.0 if self.high == self.low else (float(value) - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> float:
        return float(self.low + min(max(float(u), 0.0), 1.0) * (self.high - self.low))

    def to_json(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "default": self.default, "knob": self.knob}


@dataclass(frozen=True)
class Int:
    """An integer dimension in [low, high]."""

    low: int
    high: int
    default: int
    knob: str = ""
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise UserError(f"`low <= high` must hold, but got (low={self.low}, high={self.high})")

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise UserError(f"policy value for {name!r} must be an integer in [{self.low}, {self.high}], got {value!r}", field=name)
        v = int(value)
        if not self.low <= v <= self.high:
            raise UserError(f"policy value {v} for {name!r} is out of range: allowed [{self.low}, {self.high}]", field=name)
        return v

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))

    def to_unit(self, value: int) -> float:
        return 0.0 if self.high == self.low else (int(value) - self.low) / (self.high - self.low)

    def from_unit(self, u: float) -> int:
        return int(round(self.low + min(max(float(u), 0.0), 1.0) * (self.high - self.low)))

    def to_json(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "default": self.default, "knob": self.knob}


@dataclass(frozen=True)
class Choice:
    """One of an ordered tuple of values (e.g. bit-widths)."""

    values: tuple[Any, ...]
    default: Any
    knob: str = ""
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.values:
            raise UserError("a choice dimension needs at least one value")
        if self.default not in self.values:
            raise UserError(f"default {self.default!r} is not one of {list(self.values)}")

    def check(self, name: str, value: Any) -> Any:
        for v in self.values:
            if value == v and not isinstance(value, bool):
                return v
        raise UserError(f"policy value {value!r} for {name!r} is not allowed: choose one of {list(self.values)}", field=name)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def to_unit(self, value: Any) -> float:
        return 0.0 if len(self.values) == 1 else self.values.index(value) / (len(self.values) - 1)

    def from_unit(self, u: float) -> Any:
        i = int(round(min(max(float(u), 0.0), 1.0) * (len(self.values) - 1)))
        return self.values[i]

    def to_json(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values), "default": self.default, "knob": self.knob}


Dimension = Float | Int | Choice


def split_name(name: str) -> tuple[str, str]:
    """``"layer1.0.conv1:ratio"`` → ``("layer1.0.conv1", "ratio")``."""
    layer, _, knob = name.rpartition(":")
    return layer, knob
