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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from automc.errors import UserError
from automc.targets import TargetConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_M = TypeVar("_M", bound=BaseModel)


class TrainConfig(_Strict):
    """A training recipe (SGD, Nesterov momentum, cosine schedule): ``automc train``, and an
    experiment's ``model.train`` (train the base model first when no weights are given; the
    result is kept in the run). The seed and thread count are the run's, not the recipe's."""

    epochs: int = Field(10, ge=1)
    lr: float = Field(0.05, gt=0, allow_inf_nan=False)
    batch_size: int = Field(64, ge=1)
    momentum: float = Field(0.9, ge=0, allow_inf_nan=False)
    weight_decay: float = Field(5e-4, ge=0, allow_inf_nan=False)
    augment: bool = False


class ModelConfig(_Strict):
    name: str
    weights: str | None = None
    kwargs: dict[str, Any] = {}
    train: TrainConfig | None = None


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


class DistillConfig(_Strict):
    """Knowledge distillation from the uncompressed model (:mod:`automc.recover.distill`)."""

    kinds: list[Literal["response", "feature", "relation"]] = ["response"]
    temperature: float = Field(4.0, gt=0, allow_inf_nan=False)
    alpha: float = Field(0.9, ge=0, le=1, description="weight of response KD; cross-entropy gets 1 - alpha")
    feature_weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    relation: Literal["similarity", "distance"] = "similarity"
    relation_weight: float | None = Field(None, ge=0, allow_inf_nan=False, description="default: 3000 (similarity), 25 (distance), as their papers")
    layers: list[str] | dict[str, str] | None = Field(None, description="feature points (student: teacher); default: stage outputs")

    def relation_scale(self) -> float:
        """The relation loss weight, defaulting per method."""
        if self.relation_weight is not None:
            return self.relation_weight
        return 3000.0 if self.relation == "similarity" else 25.0


class FinetuneConfig(_Strict):
    """Recovery of the finalists after the search (:mod:`automc.recover`): which candidates,
    the training recipe, distillation and where it runs."""

    candidates: Literal["front", "best", "top"] = "front"
    top: int = Field(3, ge=1, description="how many of the best-rewarded feasible candidates with candidates: top")
    epochs: int = Field(10, ge=1)
    lr: float = Field(0.01, gt=0, allow_inf_nan=False)
    batch_size: int = Field(128, ge=1)
    momentum: float = Field(0.9, ge=0, allow_inf_nan=False)
    weight_decay: float = Field(5e-4, ge=0, allow_inf_nan=False)
    train_split: str | None = Field(None, description="default: the dataset's training split")
    train_images: int | None = Field(None, ge=1, description="a seeded subset of the training split (None: all of it)")
    augment: bool = True
    distill: DistillConfig | None = DistillConfig()
    teacher: ModelConfig | None = Field(None, description="distil from this model (default: the uncompressed base model)")
    qat: bool = Field(True, description="train quantised layers with their fake quantisers (bit-widths kept)")
    device: Literal["auto", "cpu", "cuda"] | None = Field(None, description="default: the experiment's device")


class FidelityConfig(_Strict):
    """Multi-fidelity ranking (:mod:`automc.recover.fidelity`): every candidate gets the
    BN-recalibrated score; successive halving promotes the best of each rung to a short KD
    fine-tune of ``steps[k]`` steps in all (the ``finetune`` recipe), and the candidate is
    ranked by the accuracy of the last rung it reached."""

    steps: list[int] = Field([100, 300], min_length=1, description="total fine-tune steps at rung 1, 2, ... (increasing)")
    reduction_factor: int = Field(3, ge=2, description="successive halving's eta: about 1/eta of a rung is promoted")

    @model_validator(mode="after")
    def _increasing(self) -> FidelityConfig:
        if any(s < 1 for s in self.steps) or any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"steps must be positive and increasing, got {self.steps}")
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
    fidelity: FidelityConfig | None = Field(None, description="rank candidates by short KD fine-tunes (successive halving); default: BN-recalibrated scores only")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="where candidates are evaluated, BN-recalibrated and recovered (latency profiles measure on their own device)")

    @model_validator(mode="after")
    def _finetune_device(self) -> ExperimentConfig:
        # recovery runs where the evaluation runs unless its section says otherwise
        if self.finetune is not None and self.finetune.device is None:
            return self.model_copy(update={"finetune": self.finetune.model_copy(update={"device": self.device})})
        return self


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
