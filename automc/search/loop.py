"""The experiment runner: the one ask → evaluate → tell loop, resumable from its store.

``run_experiment(config, run_dir)``:

1. takes the run folder's writer lock and refuses a folder holding another config;
2. builds the context (:mod:`automc.search.context`): model (trained first if the config asks
   and no intact trained copy is in the run — after the plugins and the reward were checked
   on the untrained model, so a typo never costs a training run), data subsets, evaluator,
   space, profiles and reward; and the agent;
3. runs the dry run (:mod:`automc.search.preflight`) and only then writes ``config.yaml``;
4. opens the store: outcomes a killed run recorded are completed, unfinished candidates are
   failed as interrupted and proposed again; the agent resumes from its saved state and the
   finished candidates (:meth:`Agent.resume`);
5. loops until the budget (candidates and/or minutes) is spent: ``params = agent.ask(number)``;
   a policy equal to one already evaluated is answered from the record (:mod:`ledger`); any
   other becomes a RUNNING trial, an executor evaluates it, the store records the outcome,
   ``agent.tell(candidate)``, and the agent's state is saved. While an agent whose proposals
   are projected keeps proposing evaluated policies, its proposals are jittered (more the
   longer it repeats) before projection, so the budget goes to new policies near the ones it
   converged to. An agent that ends the run early (exhausted, or converged: only
   already-evaluated policies proposed, ``MAX_DUPLICATES_IN_A_ROW`` in a row) ends it for
   good: the same command again computes nothing, a raised budget searches on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.compress.saved import package_versions
from automc.config import ExperimentConfig, resolved_config
from automc.errors import notice
from automc.run import DamagedFile, RunDir
from automc.search.agent import Agent
from automc.search.agent_settings import resolved_settings
from automc.search.candidate import COMPLETE, FAILED, Candidate
from automc.search.context import Context
from automc.search.executors import (
    Executor,
    RayExecutor,
    SequentialExecutor,
    ray_session,
)
from automc.search.ledger import Ledger, duplicate
from automc.search.preflight import Check, check_experiment
from automc.search.projection import Projector, settle_mode
from automc.search.store import Store, space_distributions
from automc.search.summary import summarize

VERSIONED = ("automc", "torch", "optuna", "onnxruntime", "torch-pruning", "numpy")
# an agent proposing only already-evaluated policies this many times in a row has converged
MAX_DUPLICATES_IN_A_ROW = 200
# after this many in a row, a projected agent's proposals are jittered before projection, by
# N(0, σ) in unit space with σ growing by JITTER_STEP per further repeat (at most JITTER_MAX)
JITTER_AFTER, JITTER_STEP, JITTER_MAX = 10, 0.02, 0.5
ELAPSED_EVERY_S = 10.0  # the elapsed time is recorded this often and at the end (a kill loses ≤ this)

OnCandidate = Callable[[Candidate, int, int], None]
# work after the search, inside the run's lock (e.g. recovering the finalists); its mapping
# joins the summary
Finish = Callable[[Context, RunDir, Store], Mapping[str, Any]]
# wraps the executor (e.g. to raise promising candidates to a higher fidelity before their
# outcome is recorded: automc.recover.fidelity)
Wrap = Callable[[Executor, Context, Store], Executor]


def check_run_config(run: RunDir, resolved: Mapping[str, Any]) -> bool:
    """:meth:`RunDir.check_config` with the stored config resolved by this automc (a setting
    added since, at its default, is no change). True when a run is there."""
    return run.check_config(resolved, normalize=lambda stored: resolved_config(stored, str(run.config_file)))


def run_experiment(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    *,
    on_candidate: OnCandidate | None = None,
    workers: int = 1,
    address: str | None = None,
    use_ray: bool | None = None,
    checks: Sequence[Check] = (),
    finish: Finish | None = None,
    wrap: Wrap | None = None,
    pruner: Any = None,
) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir`` until its budget is spent; returns a summary.

    ``checks`` join the dry run; ``finish`` runs after the search, still holding the lock
    (rerunning the command resumes it too). ``wrap`` wraps the executor and ``pruner`` (an
    Optuna pruner) is the study's, for :meth:`Store.report` (multi-fidelity ranking).

    ``workers > 1`` or an ``address`` evaluates candidates on Ray (see
    :mod:`automc.search.executors`); ``use_ray`` forces the choice (benchmarks compare 1 Ray
    worker with 2). ``on_candidate(candidate, done, target)`` sees every outcome, duplicates
    (``candidate.duplicate_of``) included.
    """
    run = RunDir(run_dir)
    resolved = cfg.model_dump(mode="json")
    parallel = use_ray if use_ray is not None else (workers > 1 or address is not None)
    with run.writer_lock(), ray_session(workers, address) if parallel else contextlib.nullcontext():
        check_run_config(run, resolved)
        recorded = run.read_agent_settings()  # what the agent started with (defaults change)
        ctx, agent, projector = check_experiment(cfg, run, checks=checks, agent_settings=recorded)
        try:
            run.write_config(resolved, {**package_versions(VERSIONED), "seed": cfg.seed})
            if recorded is None:
                run.write_agent_settings(resolved_settings(agent, cfg.agent.config))
            store = Store(run.storage_url(cfg.storage), cfg.name, pruner=pruner)
            store.set_meta("config", resolved)
            store.set_meta("base_metrics", ctx.base_metrics)
            store.set_meta("locked_groups", ctx.space.locked_notes())
            store.set_meta("target", ctx.limits)
            store.set_meta("validation", {"split": ctx.evaluator.split.name, "images": ctx.evaluator.samples})
            dists = space_distributions(ctx.space)
            retry = store.recover(dists)  # params of candidates a killed run left unfinished
            history = [c for c in store.candidates(include_duplicates=True) if c.state in (COMPLETE, FAILED)]
            agent.resume(_agent_state(run), history)
            if projector is not None:
                auto = cfg.target is not None and cfg.target.projection == "auto"
                mode = settle_mode(projector, store.meta().get("projection"), resumed=bool(history), auto=auto, multi_objective=agent.multi_objective)
                store.set_meta("projection", mode)
                for c in history:
                    projector.observe(c)
            ledger = Ledger((ctx.space.canonical(c.params), c) for c in history if c.duplicate_of is None)
            executor: Executor = RayExecutor(ctx, resolved, run.path, workers=workers, on_retry=store.note_retry) if parallel else SequentialExecutor(ctx)
            if wrap is not None:
                executor = wrap(executor, ctx, store)
            resumed = sum(1 for c in history if c.duplicate_of is None)
            loop = _Loop(cfg, ctx, run, store, agent, executor, ledger, dists, on_candidate, projector)
            while loop.repeats < len(history) and history[-1 - loop.repeats].duplicate_of is not None:
                loop.repeats += 1  # a streak of repeats the killed run was in continues
            try:
                done, stop = loop.run(resumed, retry)
            finally:
                executor.close()
        finally:
            agent.close()
        try:
            summary = summarize(store)
            if finish is not None:
                summary.update(finish(ctx, run, store))
        finally:
            store.close()
    summary.update({"run_dir": str(run.path), "resumed_from": resumed, "evaluated_now": done - resumed, "stopped": stop})
    return summary


