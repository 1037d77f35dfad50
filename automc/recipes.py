"""The training recipes of an experiment — base model training (``model.train``), recovery of
the finalists (``finetune``), proxy training of architecture candidates (``proxy``) and the
multi-fidelity rungs (``fidelity``) — and the strict pydantic base every config section
shares. Re-exported by :mod:`automc.config`, where experiments are parsed."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class DistillConfig(_Strict):
    """Knowledge distillation from the uncompressed model (:mod:`automc.train.distill`)."""

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


class TrainRecipe(_Strict):
    """How a compressed or searched model is trained against a teacher
    (:func:`automc.train.recovery.recover`): SGD, distillation, training under compression.
    ``section`` names the experiment section in messages."""

    section: ClassVar[str] = "finetune"

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


class FinetuneConfig(TrainRecipe):
    """Recovery of the finalists after the search (:mod:`automc.recover`): which candidates,
    the training recipe, distillation and where it runs."""

    candidates: Literal["front", "best", "top"] = "front"
    top: int = Field(3, ge=1, description="how many of the best-rewarded feasible candidates with candidates: top")


class ProxyConfig(TrainRecipe):
    """MNasNet's proxy task: how every candidate of a space that builds untrained models (the
    ``architecture`` space) is trained before it is scored — a few epochs on a seeded subset
    of the training split, from scratch, distilling from ``teacher`` (or the base model) only
    when ``distill`` is set. Part of what a candidate's score means: a change makes another
    run."""

    section: ClassVar[str] = "proxy"

    epochs: int = Field(2, ge=1)
    lr: float = Field(0.05, gt=0, allow_inf_nan=False)
    train_images: int | None = Field(5000, ge=1, description="a seeded subset of the training split (None: all of it)")
    distill: DistillConfig | None = None


class FidelityConfig(_Strict):
    """Multi-fidelity ranking (:mod:`automc.recover.fidelity`): every candidate gets the
    BN-recalibrated score; successive halving promotes the best of each rung to a short KD
    fine-tune of ``steps[k]`` steps in all (the ``finetune`` recipe), and the candidate is
    ranked by the accuracy of the last rung it reached. ``promote: all`` fine-tunes every
    candidate through every rung (NetAdapt's short-term fine-tune of each proposal)."""

    steps: list[int] = Field([100, 300], min_length=1, description="total fine-tune steps at rung 1, 2, ... (increasing)")
    reduction_factor: int = Field(3, ge=2, description="successive halving's eta: about 1/eta of a rung is promoted")
    promote: Literal["halving", "all"] = Field("halving", description="halving: successive halving decides; all: every candidate climbs every rung")

    @model_validator(mode="after")
    def _increasing(self) -> FidelityConfig:
        if any(s < 1 for s in self.steps) or any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"steps must be positive and increasing, got {self.steps}")
        return self
