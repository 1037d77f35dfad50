"""Experiment configuration: a YAML file validated into a frozen pydantic model.

Unknown keys are rejected with the list of valid keys; a wrong value names its field and
what is allowed — one line, never a traceback (see :func:`load_config`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from automc.errors import UserError
from automc.recipes import (
    FidelityConfig,
    FinetuneConfig,
    ModelConfig,
    ProxyConfig,
    _Strict,
)
from automc.targets import TargetConfig

_M = TypeVar("_M", bound=BaseModel)


class DataConfig(_Strict):
    dataset: str
    data_dir: str | None = None
    eval_split: str | None = None
    calibration_split: str | None = None
    validation: int | None = Field(None, ge=1, description="validation images (None: the whole split)")
    calibration_batches: int = Field(8, ge=1)
    bn_calibration: bool = True
    verify: bool = True


class PluginConfig(_Strict):
    name: str
    config: dict[str, Any] = {}


class ProfileConfig(PluginConfig):
    cache: bool | None = Field(None, description="serve equal architectures from the run's measurement cache (default: the profile's `cacheable`)")


class RewardConfig(_Strict):
    name: str
    kwargs: dict[str, Any] = {}


class Objective(_Strict):
    """One axis of the front: a metric and whether it is maximised or minimised."""

    metric: str
    direction: Literal["maximize", "minimize"]

    def sign(self) -> float:
        """+1 for minimised metrics, -1 for maximised ones (loss = sign × value)."""
        return 1.0 if self.direction == "minimize" else -1.0


class Constraint(_Strict):
    metric: str
    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Constraint:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs max or min")
        return self

    def violation(self, metrics: Mapping[str, float]) -> str | None:
        """A short description of how ``metrics`` breaks this constraint, or None."""
        v = metrics.get(self.metric)
        if v is None or not math.isfinite(float(v)):
            return f"{self.metric} missing"
        if self.min is not None and v < self.min:
            return f"{self.metric} {v:.6g} < min {self.min:.6g}"
        if self.max is not None and v > self.max:
            return f"{self.metric} {v:.6g} > max {self.max:.6g}"
        return None


def limit_constraints(limits: Iterable[Mapping[str, Any]]) -> list[Constraint]:
    """A target's resolved limits (``[{metric, max, ...}]``) as constraints."""
    return [Constraint(metric=str(t["metric"]), max=float(t["max"])) for t in limits]


class BudgetConfig(_Strict):
    candidates: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_budget(self) -> BudgetConfig:
        if self.candidates is None and self.minutes is None:
            raise ValueError("give candidates and/or minutes")
        return self


class ExperimentConfig(_Strict):
    # a plain file name (the default run directory is runs/<name>): no "..", no separators
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", max_length=100)
    seed: int = 0
    model: ModelConfig
    data: DataConfig
    space: PluginConfig
    profiles: list[ProfileConfig] = [ProfileConfig(name="flops")]
    reward: RewardConfig = RewardConfig(name="accuracy")
    objectives: list[Objective] = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]
    constraints: list[Constraint] = []
    target: TargetConfig | None = Field(None, description="upper limits relative to the uncompressed model or absolute, e.g. {macs: 0.5}: every agent's proposals are projected onto them (automc.targets)")
    agent: PluginConfig = PluginConfig(name="random")
    budget: BudgetConfig
    storage: str | None = Field(None, description="Optuna storage URL (default: SQLite in the run directory)")
    finetune: FinetuneConfig | None = None
    proxy: ProxyConfig | None = Field(None, description="train each candidate of an architecture space on a proxy task before scoring it (default: ProxyConfig's settings)")
    fidelity: FidelityConfig | None = Field(None, description="rank candidates by short KD fine-tunes (successive halving); default: BN-recalibrated scores only")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="where candidates are evaluated, BN-recalibrated and recovered (latency profiles measure on their own device)")

    @model_validator(mode="after")
    def _finetune_device(self) -> ExperimentConfig:
        # recovery and proxy training run where the evaluation runs unless their section says otherwise
        update = {k: v.model_copy(update={"device": self.device}) for k, v in (("finetune", self.finetune), ("proxy", self.proxy)) if v is not None and v.device is None}
        return self.model_copy(update=update) if update else self


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the sub-model at ``loc`` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else (args[0] if args else None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _user_error(exc: ValidationError, model: type[BaseModel], source: str) -> UserError:
    """The first validation error as one line naming the field and what is allowed."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        valid = ", ".join(_valid_keys(model, parent))
        return UserError(f"{source}: unknown key {key!r} in {_location(parent)}; valid keys: {valid}", field=_location(loc))
    if err["type"] == "missing":
        return UserError(f"{source}: {_location(loc)} is required", field=_location(loc))
    if err["type"] == "literal_error":
        allowed = err.get("ctx", {}).get("expected", "")
        return UserError(f"{source}: {_location(loc)} is {err.get('input')!r}; allowed values: {allowed}", field=_location(loc))
    if err["type"] == "string_pattern_mismatch" and loc == ("name",):
        return UserError(f"{source}: name {err.get('input')!r} must be a plain file name (letters, digits, '_', '.', '-'; not starting with '.' or '-'): it names the run directory runs/<name>", field="name")
    msg = err["msg"].removeprefix("Value error, ")
    return UserError(f"{source}: {_location(loc)}: {msg} (got {err.get('input')!r})", field=_location(loc))


def validated(model: type[_M], source: str, **values: Any) -> _M:
    """``model(**values)``, or a one-line UserError naming the field (for CLI options)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _user_error(exc, model, source) from None


def parse_config(data: Any, source: str = "config") -> ExperimentConfig:
    """Validate a mapping into an :class:`ExperimentConfig`, or raise a one-line UserError."""
    if not isinstance(data, dict):
        raise UserError(f"{source} must be a YAML mapping of settings, got {type(data).__name__}")
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise _user_error(exc, ExperimentConfig, source) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"experiment file {p} does not exist: check the path (examples are in experiments/)")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{p} is not valid YAML{where}: {what}") from None
    except UnicodeDecodeError:
        raise UserError(f"{p} is not a text (UTF-8) YAML file") from None
    return parse_config(data, str(p))


def resolved_config(raw: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """``raw`` as this version of automc resolves it (defaults filled in): how a run's stored
    config is compared with a new one."""
    return parse_config(dict(raw), source).model_dump(mode="json")
