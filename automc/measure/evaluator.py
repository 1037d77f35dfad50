"""Deterministic accuracy/loss evaluation on a fixed subset, with optional BN recalibration.

The evaluator materialises its validation (and calibration) tensors once, so evaluating many
candidates in a search costs only forward passes. A candidate whose channels were pruned or
whose weights were quantised has stale BatchNorm statistics; recalibrating them on a few
calibration batches (AMC, NetAdapt and OFA all do this) recovers most of the accuracy at no
training cost. The model passed in is never modified: recalibration works on a copy.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from automc.compress.analysis import eval_mode, outputs_close
from automc.compress.quant import FLOAT_BITS, calibrate_activations, quant_layers
from automc.datasets.base import Split
from automc.errors import UserError


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (unchanged when ``n`` is None)."""
    if n is None:
        yield
        return
    if n < 1:
        raise UserError(f"threads must be >= 1, got {n}", field="threads")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def recalibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Recompute every BatchNorm's running mean/var as the plain average over ``batches``.

    Works in place on ``model`` (pass a copy); only BN layers run in train mode, so dropout
    and other train-time behaviour stay off.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns or not batches:
        return model
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over the batches
        bn.train()
    with torch.no_grad():
        for xb in batches:
            model(xb)
    for bn, m in zip(bns, momenta):
        bn.momentum = m
        bn.eval()
    return model


@dataclass(frozen=True)
class EvaluatorConfig:
    """How candidates are evaluated. Defaults suit a search; the CLI exposes each field."""

    batch_size: int = 256
    threads: int | None = None
    bn_calibration_batches: int = 0
    calibration_batch_size: int = 64
    # Calibrate on training-augmented images: BN statistics of a trained network describe the
    # augmented training distribution, and plain images shift them (-3 points on ResNet-20).
    calibration_augment: bool = True
    seed: int = 0
    # Where forward passes run (a resolved device: see automc.settings.resolve_device). Models
    # come in and go out on the CPU either way; only the work moves.
    device: str = "cpu"
    # NHWC ("channels_last") tensors: oneDNN's convolutions run about 1.5× faster on CPUs.
    # None: use them for image inputs when the model accepts them and its outputs agree
    # (checked once, on the first model prepared); False: never.
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}", field="batch_size")
        if self.bn_calibration_batches < 0:
            raise UserError(f"bn_calibration_batches must be >= 0, got {self.bn_calibration_batches}", field="bn_calibration_batches")
        if self.calibration_batch_size < 1:
            raise UserError(f"calibration_batch_size must be >= 1, got {self.calibration_batch_size}", field="calibration_batch_size")