def _agent_state(run: RunDir) -> dict[str, Any] | None:
    """The agent's saved state, or None (none saved, or damaged: then the agent is rebuilt
    from the store's record alone)."""
    if not run.agent_state.exists():
        return None
    try:
        state = run.load_tensors(run.agent_state)
    except DamagedFile as exc:
        notice(f"{exc.message}; rebuilding the agent from the store's record")
        return None
    return state if isinstance(state, dict) else None


class _Loop:
    """Keeps up to ``executor.slots`` candidates in flight (at most ``agent.max_outstanding``
    proposals awaiting their outcome)."""

    def __init__(self, cfg: ExperimentConfig, ctx: Context, run: RunDir, store: Store, agent: Agent, executor: Executor, ledger: Ledger, dists: dict[str, Any], on_candidate: OnCandidate | None, projector: Projector | None) -> None:
        self.cfg, self.ctx, self.run_dir, self.store, self.agent = cfg, ctx, run, store, agent
        self.executor, self.ledger, self.dists, self.on_candidate = executor, ledger, dists, on_candidate
        self.projector = projector
        self.keys: dict[int, Any] = {}  # in-flight number → canonical key
        self.done = 0
        self.repeats = 0  # duplicates proposed since the last new policy

    def run(self, done: int, retry: list[dict[str, Any]]) -> tuple[int, str]:
        self.done = done
        target = self.cfg.budget.candidates
        meta = self.store.meta()
        budget = self.cfg.budget.model_dump(mode="json")
        early = meta.get("stopped_early")
        if isinstance(early, dict) and early.get("budget") == budget and not retry:
            # the agent ended this run before its budget; the same command again is not a
            # request for more (a rerun of a finished run computes nothing): a new budget is
            notice(f"{early['reason']} after {early['candidates']} candidates: the run is finished; raise budget.candidates or budget.minutes to search on")
            return done, str(early["reason"])
        self.elapsed_before = float(meta.get("elapsed_s", 0.0))
        self.started = self.elapsed_saved = time.monotonic()
        stop = self._loop(target, retry)
        self._save_elapsed()
        if stop.startswith("agent"):
            self.store.set_meta("stopped_early", {"reason": stop, "candidates": self.done, "budget": budget})
        return self.done, stop

    def _save_elapsed(self) -> None:
        self.elapsed_saved = time.monotonic()
        self.store.set_meta("elapsed_s", self.elapsed_before + self.elapsed_saved - self.started)

    def _loop(self, target: int | None, retry: list[dict[str, Any]]) -> str:
        """Propose, evaluate and record until the budget is spent; why it stopped."""
        stop = "budget"
        while True:
            # (a Ray executor's slots shrink when the cluster loses a node)
            limit = min(self.executor.slots, self.agent.max_outstanding or self.executor.slots)
            elapsed = self.elapsed_before + time.monotonic() - self.started
            out_of_time = self.cfg.budget.minutes is not None and elapsed >= self.cfg.budget.minutes * 60
            if out_of_time:
                stop = "minutes"
            while stop == "budget" and not out_of_time and self._outstanding() < limit and self.agent.can_ask() and (target is None or self.done + self.executor.pending() < target):
                number = self.store.next_number()
                params = retry.pop(0) if retry else self._ask(number)
                if params is None:
                    stop = "agent exhausted"
                    break
                self._propose(number, params)
                if self.repeats >= MAX_DUPLICATES_IN_A_ROW:
                    stop = f"agent converged ({self.repeats} already-evaluated policies proposed in a row)"
            if self.executor.pending() == 0:
                budget_left = stop == "budget" and not out_of_time and (target is None or self.done < target)
                if budget_left and not self.agent.can_ask():  # it awaits an outcome nothing will bring
                    raise RuntimeError(f"agent {self.agent.name!r} waits for outcomes but no candidate is in flight")
                break
            cand = self.executor.next_done()
            self._record(cand)
            for dup in self.ledger.finish(self.keys.pop(cand.number), cand):
                self._record(dup)
            if time.monotonic() - self.elapsed_saved >= ELAPSED_EVERY_S:
                self._save_elapsed()
        return stop

    def _ask(self, number: int) -> dict[str, Any] | None:
        """The agent's next proposal, projected onto the target (a retried one already is);
        jittered first while the agent keeps proposing evaluated policies (it is told the
        outcome of what was evaluated, as for any projected proposal)."""
        params = self.agent.ask(number)
        if params is None or self.projector is None:
            return params
        if self.projector.jitters and self.repeats >= JITTER_AFTER:
            sigma = min(JITTER_MAX, JITTER_STEP * (self.repeats - JITTER_AFTER + 1))
            params = self.projector.jitter(params, (self.cfg.seed, number), sigma)
        return self.projector(params)

    def _outstanding(self) -> int:
        return self.executor.pending() + self.ledger.waiting()

    def _propose(self, number: int, params: dict[str, Any]) -> None:
        key = self.ctx.space.canonical(params)
        self.store.begin(number, params, self.dists)
        original = self.ledger.original(key)
        if original is not None:
            self._record(duplicate(original, number, params))
            return
        running = self.ledger.running(key)
        if running is not None:
            self.ledger.wait(running, number, params)
            return
        self.repeats = 0
        self.ledger.start(key, number)
        self.keys[number] = key
        self.executor.submit(number, params)

    def _record(self, cand: Candidate) -> None:
        """Store the outcome (one write), tell the agent, save its state, report progress."""
        self.store.finish(cand, duplicate_of=cand.duplicate_of)
        self.agent.tell(cand)
        if self.projector is not None and cand.duplicate_of is None:
            self.projector.observe(cand)
        state = self.agent.state_dict()
        if state:
            self.run_dir.save_tensors(self.run_dir.agent_state, state)
        if cand.duplicate_of is None:
            self.done += 1
        else:
            self.repeats += 1
        if self.on_candidate is not None:
            self.on_candidate(cand, self.done, self.cfg.budget.candidates or 0)
