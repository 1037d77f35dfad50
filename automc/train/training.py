"""A short, deterministic supervised training / fine-tuning routine.

Used to train the small CNN for the quickstart and, later, to fine-tune compressed
candidates. SGD with Nesterov momentum and a cosine schedule; seeded shuffling; optional
training augmentation as the dataset defines it (CIFAR: black-padded random crop + flip).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn

from automc.datasets.base import Split
from automc.errors import UserError
from automc.measure.evaluator import torch_threads
from automc.recipes import TrainConfig


def sgd_cosine(
    params: Iterable[nn.Parameter], *, lr: float, momentum: float, weight_decay: float, steps: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """The optimiser every automc training loop uses: SGD (Nesterov when ``momentum`` > 0) with
    weight decay on weights only — none on biases and norm scales (1-d tensors), which decay
    would only pull toward zero — and a cosine schedule over ``steps`` optimiser steps."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        momentum=momentum,
        nesterov=momentum > 0,
    )
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)


def train_classifier(
    model: nn.Module,
    split: Split,
    indices: np.ndarray | None = None,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    threads: int | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``split[indices]`` with the recipe ``config``, shuffling and
    augmenting with ``seed`` on ``threads`` intra-op threads; returns each epoch's mean loss."""
    cfg = config or TrainConfig()
    idx = np.arange(len(split)) if indices is None else np.asarray(indices)
    if len(idx) == 0:
        raise UserError("no training samples selected", field="train")
    raw = split.images(idx)
    y_all = torch.from_numpy(split.labels[idx].copy())
    x_plain = None if cfg.augment else split.normalize(raw)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    steps_per_epoch = math.ceil(len(idx) / cfg.batch_size)
    opt, sched = sgd_cosine(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, steps=cfg.epochs * steps_per_epoch)
    history: list[float] = []
    model.train()
    with torch_threads(threads):
        for epoch in range(cfg.epochs):
            perm = torch.randperm(len(idx), generator=gen)
            total = 0.0
            for start in range(0, len(idx), cfg.batch_size):
                b = perm[start : start + cfg.batch_size]
                yb = y_all[b]
                if x_plain is None:
                    xb = split.normalize(split.augment(raw[b.numpy()], rng))
                else:
                    xb = x_plain[b]
                loss = nn.functional.cross_entropy(model(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(b)
            history.append(total / len(idx))
            if on_epoch is not None:
                on_epoch(epoch, history[-1])
    model.eval()
    return history