class Evaluator:
    """``evaluator(model) -> {"accuracy", "loss", "samples"}`` on a fixed validation subset.

    ``calibration`` (split + indices) supplies the BN-recalibration batches; it should be
    disjoint from the validation indices (draw both with :meth:`Split.subsets`). Results are
    deterministic for a given model, subset and thread count.
    """

    def __init__(
        self,
        split: Split,
        indices: np.ndarray | None = None,
        *,
        calibration: tuple[Split, np.ndarray] | None = None,
        config: EvaluatorConfig | None = None,
    ) -> None:
        self.config = config or EvaluatorConfig()
        self.split = split
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)
        if len(self.indices) == 0:
            raise UserError("the validation subset is empty: ask for at least one sample", field="validation")
        self._x, self._y = split.tensors(self.indices)
        self._nhwc: bool | None = self.config.channels_last if self._x.dim() == 4 else False
        self._x_nhwc: torch.Tensor | None = None  # the validation images in NHWC, made once
        self._layouts: dict[tuple[str, bool], list[torch.Tensor]] = {}  # calibration batches per (kind, NHWC), made once
        self._calib: list[torch.Tensor] = []
        self._calib_plain: list[torch.Tensor] = []
        need = self.config.bn_calibration_batches
        if need:
            if calibration is None:
                raise UserError(
                    "bn_calibration_batches > 0 needs calibration data: pass calibration=(split, indices)",
                    field="bn_calibration_batches",
                )
            cal_split, cal_idx = calibration
            cal_idx = np.asarray(cal_idx)[: need * self.config.calibration_batch_size]
            if len(cal_idx) == 0:
                raise UserError("the calibration subset is empty", field="calibration")
            rng = np.random.default_rng(self.config.seed) if self.config.calibration_augment else None
            xc, _ = cal_split.tensors(cal_idx, augment_rng=rng)
            self._calib = [xb for xb, _ in _batches(xc, torch.empty(len(xc)), self.config.calibration_batch_size)]
            plain, _ = cal_split.tensors(cal_idx) if rng is not None else (xc, None)
            self._calib_plain = [xb for xb, _ in _batches(plain, torch.empty(len(plain)), self.config.calibration_batch_size)]

    @property
    def samples(self) -> int:
        return len(self.indices)

    def calibration_batches(self, *, augmented: bool = False) -> list[torch.Tensor]:
        """The calibration batches (plain by default; ``augmented`` as used for BN)."""
        return list(self._calib if augmented else self._calib_plain)

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation inputs and targets this evaluator uses."""
        return self._x, self._y

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.split.example_input(batch_size)

    def prepare(self, model: nn.Module, *, in_place: bool = False) -> nn.Module:
        """The model as it is evaluated: a BN-recalibrated copy when configured, else itself
        (``in_place``: recalibrate ``model`` itself — for a fresh model nobody else holds).

        Quantised layers' activation ranges are re-calibrated after the BN statistics change
        (on the un-augmented calibration images, as a deployment calibrator would see them).
        """
        if not self._calib:
            return model
        dev = torch.device(self.config.device)
        with torch_threads(self.config.threads):
            out = (model if in_place else copy.deepcopy(model)).to(dev)
            nhwc = self._channels_last(out)
            if nhwc:
                out = out.to(memory_format=torch.channels_last)
                out._automc_nhwc = True  # its inputs go in NHWC too (see __call__)
            recalibrate_batchnorm(out, [b.to(dev) for b in self._laid_out("augmented", nhwc)])
            if any(m.a_bits < FLOAT_BITS for m in quant_layers(out).values()):
                calibrate_activations(out, [b.to(dev) for b in self._laid_out("plain", nhwc)])
        return out.cpu()

    def _laid_out(self, kind: str, nhwc: bool) -> list[torch.Tensor]:
        """The calibration batches (``augmented`` or ``plain``) in the evaluation layout,
        converted once per evaluator instead of once per candidate."""
        key = (kind, nhwc)
        if key not in self._layouts:
            self._layouts[key] = [self._layout(b, nhwc) for b in (self._calib if kind == "augmented" else self._calib_plain)]
        return self._layouts[key]

    @staticmethod
    def _layout(x: torch.Tensor, nhwc: bool) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if nhwc else x

    def _channels_last(self, model: nn.Module) -> bool:
        """Whether to run ``model`` in NHWC: decided on the first model (it runs and agrees
        with NCHW up to float rounding, else never), then kept for every later one."""
        if self._nhwc is None:
            xb = (self._calib[0] if self._calib else self._x)[:16]
            try:
                with eval_mode(model), torch.no_grad():
                    ref = model(xb)
                    alt = copy.deepcopy(model).to(memory_format=torch.channels_last)(self._layout(xb, True))
                self._nhwc = isinstance(ref, torch.Tensor) and isinstance(alt, torch.Tensor) and outputs_close(alt, ref)
            except Exception:  # noqa: BLE001 - e.g. a view() that needs NCHW strides: stay with NCHW
                self._nhwc = False
        return bool(self._nhwc)

    def __call__(self, model: nn.Module, *, prepared: bool = False, on_batch: Callable[[int], None] | None = None) -> dict[str, float]:
        """Top-1 accuracy (fraction), mean cross-entropy loss and sample count.

        ``prepared=True`` says ``model`` already came from :meth:`prepare` (so it is not
        recalibrated twice). ``on_batch(n)`` is called after each batch of ``n`` samples.
        """
        target = model if prepared else self.prepare(model)
        dev = torch.device(self.config.device)
        nhwc = self._channels_last(target)  # every evaluation by this evaluator in one layout
        if nhwc and not getattr(target, "_automc_nhwc", False):
            target = copy.deepcopy(target).to(memory_format=torch.channels_last)  # the caller's model keeps its layout
        if dev.type != "cpu":
            target = copy.deepcopy(target).to(dev)  # the caller's model stays where it is
        correct = 0
        loss_sum = 0.0
        x = self._x
        if nhwc:
            if self._x_nhwc is None:
                self._x_nhwc = self._layout(self._x, True)
            x = self._x_nhwc
        with torch_threads(self.config.threads), eval_mode(target), torch.no_grad():
            for xb, yb in _batches(x, self._y, self.config.batch_size):
                logits = target(xb.to(dev)).cpu()
                loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
                correct += int((logits.argmax(1) == yb).sum())
                if on_batch is not None:
                    on_batch(len(yb))
        n = len(self._y)
        return {"accuracy": correct / n, "loss": loss_sum / n, "samples": float(n)}
