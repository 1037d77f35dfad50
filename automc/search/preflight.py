"""The dry run before a search spends its budget (and ``automc search --check``):
:func:`check_experiment` builds the context and agent, checks them, and has the space do its
per-run work (:meth:`SearchSpace.prepare`).

The uncompressed model has been through the evaluator and every profile (the context measured
it); here its metrics go through the reward (with its kwargs), every objective and every
constraint. A missing metric, a reward that raises, returns something other than a real
number or a non-finite one is one line naming the field — before the first candidate, not
after a whole budget of failed or blind candidates.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from automc.config import ExperimentConfig
from automc.errors import UserError, notice, user_code_error
from automc.run import RunDir
from automc.search.agent import AGENTS, Agent, build_agent
from automc.search.agent_settings import replayed_config
from automc.search.context import Context, base_recipe, build_context, evaluate_candidate
from automc.search.projection import Projector, projector_for
from automc.search.store import check_storage

# a further dry-run check of the experiment (e.g. its finetune section), raising UserError
Check = Callable[[Context], None]


def preflight(ctx: Context) -> float:
    """Check objectives, constraints and reward on the uncompressed model; returns its reward."""
    cfg = ctx.config
    metrics = ctx.reference
    measured = ", ".join(sorted(metrics))
    profiles = ", ".join(p.name for p in cfg.profiles)
    for i, o in enumerate(cfg.objectives):
        if o.metric not in metrics:
            raise UserError(f"objectives[{i}].metric {o.metric!r} is measured by no profile of this experiment ({profiles}); measured: {measured}", field=f"objectives[{i}].metric")
    for i, k in enumerate(cfg.constraints):
        if k.metric not in metrics:
            raise UserError(f"constraints[{i}].metric {k.metric!r} is measured by no profile of this experiment ({profiles}); measured: {measured}", field=f"constraints[{i}].metric")
    where = f"reward {cfg.reward.name!r}" + (f" with kwargs {dict(cfg.reward.kwargs)}" if cfg.reward.kwargs else "")
    try:
        value = ctx.reward(metrics)
    except KeyError as exc:
        raise UserError(f"{where}: {exc.args[0] if exc.args else exc}", field="reward") from None
    except Exception as exc:  # noqa: BLE001 - the reward is user code: say where it failed
        raise user_code_error(f"{where} fails on the uncompressed model", exc, field="reward") from exc
    if not math.isfinite(value):
        raise UserError(f"{where} is {value} on the uncompressed model: a reward must be finite", field="reward")
    return value


def probe(ctx: Context) -> dict[str, Any]:
    """Evaluate one random policy (seeded) as a candidate would be: its timings estimate what
    a candidate costs; a failure is reported, not raised (one policy may be infeasible)."""
    params = ctx.space.sample(np.random.default_rng([ctx.config.seed, 2**31]))
    t0 = time.perf_counter()
    cand = evaluate_candidate(ctx, -1, params)
    return {"seconds": time.perf_counter() - t0, "timings": dict(cand.timings), "error": cand.error, "metrics": dict(cand.metrics), "reward": cand.reward}


def check_experiment(cfg: ExperimentConfig, run: RunDir, *, train: bool = True, checks: Sequence[Check] = (), agent_settings: Mapping[str, Any] | None = None) -> tuple[Context, Agent, Projector | None]:
    """Context, agent and target projector of ``cfg``, dry-run checked (:func:`preflight`,
    the target, then ``checks``). When the base model still has to be trained, everything is
    checked on the untrained model first (``train=False`` stops there: ``--check``). The agent
    is built with the ``agent_settings`` a resumed run recorded, the user's config over them."""
    if cfg.storage is not None:
        check_storage(cfg.storage)
    untrained = cfg.model.weights is None and cfg.model.train is not None and run.check_tensors(run.base_model, {"recipe": base_recipe(cfg)}) is not None
    if untrained or not train:
        ctx = build_context(cfg, run, cache=False, train=False)
        agent = _agent(cfg, ctx, agent_settings)
        projector = _dry_run(ctx, agent, checks)
        if not train or not untrained:
            return ctx, agent, projector
        agent.close()
    ctx = build_context(cfg, run, freeze=True)
    agent = _agent(cfg, ctx, agent_settings)
    projector = _dry_run(ctx, agent, checks)
    return ctx, agent, projector


def _dry_run(ctx: Context, agent: Agent, checks: Sequence[Check]) -> Projector | None:
    preflight(ctx)
    projector = projector_for(ctx, agent)  # an unreachable target fails here
    for check in checks:
        check(ctx)
    ctx.space.prepare()  # per-run statistics, before the first candidate (and its clock)
    return projector


def _agent(cfg: ExperimentConfig, ctx: Context, recorded: Mapping[str, Any] | None) -> Agent:
    config = cfg.agent.config
    if recorded is not None:
        config = replayed_config(AGENTS.get(cfg.agent.name), recorded, config)
        if gone := sorted(set(recorded) - set(config)):
            notice(f"agent_settings.json: {', '.join(gone)} no longer a setting of agent {cfg.agent.name!r} in this version: left out")
    return build_agent(cfg.agent.name, ctx.space, cfg.objectives, seed=cfg.seed, constraints=ctx.constraints, config=config)
