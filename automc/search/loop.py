"""The experiment runner: the one ask → evaluate → tell loop, resumable from its store.

``run_experiment(config, run_dir)``:

1. writes ``config.yaml`` (resolved), ``versions.json`` and the seed into the run directory;
2. builds model (training it first if the config asks and no trained copy is in the run),
   data subsets, evaluator, search space, profiles, reward and agent;
3. opens the store; trials left RUNNING by a killed run are marked interrupted and their
   params proposed again; every finished candidate is replayed to the agent (and its saved
   state restored), so nothing finished is recomputed;
4. loops until the budget (candidates and/or minutes) is spent: ``params = agent.ask()``;
   the store records a RUNNING trial; the candidate is compressed, BN-recalibrated, evaluated
   and profiled; the reward is computed; the store records the outcome; ``agent.tell``.

A candidate that raises — in the space, evaluator, a profile or the reward (including a
non-finite reward) — is recorded as failed with its message, and the search goes on.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from automc.search.agent import build_agent
from automc.search.candidate import COMPLETE, FAILED, Candidate
from automc.compress.saved import package_versions
from automc.config import ExperimentConfig
from automc.datasets import get_dataset
from automc.datasets.base import calibration_and_validation
from automc.errors import UserError
from automc.measure.evaluator import Evaluator, EvaluatorConfig
from automc.models import load_model
from automc.measure.profiles import DeviceProfile, build_profile
from automc.search.rewards import resolve_reward
from automc.compress.spaces import SearchSpace, build_space
from automc.search.store import Store, storage_url
from automc.train.training import TrainConfig, train_classifier

STATE_FILE = "agent_state.pt"


@dataclass
class Context:
    """Everything a candidate's evaluation needs (built once per run)."""

    config: ExperimentConfig
    model: nn.Module
    example_input: torch.Tensor
    space: SearchSpace
    evaluator: Evaluator
    profiles: list[DeviceProfile]
    reward: Callable[[Mapping[str, float]], float]
    base_metrics: dict[str, float]


def build_context(cfg: ExperimentConfig, run_dir: Path, *, measure_base: bool = True) -> Context:
    """Model, data, space, evaluator, profiles and reward for ``cfg`` (training the base model
    into the run directory when the config asks for it)."""
    torch.manual_seed(cfg.seed)
    ds = get_dataset(cfg.data.dataset, cfg.data.data_dir, verify=cfg.data.verify)
    eval_name = cfg.data.eval_split or ds.eval_split()
    cal_name = cfg.data.calibration_split or ds.calibration_split()
    split, cal_split = ds.load(eval_name), ds.load(cal_name)
    cal_idx, val_idx = calibration_and_validation(
        split, cal_split, calibration=cfg.data.calibration_batches * 64, validation=cfg.data.validation, seed=cfg.seed
    )

    weights = cfg.model.weights
    trained = run_dir / "base_model.pt"
    if weights is None and cfg.model.train is not None:
        if not trained.exists():
            model = load_model(cfg.model.name, num_classes=ds.num_classes, in_channels=ds.in_channels, kwargs=cfg.model.kwargs)
            t = cfg.model.train
            train_classifier(model, ds.load(ds.default_train_split), config=TrainConfig(epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, augment=t.augment, seed=cfg.seed))
            torch.save(model.state_dict(), trained)
        weights = str(trained)
    model = load_model(cfg.model.name, weights=weights, data_dir=ds.data_dir, num_classes=ds.num_classes, in_channels=ds.in_channels, kwargs=cfg.model.kwargs)
    x = split.example_input(1)
    evaluator = Evaluator(
        split,
        val_idx,
        calibration=(cal_split, cal_idx) if cfg.data.bn_calibration else None,
        config=EvaluatorConfig(bn_calibration_batches=cfg.data.calibration_batches if cfg.data.bn_calibration else 0, seed=cfg.seed),
    )
    xc, _ = cal_split.tensors(cal_idx)
    space = build_space(cfg.space.name, model, x, calibration=[xc[i : i + 64] for i in range(0, len(xc), 64)], config=cfg.space.config)
    profiles = []
    for p in cfg.profiles:
        conf = dict(p.config)
        if p.name == "onnxruntime-cpu" and "cache_file" not in conf:
            conf["cache_file"] = str(run_dir / "latency_cache.jsonl")  # resumed runs re-use measurements
        profiles.append(build_profile(p.name, conf))
    reward = resolve_reward(cfg.reward.name, cfg.reward.kwargs)
    base_metrics: dict[str, float] = {}
    if measure_base:  # Ray workers receive these from the driver instead
        base = evaluator(model)
        base_metrics = {"base_accuracy": base["accuracy"], "base_loss": base["loss"]}
        for prof in profiles:
            base_metrics.update({f"base_{k}": v for k, v in prof.measure(model, x).values.items()})
    return Context(cfg, model, x, space, evaluator, profiles, reward, base_metrics)


