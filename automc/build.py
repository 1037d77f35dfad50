"""The one builder of "data + model + evaluator (+ space)" that the search and every command use.

:func:`open_data` loads a dataset's evaluation and calibration splits and draws the seeded,
disjoint calibration / validation subsets; :class:`Data` then builds the model (zoo name or
``module:function``, weights or ``pretrained``), the evaluator on those subsets and a search
space calibrated on them. Two commands given the same settings therefore evaluate on the very
same images, which is what makes a search's figures reproducible by ``apply`` and ``export``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.compress.spaces import SearchSpace, build_space
from automc.datasets import ImageDataset, Split, get_dataset
from automc.datasets.base import calibration_and_validation
from automc.errors import UserError
from automc.measure.evaluator import Evaluator, EvaluatorConfig
from automc.models import load_model
from automc.settings import resolve_device

CALIBRATION_BATCH = 64  # images per calibration batch (BN statistics, activation ranges)


@dataclass
class Data:
    """A dataset's evaluation split and calibration split with their fixed subsets."""

    dataset: ImageDataset
    split: Split
    calibration_split: Split
    calibration_indices: np.ndarray
    validation_indices: np.ndarray | None
    seed: int

    def model(self, name: str, weights: str | os.PathLike[str] | None = None, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
        """:func:`dataset_model` for this data."""
        return dataset_model(self.dataset, name, weights, kwargs)

    def example_input(self) -> torch.Tensor:
        """One input image shaped like the data (batch of 1)."""
        return self.split.example_input(1)

    def calibration_batches(self, batches: int) -> list[torch.Tensor]:
        """The first ``batches`` plain calibration batches (spaces' activation ranges)."""
        xc, _ = self.calibration_split.tensors(self.calibration_indices[: batches * CALIBRATION_BATCH])
        return [xc[i : i + CALIBRATION_BATCH] for i in range(0, len(xc), CALIBRATION_BATCH)]

    def evaluator(self, *, bn_calibration_batches: int, threads: int | None = None, batch_size: int = 256, device: str = "cpu") -> Evaluator:
        """The evaluator on the validation subset, recalibrating BN on ``bn_calibration_batches``
        batches of the calibration subset (0: no recalibration), running on ``device`` (a
        ``device:`` setting, resolved here: ``cuda`` without a GPU is a user error)."""
        where = str(resolve_device(device))
        config = EvaluatorConfig(batch_size=batch_size, threads=threads, bn_calibration_batches=bn_calibration_batches, seed=self.seed, device=where)
        calibration = (self.calibration_split, self.calibration_indices) if bn_calibration_batches else None
        return Evaluator(self.split, self.validation_indices, calibration=calibration, config=config)

    def space(self, name: str, model: nn.Module, config: Mapping[str, Any] | None, *, batches: int) -> SearchSpace:
        """The search space ``name`` over ``model``, calibrated on ``batches`` batches."""
        return build_space(name, model, self.example_input(), calibration=self.calibration_batches(batches), config=config)


def dataset_model(dataset: ImageDataset, name: str, weights: str | os.PathLike[str] | None = None, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Build model ``name`` for ``dataset``'s classes and channels, with ``weights`` (a path,
    ``pretrained`` or None) loaded ``weights_only``; eval mode."""
    return load_model(name, weights=weights, data_dir=dataset.data_dir, num_classes=dataset.num_classes, in_channels=dataset.in_channels, kwargs=kwargs)


def open_data(
    dataset: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    verify: bool = True,
    split: str | None = None,
    calibration_split: str | None = None,
    calibration_images: int,
    validation: int | None = None,
    seed: int = 0,
    separate_calibration: bool = True,
) -> Data:
    """Load ``dataset`` and draw its subsets.

    ``split`` defaults to the dataset's evaluation split and ``calibration_split`` to its
    training split. ``validation`` images (None: all) of the split and ``calibration_images``
    of the calibration split are drawn with ``seed``; without ``separate_calibration`` both
    come from the evaluation split, disjointly (no training split is read at all).
    """
    if validation is not None and validation < 1:
        raise UserError(f"the validation subset must hold >= 1 image, got {validation}", field="validation")
    if calibration_images < 0:
        raise UserError(f"calibration images must be >= 0, got {calibration_images}", field="calibration")
    ds = get_dataset(dataset, Path(data_dir) if data_dir is not None else None, verify=verify)
    eval_split = ds.load(split or ds.eval_split())
    cal_split = ds.load(calibration_split or ds.calibration_split()) if separate_calibration else eval_split
    cal_idx, val_idx = calibration_and_validation(eval_split, cal_split, calibration=calibration_images, validation=validation, seed=seed)
    return Data(ds, eval_split, cal_split, cal_idx, val_idx, seed)
