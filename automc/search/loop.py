"""The experiment runner: the one ask → evaluate → tell loop, resumable from its store.

``run_experiment(config, run_dir)``:

1. takes the run folder's writer lock and writes ``config.yaml`` (resolved) and
   ``versions.json`` (:class:`automc.run.RunDir`);
2. builds the context (:mod:`automc.search.context`): model (trained first if the config asks
   and no trained copy is in the run), data subsets, evaluator, space, profiles and reward;
3. opens the store; trials left unfinished by a killed run are marked interrupted and their
   params proposed again; every finished candidate is replayed to the agent (and its saved
   state restored), so nothing finished is recomputed;
4. loops until the budget (candidates and/or minutes) is spent: the store gives the next
   candidate number, ``params = agent.ask(number)``, the store records a RUNNING trial, an
   executor evaluates it, the store records the outcome, ``agent.tell(candidate)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from automc.compress.saved import package_versions
from automc.config import ExperimentConfig
from automc.run import RunDir
from automc.search.agent import Agent, build_agent
from automc.search.candidate import COMPLETE, FAILED, Candidate
from automc.search.context import build_context
from automc.search.executors import Executor, RayExecutor, SequentialExecutor
from automc.search.store import Store, space_distributions
from automc.search.summary import summarize

VERSIONED = ("automc", "torch", "optuna", "onnxruntime", "torch-pruning", "numpy")


def run_experiment(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    on_candidate: Callable[[Candidate, int, int], None] | None = None,
    workers: int = 1,
    address: str | None = None,
    use_ray: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir`` until its budget is spent; returns a summary.

    ``workers > 1`` or an ``address`` evaluates candidates on Ray (see
    :mod:`automc.search.executors`); ``use_ray`` forces the choice (benchmarks compare 1 Ray
    worker with 2).
    """
    run = RunDir(run_dir)
    with run.writer_lock():
        run.prepare(cfg.model_dump(mode="json"), {**package_versions(VERSIONED), "seed": cfg.seed})
        ctx = build_context(cfg, run)
        store = Store(run.storage_url(cfg.storage), cfg.name)
        store.set_meta("config", cfg.model_dump(mode="json"))
        store.set_meta("base_metrics", ctx.base_metrics)
        store.set_meta("locked_groups", ctx.space.locked_notes())
        agent = build_agent(cfg.agent.name, ctx.space, cfg.objectives, seed=cfg.seed, constraints=cfg.constraints, config=cfg.agent.config)
        dists = space_distributions(ctx.space)
        retry = store.mark_interrupted(dists)  # params of candidates a killed run left unfinished
        history = [c for c in store.candidates() if c.state in (COMPLETE, FAILED)]
        for c in history:
            agent.tell(c)
        if run.agent_state.exists():
            agent.load_state_dict(torch.load(run.agent_state, map_location="cpu", weights_only=True))
        parallel = use_ray if use_ray is not None else (workers > 1 or address is not None)
        executor: Executor = RayExecutor(ctx, cfg.model_dump(mode="json"), run.path, workers=workers, address=address) if parallel else SequentialExecutor(ctx)
        resumed = done = len(history)
        try:
            done = _loop(cfg, run, store, agent, executor, retry, dists, done, on_candidate)
        finally:
            agent.close()
            executor.close()
        summary = summarize(store)
    summary.update({"run_dir": str(run.path), "resumed_from": resumed, "evaluated_now": done - resumed})
    return summary


def _loop(
    cfg: ExperimentConfig,
    run: RunDir,
    store: Store,
    agent: Agent,
    executor: Executor,
    retry: list[dict[str, Any]],
    dists: dict[str, Any],
    done: int,
    on_candidate: Callable[[Candidate, int, int], None] | None,
) -> int:
    """Keep up to ``executor.slots`` candidates in flight (at most ``agent.max_outstanding``)."""
    target = cfg.budget.candidates
    elapsed_before = float(store.meta().get("elapsed_s", 0.0))
    started = time.monotonic()
    limit = min(executor.slots, agent.max_outstanding or executor.slots)
    exhausted = False
    while True:
        elapsed = elapsed_before + time.monotonic() - started
        out_of_time = cfg.budget.minutes is not None and elapsed >= cfg.budget.minutes * 60
        while not exhausted and not out_of_time and executor.pending() < limit and (target is None or done + executor.pending() < target):
            number = store.next_number()
            params = retry.pop(0) if retry else agent.ask(number)
            if params is None:
                exhausted = True
                break
            store.begin(number, params, dists)
            executor.submit(number, params)
        if executor.pending() == 0:
            break
        candidate = executor.next_done()
        store.finish(candidate)
        agent.tell(candidate)
        state = agent.state_dict()
        if state:
            run.save_tensors(run.agent_state, state)
        store.set_meta("elapsed_s", elapsed_before + time.monotonic() - started)
        done += 1
        if on_candidate is not None:
            on_candidate(candidate, done, target or 0)
    return done
