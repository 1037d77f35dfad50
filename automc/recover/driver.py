"""Recovering the finalists of a run: after ``automc search`` (its ``finetune:`` section) or
with ``automc finetune RUN_DIR``.

Both hold the run's writer lock (a recovery writes into the run) and go through
:func:`recover_finalists`; what is finished is read back, what was interrupted continues.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.config import ExperimentConfig, FinetuneConfig, parse_config
from automc.errors import UserError
from automc.recover.fidelity import (
    FidelityExecutor,
    fidelity_recipe,
    successive_halving,
)
from automc.recover.finalists import (
    recover_candidate,
    require_finished,
    select_finalists,
)
from automc.results.pareto import run_constraints
from automc.run import RunDir
from automc.search.context import Context, base_recipe, build_context
from automc.search.loop import run_experiment
from automc.search.store import Store
from automc.search.training_data import teacher_of, training_indices, training_split
from automc.train.recovery import Progress, build_distiller, finetune_device

# (candidate number, index among the finalists, how many) before each finalist starts
OnFinalist = Callable[[int, int, int], None]


def recover_finalists(
    ctx: Context,
    run: RunDir,
    store: Store,
    ft: FinetuneConfig,
    *,
    numbers: Sequence[int] | None = None,
    on_finalist: OnFinalist | None = None,
    on_progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Recover candidates ``numbers`` (default: those ``ft.candidates`` selects); returns
    their results (see :func:`automc.recover.finalists.recover_candidate`)."""
    finetune_device(ft)  # a missing GPU is said before anything trains
    candidates = store.candidates()
    chosen = require_finished(candidates, numbers) if numbers else select_finalists(ctx.config, candidates, ft, run_constraints(ctx.config.model_dump(mode="json"), store.meta()))
    results = []
    teacher = teacher_of(ctx, ft)
    for i, cand in enumerate(chosen):
        if on_finalist is not None:
            on_finalist(cand.number, i, len(chosen))
        results.append(recover_candidate(ctx, run, cand, ft, teacher=copy.deepcopy(teacher), on_progress=on_progress))
    return results


def check_finetune(ctx: Context) -> None:
    """The dry run of the ``finetune`` section, before any budget is spent: the device
    exists, the training split loads and holds ``train_images``, and the distillation
    (teacher classes, named layers) fits the model."""
    if ctx.config.finetune is not None:
        check_recipe(ctx, ctx.config.finetune)


def check_fidelity(ctx: Context) -> None:
    """The dry run of the ``fidelity`` section: its fine-tune recipe fits (as
    :func:`check_finetune`) and the training split holds the images each rung trains on."""
    fid = ctx.config.fidelity
    if fid is None:
        return
    ft = fidelity_recipe(ctx.config)
    pool = check_recipe(ctx, ft)
    more = [b - a for a, b in zip([0, *fid.steps], fid.steps)]
    need = max(more) * ft.batch_size
    if need > pool:
        raise UserError(f"fidelity.steps: a rung trains up to {max(more)} steps of {ft.batch_size} images ({need}) but the training split has {pool} usable images: use fewer steps or a smaller batch_size", field="fidelity.steps")


def check_recipe(ctx: Context, ft: FinetuneConfig) -> int:
    """``ft`` fits the run: the device exists, the training split loads and holds
    ``train_images``, the distillation (teacher classes, named layers) fits the model.
    Returns how many training images it may use."""
    finetune_device(ft)
    split, train = training_split(ctx, ft)
    usable = training_indices(ctx, split, ft.train_images, ctx.config.seed, train, quiet=True)
    build_distiller(teacher_of(ctx, ft), copy.deepcopy(ctx.model), ctx.example_input, ft)
    return len(usable)


def search_and_recover(cfg: ExperimentConfig, run_dir: str | Path, **search: Any) -> dict[str, Any]:
    """``automc search``: the search (:func:`automc.search.loop.run_experiment`), then, when
    the experiment has a ``finetune`` section, the recovery of its finalists; ``search`` takes
    run_experiment's options plus ``on_finalist`` / ``on_progress``."""
    on_finalist = search.pop("on_finalist", None)
    on_progress = search.pop("on_progress", None)

    def finish(ctx: Context, run: RunDir, store: Store) -> dict[str, Any]:
        if cfg.finetune is None:
            return {}
        results = recover_finalists(ctx, run, store, cfg.finetune, on_finalist=on_finalist, on_progress=on_progress)
        return {"recovered": [brief(r) for r in results]}

    def wrap(executor: Any, ctx: Context, store: Store) -> Any:
        assert cfg.fidelity is not None
        return FidelityExecutor(executor, ctx, store, cfg.fidelity, fidelity_recipe(cfg))

    if cfg.fidelity is not None:
        search.update(wrap=wrap, pruner=successive_halving(cfg.fidelity))
    return run_experiment(cfg, run_dir, checks=(check_finetune, check_fidelity), finish=finish, **search)


def brief(result: Mapping[str, Any]) -> dict[str, Any]:
    """A recovery in a few figures: candidate, accuracy before → after, training time."""
    return {
        "number": result["number"],
        "key": result["key"],
        "accuracy_before": result["before"].get("accuracy"),
        "accuracy_after": result["after"].get("accuracy"),
        "epochs": len(result["history"]),
        "train_seconds": result["train_seconds"],
    }


def finetune_settings(cfg: ExperimentConfig, overrides: Mapping[str, Any]) -> FinetuneConfig:
    """The run's ``finetune`` section (defaults where it has none) with CLI ``overrides``
    applied; validated like the YAML (one line naming ``finetune.<field>``)."""
    base = cfg.finetune.model_dump(mode="json") if cfg.finetune is not None else {}
    merged = {**base, **{k: v for k, v in overrides.items() if k != "distill_kinds"}}
    if "distill_kinds" in overrides:
        kinds = overrides["distill_kinds"]
        merged["distill"] = None if kinds is None else {**(base.get("distill") or {}), "kinds": kinds}
    data = {**cfg.model_dump(mode="json"), "finetune": merged}
    return parse_config(data, "finetune").finetune or FinetuneConfig()


def finetune_run(
    run_dir: str | Path,
    overrides: Mapping[str, Any],
    *,
    numbers: Sequence[int] | None = None,
    on_finalist: OnFinalist | None = None,
    on_progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """``automc finetune``: recover finalists of the finished run in ``run_dir``."""
    run = RunDir(run_dir)
    cfg = parse_config(run.read_config(), str(run.config_file))
    ft = finetune_settings(cfg, overrides)
    with run.writer_lock():
        if cfg.model.weights is None and cfg.model.train is not None:
            why = run.check_tensors(run.base_model, {"recipe": base_recipe(cfg)})
            if why is not None:
                raise UserError(f"the run's trained base model {run.base_model} cannot be used ({why}): run 'automc search' on this run once to rebuild it")
        store = Store(run.storage_url(cfg.storage), cfg.name)
        try:
            if not store.candidates():
                raise UserError(f"{run.path} has no finished candidate yet: run 'automc search' first")
            ctx = build_context(cfg, run, train=False)
            return recover_finalists(ctx, run, store, ft, numbers=numbers, on_finalist=on_finalist, on_progress=on_progress)
        finally:
            store.close()
