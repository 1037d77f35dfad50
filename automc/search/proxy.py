"""Proxy training of architecture candidates: MNasNet's recipe at a CPU's scale.

A space that builds untrained networks (``trains_candidates``, e.g. ``architecture``) has
every candidate trained before it is scored: the experiment's ``proxy:`` recipe
(:class:`automc.recipes.ProxyConfig` — a few epochs on a seeded subset of the training split
that never holds a validation image, SGD with a cosine schedule, distilling from the base
model or ``proxy.teacher`` only when ``proxy.distill`` is set) through the recovery loop
(:func:`automc.train.recovery.recover`), seeded by the run's seed.

The trained weights are kept in the run folder by *architecture*: ``RUN/proxy/KEY.pt``, KEY
hashing the space's canonical form of the policy (the network it builds), the space's
settings, the recipe, the data and what the network learns from. A candidate whose
architecture was trained before — a rerun after a kill, ``automc export``, the recovery of
a finalist, another policy that builds the same network — loads them instead of training
again. Files are written atomically with a checksum; a damaged one is trained again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.compress.spaces import SearchSpace
from automc.datasets.base import Split
from automc.errors import notice
from automc.recipes import ProxyConfig
from automc.run import RunDir
from automc.search.training_data import (
    RunParts,
    teacher_of,
    training_indices,
    training_split,
)
from automc.train.recovery import recover

# settings that say where the proxy trains, not what the trained network is
_NOT_IN_KEY = ("device",)


class ProxyTrainer:
    """``trainer(model, params)``: ``model`` (built by the space from ``params``) trained on
    the proxy task, or loaded from the run's proxy folder when trained before.

    ``run`` None or ``save`` False trains without keeping the weights (dry runs, readers).
    The training split, its subset and the teacher are loaded at the first training."""

    def __init__(self, parts: RunParts, space: SearchSpace, recipe: ProxyConfig, example_input: torch.Tensor, run: RunDir | None, *, save: bool = True) -> None:
        self.parts, self.space, self.recipe, self.example_input = parts, space, recipe, example_input
        self.run, self.save = run, save
        self._data: tuple[Split, np.ndarray, nn.Module] | None = None
        self.trained = 0  # candidates trained (not loaded) by this trainer

    def key(self, params: Mapping[str, Any]) -> str:
        """The hash of what the trained weights depend on (see the module docstring)."""
        cfg = self.parts.config
        recipe = {k: v for k, v in self.recipe.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
        parts: dict[str, Any] = {
            "architecture": repr(self.space.canonical(params)),
            "space": {"name": self.space.name, "config": self.space.config()},
            "recipe": recipe,
            "data": cfg.data.model_dump(mode="json"),
            "seed": cfg.seed,
        }
        if self.recipe.distill is not None:  # what it learns from: the teacher
            parts["teacher"] = self.recipe.teacher.model_dump(mode="json") if self.recipe.teacher else cfg.model.model_dump(mode="json")
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def __call__(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        key = self.key(params)
        run = self.run
        if run is not None:
            why = run.check_tensors(run.proxy_model(key), {"key": key})
            if why is None:
                model.load_state_dict(run.load_tensors(run.proxy_model(key)))
                return model.eval()
            if why != "missing":
                notice(f"{run.proxy_model(key)} {why}: training that architecture again")
        split, indices, teacher = self._training_data()
        trained = recover(model, teacher, split, indices, cfg=self.recipe, example_input=self.example_input, seed=self.parts.config.seed).model
        self.trained += 1
        if run is not None and self.save:
            run.save_tensors(run.proxy_model(key), trained.state_dict(), {"key": key})
        return trained

    def _training_data(self) -> tuple[Split, np.ndarray, nn.Module]:
        if self._data is None:
            name, split = training_split(self.parts, self.recipe)
            indices = training_indices(self.parts, name, self.recipe.train_images, self.parts.config.seed, split, section="proxy")
            teacher = teacher_of(self.parts, self.recipe) if self.recipe.distill is not None else self.parts.model
            self._data = (split, indices, teacher)
        return self._data

