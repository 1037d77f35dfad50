"""The recovery training loop: one compressed model, its teacher, checkpoints each epoch.

SGD with Nesterov momentum and a cosine schedule over all steps (no weight decay on biases
and norms), the loss of :class:`automc.train.distill.Distiller`, compressed weights held
compressed by :mod:`automc.train.qat`. Every epoch's shuffling, augmentation and dropout
are seeded from ``(seed, epoch)``, so an epoch run after a resume is the epoch an
uninterrupted run would have run: a killed recovery continued from its last checkpoint ends
with the very same weights (for the same thread count).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from automc.datasets.base import Split
from automc.errors import UserError
from automc.recipes import TrainRecipe
from automc.settings import resolve_device
from automc.train.distill import Distiller
from automc.train.qat import finish_qat, prepare_qat
from automc.train.training import sgd_cosine

Progress = Callable[[Mapping[str, Any]], None]


class Checkpoints(Protocol):
    """Where a recovery keeps its last epoch (see :class:`automc.recover.finalists.RunCheckpoints`)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...


@dataclass
class Recovered:
    """A finished recovery: the trained model (CPU, eval mode, compression baked in) and how."""

    model: nn.Module
    history: list[dict[str, float]]
    seconds: float
    qat_layers: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, tuple[int, int]] = field(default_factory=dict)
    feature_points: dict[str, str] = field(default_factory=dict)
    resumed_at_epoch: int = 0


def build_distiller(teacher: nn.Module, student: nn.Module, example_input: torch.Tensor, cfg: TrainRecipe) -> Distiller:
    """The loss for ``cfg`` (plain cross-entropy without ``distill``), checked on
    ``example_input``: a teacher whose classes differ from the student's is a user error."""
    with torch.no_grad():
        t_out, s_out = teacher.eval()(example_input), student.eval()(example_input)
    if t_out.shape[-1] != s_out.shape[-1]:
        raise UserError(f"{cfg.section}.distill: the teacher predicts {t_out.shape[-1]} classes but the student {s_out.shape[-1]}: distil from a model of the same task", field=f"{cfg.section}.distill")
    d = cfg.distill
    if d is None:
        return Distiller(teacher, student, example_input, kinds=(), temperature=1.0, alpha=0.0, feature_weight=0.0, relation_weight=0.0, relation="similarity", layers=None)
    return Distiller(
        teacher,
        student,
        example_input,
        kinds=d.kinds,
        temperature=d.temperature,
        alpha=d.alpha,
        feature_weight=d.feature_weight,
        relation_weight=d.relation_scale(),
        relation=d.relation,
        layers=d.layers,
    )


def finetune_device(cfg: TrainRecipe) -> torch.device:
    """Where ``cfg`` trains (a section parsed inside an experiment carries the experiment's
    device; one built on its own trains on the CPU)."""
    return resolve_device(cfg.device or "cpu", f"{cfg.section}.device")


def _epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def recover(
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    indices: np.ndarray,
    *,
    cfg: TrainRecipe,
    example_input: torch.Tensor,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    checkpoints: Checkpoints | None = None,
    on_progress: Progress | None = None,
) -> Recovered:
    """Train ``student`` (in place) on ``train[indices]`` against ``teacher`` by ``cfg``.

    Continues from ``checkpoints`` when they hold an epoch, and saves one after every epoch.
    ``validation`` (inputs, labels) is scored after each epoch for the progress display and
    the history (never used to pick weights). ``on_progress`` receives ``{"event": "step" |
    "epoch", ...}`` mappings.
    """
    if len(indices) == 0:
        raise UserError(f"{cfg.section}: no training images selected", field=f"{cfg.section}.train_images")
    device = finetune_device(cfg)
    distiller = build_distiller(teacher, student, example_input, cfg)
    plan = prepare_qat(student) if cfg.qat else None
    student.to(device)
    teacher.to(device).eval()
    distiller.to(device)
    params = list(student.parameters()) + list(distiller.parameters())
    steps = math.ceil(len(indices) / cfg.batch_size)
    opt, sched = sgd_cosine(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, steps=cfg.epochs * steps)
    history: list[dict[str, float]] = []
    start = 0
    state = checkpoints.load() if checkpoints is not None else None
    if state is not None:
        student.load_state_dict(state["student"])
        distiller.load_state_dict(state["distiller"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = json.loads(state["history"])
        start = int(state["epoch"])
    raw = train.images(np.asarray(indices))
    labels = torch.from_numpy(train.labels[np.asarray(indices)].astype(np.int64))
    plain = None if cfg.augment else train.normalize(raw)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        es = _epoch_seed(seed, epoch)
        torch.manual_seed(es)  # dropout and anything else random inside the model
        perm = torch.randperm(len(indices), generator=torch.Generator().manual_seed(es))
        rng = np.random.default_rng(es)
        sums: dict[str, float] = {}
        student.train()
        for step, s0 in enumerate(range(0, len(indices), cfg.batch_size)):
            b = perm[s0 : s0 + cfg.batch_size]
            xb = plain[b] if plain is not None else train.normalize(train.augment(raw[b.numpy()], rng))
            loss, terms = distiller(student, xb.to(device), labels[b].to(device))
            if not math.isfinite(terms["loss"]):
                raise RuntimeError(f"recovery diverged at epoch {epoch + 1}, step {step + 1} (loss {terms['loss']}): lower {cfg.section}.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(b)
            if on_progress is not None:
                on_progress({"event": "step", "epoch": epoch + 1, "epochs": cfg.epochs, "step": step + 1, "steps": steps, **terms})
        record = {"epoch": float(epoch + 1), **{k: v / len(indices) for k, v in sums.items()}, "lr": float(sched.get_last_lr()[0])}
        if validation is not None:
            record["val_accuracy"] = _accuracy(student, validation, device)
        record["seconds"] = time.perf_counter() - t0
        history.append(record)
        if checkpoints is not None:
            checkpoints.save(
                {
                    "epoch": epoch + 1,
                    "student": student.state_dict(),
                    "distiller": distiller.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "history": json.dumps(history),
                }
            )
        if on_progress is not None:
            on_progress({"event": "epoch", **record, "epochs": cfg.epochs})
    if cfg.qat:
        finish_qat(student)
    student.to("cpu").eval()
    teacher.to("cpu")
    return Recovered(
        student,
        history,
        sum(h["seconds"] for h in history),
        dict(plan.layers) if plan is not None else {},
        distiller.adapter_shapes(),
        {s: t for s, (t, _, _) in distiller.points.items()},
        start,
    )


def _accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], device: torch.device, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` as it stands (eval mode, no recalibration)."""
    x, y = data
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            correct += int((model(x[s : s + batch_size].to(device)).argmax(1).cpu() == y[s : s + batch_size]).sum())
    model.train()
    return correct / max(1, len(x))
