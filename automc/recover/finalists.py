"""Recovering a run's finalists: which candidates, where their training is kept, the record.

Each finalist is rebuilt exactly as the search evaluated it (:func:`automc.search.context.materialize`),
trained against the uncompressed model by :func:`automc.train.recovery.recover`, and
measured again as a candidate is (validation accuracy, every profile of the run). Its folder
``RUN/recovery/<number>-<key>/`` (``key``: hash of the policy, the recipe and the base model)
holds ``checkpoint.pt`` while it trains, then ``model.pt`` (the recovered ``state_dict``) and
``result.json`` (before/after metrics, per-epoch history, timings, how it was trained).
``result.json`` is written last: a finalist that has one is never trained again, one that has
a checkpoint continues from it, and another recipe gets another folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from automc.atomic import atomic_write_text
from automc.compress.quant import FLOAT_BITS, calibrate_activations, quant_layers
from automc.config import Constraint, ExperimentConfig, FinetuneConfig
from automc.errors import UserError, notice
from automc.measure.evaluator import torch_threads
from automc.results.pareto import pareto_front
from automc.run import RECOVERY_CHECKPOINT as CHECKPOINT
from automc.run import RECOVERY_MODEL as MODEL
from automc.run import RECOVERY_RESULT as RESULT
from automc.run import RunDir
from automc.search.candidate import COMPLETE, Candidate
from automc.search.context import Context, base_recipe, materialize
from automc.search.training_data import training_indices, training_split
from automc.train.recovery import Progress, finetune_device, recover

# settings that choose finalists or hardware, not what a finalist becomes
_NOT_IN_KEY = ("candidates", "top", "device")


def select_finalists(cfg: ExperimentConfig, candidates: Sequence[Candidate], ft: FinetuneConfig, constraints: Sequence[Constraint]) -> list[Candidate]:
    """The candidates ``ft.candidates`` names: the Pareto front, the best feasible by reward,
    or the ``ft.top`` best feasible; ordered by reward, best first. ``constraints``: the
    run's, its target's limits included (:func:`automc.results.pareto.run_constraints`)."""
    front = pareto_front(candidates, cfg.objectives, constraints)
    feasible = sorted((c for c, ok in zip(candidates, front.feasible) if ok and c.reward is not None), key=lambda c: -float(c.reward or 0.0))
    if ft.candidates == "front":
        members = {candidates[i].number for i in front.front_indices()}
        return [c for c in feasible if c.number in members]
    return feasible[:1] if ft.candidates == "best" else feasible[: ft.top]


def recovery_key(cfg: ExperimentConfig, cand: Candidate, ft: FinetuneConfig) -> str:
    """Hash of what a recovery's result depends on: policy, recipe, base model, data, seed."""
    recipe = {k: v for k, v in ft.model_dump(mode="json").items() if k not in _NOT_IN_KEY}
    parts = {"params": cand.params, "recipe": recipe, "base": base_recipe(cfg), "weights": cfg.model.weights, "space": cfg.space.model_dump(mode="json"), "data": cfg.data.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class RunCheckpoints:
    """A recovery's last epoch in its run folder (checksummed; a damaged one restarts it)."""

    def __init__(self, run: RunDir, folder: Path) -> None:
        self.run = run
        self.path = folder / CHECKPOINT

    def load(self) -> dict[str, Any] | None:
        why = self.run.check_tensors(self.path)
        if why == "missing":
            return None
        if why is not None:
            notice(f"{self.path} {why}: recovering this candidate from its first epoch")
            return None
        state: dict[str, Any] = self.run.load_tensors(self.path)
        return state

    def save(self, state: dict[str, Any]) -> None:
        self.run.save_tensors(self.path, state)


def recover_candidate(
    ctx: Context,
    run: RunDir,
    cand: Candidate,
    ft: FinetuneConfig,
    *,
    teacher: torch.nn.Module,
    on_progress: Progress | None = None,
    folder: Path | None = None,
) -> dict[str, Any]:
    """Recover one finalist against ``teacher`` (or read its finished recovery); returns its
    ``result.json``. ``folder`` keeps it outside the run's record (an ablation of a policy
    that is no candidate of the run: see ``benchmarks/pqk.py``); default ``RUN/recovery/N-KEY``."""
    cfg = ctx.config
    key = recovery_key(cfg, cand, ft)
    folder = folder or run.recovery(cand.number, key)
    result_file = folder / RESULT
    if result_file.is_file() and run.check_tensors(folder / MODEL) is None:
        done: dict[str, Any] = json.loads(result_file.read_text())
        return done
    folder.mkdir(parents=True, exist_ok=True)
    split_name, train = training_split(ctx, ft)
    indices = training_indices(ctx, split_name, ft.train_images, cfg.seed, train)
    threads = int(cand.timings.get("threads", torch.get_num_threads()))
    t0 = time.perf_counter()
    with torch_threads(threads):
        student = materialize(ctx, cand.params)
        done_model = recover(
            student,
            teacher,
            train,
            indices,
            cfg=ft,
            example_input=ctx.example_input,
            validation=ctx.evaluator.data(),
            seed=cfg.seed,
            checkpoints=RunCheckpoints(run, folder),
            on_progress=on_progress,
        )
        model = done_model.model
        if any(m.a_bits < FLOAT_BITS for m in quant_layers(model).values()):
            calibrate_activations(model, ctx.evaluator.calibration_batches())  # ranges of the trained weights
        after: dict[str, float] = dict(ctx.evaluator(model, prepared=True))
        for prof in ctx.profiles:
            after.update({k: float(v) for k, v in prof.measure(model, ctx.example_input).values.items()})
    after.update(ctx.base_metrics)
    result = {
        "number": cand.number,
        "key": key,
        "params": cand.params,
        "recipe": ft.model_dump(mode="json"),
        "before": dict(cand.metrics),
        "after": after,
        "reward_before": cand.reward,
        "reward_after": _reward(ctx, after),
        "history": done_model.history,
        "train": {"split": split_name, "images": int(len(indices)), "augment": ft.augment},
        "qat_layers": done_model.qat_layers,
        "adapters": {k: list(v) for k, v in done_model.adapters.items()},
        "feature_points": done_model.feature_points,
        "device": str(finetune_device(ft)),
        "threads": threads,
        "train_seconds": done_model.seconds,
        "seconds_this_session": time.perf_counter() - t0,
        "resumed_at_epoch": done_model.resumed_at_epoch,
        "finished_at": time.time(),
    }
    run.save_tensors(folder / MODEL, model.state_dict(), {"key": key})
    atomic_write_text(result_file, json.dumps(result, indent=2, default=str) + "\n")
    for f in (folder / CHECKPOINT, folder / (CHECKPOINT + ".meta.json")):
        f.unlink(missing_ok=True)
    return result


def _reward(ctx: Context, metrics: dict[str, float]) -> float | None:
    try:
        return float(ctx.reward(metrics))
    except Exception:  # noqa: BLE001 - user reward code: the search recorded its failures already
        return None


def require_finished(candidates: Sequence[Candidate], numbers: Sequence[int]) -> list[Candidate]:
    """The candidates ``numbers`` (one line naming the first that is missing or unfinished)."""
    by_number = {c.number: c for c in candidates}
    out = []
    for n in numbers:
        c = by_number.get(n)
        if c is None or c.state != COMPLETE:
            why = "does not exist" if c is None else f"did not finish ({c.state})"
            raise UserError(f"--candidate {n} {why}: pick a finished candidate ('automc status RUN_DIR' lists the best)", field="candidate")
        out.append(c)
    return out
