"""The images and teacher a training recipe uses inside a run: the training split, the seeded
subset of it that never holds a validation image, and the teacher to distil from.

Shared by the proxy training of architecture candidates (:mod:`automc.search.proxy`), the
multi-fidelity rungs and the recovery of finalists (:mod:`automc.recover`).
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from automc.build import dataset_model
from automc.config import ExperimentConfig
from automc.datasets import get_dataset
from automc.datasets.base import Split
from automc.errors import UserError, notice
from automc.measure.evaluator import Evaluator
from automc.recipes import TrainRecipe


class RunParts(Protocol):
    """What these helpers read of a run's context (:class:`automc.search.context.Context`)."""

    config: ExperimentConfig
    model: nn.Module
    evaluator: Evaluator


def teacher_of(ctx: RunParts, recipe: TrainRecipe) -> torch.nn.Module:
    """``recipe``'s teacher (built for the dataset, weights loaded), else a copy of the
    uncompressed base model."""
    if recipe.teacher is None:
        return copy.deepcopy(ctx.model)
    t = recipe.teacher
    ds = get_dataset(ctx.config.data.dataset, ctx.config.data.data_dir, verify=ctx.config.data.verify)
    return dataset_model(ds, t.name, t.weights, t.kwargs)


def training_split(ctx: RunParts, recipe: TrainRecipe) -> tuple[str, Split]:
    """The split ``recipe`` trains on (default: the dataset's training split), loaded; a split the
    dataset lacks is one line naming ``<section>.train_split``."""
    cfg = ctx.config
    ds = get_dataset(cfg.data.dataset, cfg.data.data_dir, verify=cfg.data.verify)
    split = recipe.train_split or ds.calibration_split()
    if split not in ds.splits:
        raise UserError(f"{recipe.section}.train_split {split!r} is not a split of {ds.name}; splits: {', '.join(ds.splits)}", field=f"{recipe.section}.train_split")
    return split, ds.load(split)


def training_indices(ctx: RunParts, split_name: str, images: int | None, seed: int, train_split: Any, *, quiet: bool = False, section: str = "finetune") -> np.ndarray:
    """The training images: all of ``train_split`` (or a seeded subset of ``images``), never
    one of the images the run validates on — nor a copy of one (``Split.shared_with``);
    ``quiet`` leaves out the notice saying so (dry runs); ``section`` names the setting in messages."""
    idx = np.arange(len(train_split))
    shared = train_split.shared_with(ctx.evaluator.split, ctx.evaluator.indices)
    if len(shared):
        idx = np.setdiff1d(idx, shared)
        if not quiet:
            notice(f"{section} trains on {split_name!r}, which holds the run's validation images (from {ctx.evaluator.split.name!r}): those {len(shared)} are left out")
    if images is not None:
        if images > len(idx):
            raise UserError(f"{section}.train_images is {images} but {split_name!r} has only {len(idx)} usable images: ask for fewer", field=f"{section}.train_images")
        rng = np.random.default_rng([seed, 7])
        idx = np.sort(rng.choice(idx, size=images, replace=False))
    return idx