def materialize(ctx: Context, params: Mapping[str, Any]) -> nn.Module:
    """The candidate model as it is evaluated: compressed, then BN- (and activation-)
    recalibrated. Deterministic for given params, config and thread count, which is what lets
    ``automc export`` rebuild a stored candidate with the same accuracy."""
    return ctx.evaluator.prepare(ctx.space.apply(ctx.model, params))


def evaluate_candidate(ctx: Context, number: int, params: Mapping[str, Any]) -> Candidate:
    """Compress, recalibrate, evaluate and profile one policy; failures become failed candidates.

    ``timings["threads"]`` records the intra-op thread count used (results are bit-exact only
    for the same count)."""
    timings: dict[str, float] = {"threads": float(torch.get_num_threads())}
    metrics: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        prepared = materialize(ctx, params)
        timings["compress_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics.update(ctx.evaluator(prepared, prepared=True))
        timings["evaluate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for prof in ctx.profiles:
            metrics.update({k: float(v) for k, v in prof.measure(prepared, ctx.example_input).values.items()})
        timings["profile_s"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - a broken candidate must not stop the search
        return Candidate(number, dict(params), metrics, None, FAILED, f"{type(exc).__name__}: {exc}", timings)
    metrics.update(ctx.base_metrics)
    try:
        reward = ctx.reward(metrics)
    except Exception as exc:  # noqa: BLE001 - user reward code
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return Candidate(number, dict(params), metrics, None, FAILED, f"reward raised {type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})", timings)
    if not math.isfinite(reward):
        return Candidate(number, dict(params), metrics, None, FAILED, f"reward is not finite ({reward})", timings)
    return Candidate(number, dict(params), metrics, float(reward), COMPLETE, None, timings)


def prepare_run_dir(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Create the run directory with the resolved config, versions and seed; refuse to resume
    a run whose config differs (that would mix two experiments in one record)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = cfg.model_dump(mode="json")
    path = run_dir / "config.yaml"
    if path.exists():
        previous = yaml.safe_load(path.read_text())
        changed = sorted(k for k in set(previous) | set(resolved) if previous.get(k) != resolved.get(k) and k != "budget")
        if changed:
            raise UserError(
                f"{run_dir} holds a run of a different config (changed: {', '.join(changed)}): "
                "use a new --run-dir, or restore the original config to resume (only the budget may change)"
            )
        if previous.get("budget") != resolved.get("budget"):  # extending (or shrinking) a run is fine
            path.write_text(yaml.safe_dump(resolved, sort_keys=False))
    else:
        path.write_text(yaml.safe_dump(resolved, sort_keys=False))
        (run_dir / "versions.json").write_text(json.dumps({**package_versions(("automc", "torch", "optuna", "onnxruntime", "torch-pruning", "numpy")), "seed": cfg.seed}, indent=2) + "\n")


def run_experiment(
    cfg: ExperimentConfig,
    run_dir: Path,
    *,
    on_candidate: Callable[[Candidate, int, int], None] | None = None,
    workers: int = 1,
    address: str | None = None,
    use_ray: bool | None = None,
) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir`` until its budget is spent; returns a summary.

    ``workers > 1`` or an ``address`` evaluates candidates on Ray (see :mod:`automc.search.executors`);
    ``use_ray`` forces the choice (benchmarks compare 1 Ray worker with 2).
    """
    run_dir = Path(run_dir)
    prepare_run_dir(cfg, run_dir)
    ctx = build_context(cfg, run_dir)
    store = Store(storage_url(run_dir, cfg.storage), cfg.name)
    store.set_meta("config", cfg.model_dump(mode="json"))
    store.set_meta("base_metrics", ctx.base_metrics)
    store.set_meta("locked_groups", ctx.space.locked_notes())
    agent_config = dict(cfg.agent.config)
    agent = build_agent(cfg.agent.name, ctx.space, cfg.objectives, seed=cfg.seed, config=_with_constraints(cfg, agent_config))
    retry = store.mark_interrupted()  # params of candidates a killed run left unfinished
    history = [c for c in store.candidates() if c.state in (COMPLETE, FAILED)]
    for c in history:
        agent.tell(c)
    state_path = run_dir / STATE_FILE
    if state_path.exists():
        agent.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    dists = space_distributions(ctx.space)
    done = len(history)
    target = cfg.budget.candidates
    resumed = done
    from automc.search.executors import RayExecutor, SequentialExecutor

    executor: Any = (
        RayExecutor(ctx, cfg.model_dump(mode="json"), run_dir, workers=workers, address=address)
        if (use_ray if use_ray is not None else (workers > 1 or address is not None))
        else SequentialExecutor(ctx)
    )
    try:
        done = _loop(cfg, store, agent, executor, retry, dists, done, target, state_path, on_candidate)
    finally:
        agent.close()
        executor.close()
    summary = summarize(store)
    summary.update({"run_dir": str(run_dir), "resumed_from": resumed, "evaluated_now": done - resumed})
    return summary


def _loop(
    cfg: ExperimentConfig,
    store: Store,
    agent: Any,
    executor: Any,
    retry: list[dict[str, Any]],
    dists: dict[str, Any],
    done: int,
    target: int | None,
    state_path: Path,
    on_candidate: Callable[[Candidate, int, int], None] | None,
) -> int:
    """Keep up to ``executor.slots`` candidates in flight (at most ``agent.max_outstanding``)."""
    elapsed_before = float(store.meta().get("elapsed_s", 0.0))
    started = time.monotonic()
    limit = min(executor.slots, getattr(agent, "max_outstanding", None) or executor.slots)
    exhausted = False
    while True:
        elapsed = elapsed_before + time.monotonic() - started
        out_of_time = cfg.budget.minutes is not None and elapsed >= cfg.budget.minutes * 60
        while not exhausted and not out_of_time and executor.pending() < limit and (target is None or done + executor.pending() < target):
            params = retry.pop(0) if retry else agent.ask()
            if params is None:
                exhausted = True
                break
            executor.submit(store.begin(params, dists), params)
        if executor.pending() == 0:
            break
        candidate = executor.next_done()
        store.finish(candidate)
        agent.tell(candidate)
        state = agent.state_dict()
        if state:
            torch.save(state, state_path)
        store.set_meta("elapsed_s", elapsed_before + time.monotonic() - started)
        done += 1
        if on_candidate is not None:
            on_candidate(candidate, done, target or 0)
    return done


def summarize(store: Store, top: int = 5) -> dict[str, Any]:
    """Counts and the best candidates by reward (what ``automc status`` prints)."""
    import optuna

    cands = store.candidates()
    interrupted = sum(1 for t in store.study.get_trials(deepcopy=False) if t.user_attrs.get("interrupted"))
    complete = [c for c in cands if c.state == COMPLETE]
    best = sorted(complete, key=lambda c: c.reward if c.reward is not None else -math.inf, reverse=True)[:top]
    meta = store.meta()
    cfg = meta.get("config", {})
    return {
        "name": store.study.study_name,
        "finished": len(complete),
        "failed": sum(1 for c in cands if c.state == FAILED),
        "running": sum(1 for t in store.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))),
        "interrupted": interrupted,
        "budget": cfg.get("budget", {}),
        "elapsed_s": meta.get("elapsed_s", 0.0),
        "base_metrics": meta.get("base_metrics", {}),
        "locked_groups": meta.get("locked_groups", []),
        "best": [c.to_dict() for c in best],
    }


def space_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna distributions of a space's dimensions (how the store records params)."""
    import optuna

    from automc.compress.spaces import Choice, Float, Int

    out: dict[str, Any] = {}
    for name, d in space.dimensions.items():
        if isinstance(d, Float):
            out[name] = optuna.distributions.FloatDistribution(d.low, d.high)
        elif isinstance(d, Int):
            out[name] = optuna.distributions.IntDistribution(d.low, d.high)
        elif isinstance(d, Choice):
            out[name] = optuna.distributions.CategoricalDistribution(list(d.values))
    return out


def _with_constraints(cfg: ExperimentConfig, agent_config: dict[str, Any]) -> dict[str, Any]:
    """Hand the experiment's constraints to agents that take them (NSGA-II)."""
    import inspect

    from automc.search.agent import AGENTS

    cls = AGENTS.get(cfg.agent.name)
    if cfg.constraints and "constraints" in inspect.signature(cls.__init__).parameters and "constraints" not in agent_config:
        agent_config["constraints"] = [c.model_dump(exclude_none=True) for c in cfg.constraints]
    return agent_config
