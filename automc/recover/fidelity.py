"""Multi-fidelity ranking: rank policies by what they become after a short recovery.

A BN-recalibrated score says how a policy looks before training; what a user ships is the
policy after fine-tuning, and the two orders differ. With a ``fidelity:`` section every
candidate still gets the cheap score (rung 0); successive halving (Optuna's
``SuccessiveHalvingPruner``, asynchronous: ASHA) then promotes a candidate to rung *k* when its
score at rung *k − 1* is within the best ``1/reduction_factor`` of all scores recorded at that
rung. Rung *k* fine-tunes the candidate with the ``finetune`` recipe (KD, QAT, device) to
``steps[k-1]`` steps in all — continuing from the previous rung's weights with a fresh cosine
cycle on a fresh seeded image subset, the same subset for every candidate — and scores it
again. The candidate's ``accuracy`` (and reward) is the score of the last rung it reached;
``accuracy_bn`` keeps its rung-0 score and ``fidelity_steps`` how many steps it had. With
``promote: all`` every candidate climbs every rung (the scores are still reported, the
pruner's decisions ignored): NetAdapt's short-term fine-tune of each proposal.

Each rung's score is the Optuna trial's intermediate value at step ``reduction_factor ** k``
(the steps at which the pruner, with ``min_resource=1``, decides), so the record shows every
promotion. Rung 0 runs where the executor runs (Ray workers too); the higher rungs run in the
driver, before the outcome is recorded — a run killed in a rung evaluates that candidate again.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import optuna
from torch import nn

from automc.compress.quant import FLOAT_BITS, calibrate_activations, quant_layers
from automc.config import ExperimentConfig, FidelityConfig, FinetuneConfig
from automc.datasets.base import Split
from automc.search.candidate import FAILED, Candidate
from automc.search.context import Context, materialize, rewarded
from automc.search.executors import Executor
from automc.search.store import Store
from automc.search.training_data import teacher_of, training_indices, training_split
from automc.train.recovery import recover


def successive_halving(fid: FidelityConfig) -> optuna.pruners.SuccessiveHalvingPruner:
    """The study's pruner: rung *k* decided at step ``reduction_factor ** k``."""
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=fid.reduction_factor, min_early_stopping_rate=0, bootstrap_count=0)


def rung_step(fid: FidelityConfig, rung: int) -> int:
    """The intermediate-value step at which rung ``rung``'s score is reported."""
    return int(fid.reduction_factor**rung)


def fidelity_recipe(cfg: ExperimentConfig) -> FinetuneConfig:
    """How the rungs train: the ``finetune`` section's recipe (its defaults, on the
    experiment's device, without one); the images come from ``steps`` (see
    :func:`short_recovery`), not from ``train_images``."""
    base = cfg.finetune or FinetuneConfig(device=cfg.device)
    return base.model_copy(update={"train_images": None})


class FidelityExecutor:
    """An :class:`~automc.search.executors.Executor` that raises each finished candidate
    through the rungs its scores earn before handing it to the loop."""

    def __init__(self, inner: Executor, ctx: Context, store: Store, fid: FidelityConfig, recipe: FinetuneConfig) -> None:
        self.inner, self.ctx, self.store, self.fid, self.recipe = inner, ctx, store, fid, recipe
        split, self.train = training_split(ctx, recipe)
        self.pool = training_indices(ctx, split, None, ctx.config.seed, self.train)
        self.teacher = teacher_of(ctx, recipe)

    @property
    def slots(self) -> int:
        return self.inner.slots

    def submit(self, number: int, params: Any) -> None:
        self.inner.submit(number, params)

    def pending(self) -> int:
        return self.inner.pending()

    def close(self) -> None:
        self.inner.close()

    def next_done(self) -> Candidate:
        cand = self.inner.next_done()
        if not cand.ok or cand.duplicate_of is not None:
            return cand
        try:
            return self._climb(cand)
        except Exception as exc:  # noqa: BLE001 - a candidate that breaks in training must not stop the search
            return Candidate(cand.number, dict(cand.params), dict(cand.metrics), None, FAILED, f"fidelity: {type(exc).__name__}: {exc}", dict(cand.timings))

    def _climb(self, cand: Candidate) -> Candidate:
        metrics = {**cand.metrics, "accuracy_bn": float(cand.metrics["accuracy"]), "fidelity_steps": 0.0}
        timings = dict(cand.timings)
        t0 = time.perf_counter()
        model: nn.Module | None = None
        done = 0
        for rung, steps in enumerate(self.fid.steps):
            stop = self.store.report(cand.number, float(metrics["accuracy"]), rung_step(self.fid, rung))
            if stop and self.fid.promote == "halving":
                break
            model = self._train(model if model is not None else materialize(self.ctx, cand.params), steps - done, rung)
            done = steps
            scored = self.ctx.evaluator(model, prepared=True)
            metrics.update(accuracy=float(scored["accuracy"]), loss=float(scored["loss"]), fidelity_steps=float(steps))
        else:
            self.store.report(cand.number, float(metrics["accuracy"]), rung_step(self.fid, len(self.fid.steps)))
        timings["fidelity_s"] = time.perf_counter() - t0
        return rewarded(self.ctx, cand.number, cand.params, metrics, timings)

    def _train(self, model: nn.Module, steps: int, rung: int) -> nn.Module:
        return short_recovery(self.ctx, model, self.teacher, self.train, self.pool, self.recipe, steps=steps, rung=rung)


def short_recovery(ctx: Context, model: nn.Module, teacher: nn.Module, train: Split, pool: np.ndarray, recipe: FinetuneConfig, *, steps: int, rung: int = 0) -> nn.Module:
    """``steps`` steps of ``recipe`` (one cosine cycle) on rung ``rung``'s seeded subset of
    ``pool`` — the same images for every candidate — then activation ranges re-calibrated."""
    seed = ctx.config.seed
    rng = np.random.default_rng([seed, 11, rung])
    size = min(len(pool), steps * recipe.batch_size)
    idx = np.sort(rng.choice(pool, size=size, replace=False))
    one_pass = recipe.model_copy(update={"epochs": 1})
    out = recover(model, teacher, train, idx, cfg=one_pass, example_input=ctx.example_input, seed=seed + rung).model
    if any(m.a_bits < FLOAT_BITS for m in quant_layers(out).values()):
        calibrate_activations(out, ctx.evaluator.calibration_batches())  # ranges of the trained weights
    return out
