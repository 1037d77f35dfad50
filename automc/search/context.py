"""What evaluating a candidate needs, built once per run, and the evaluation itself.

:func:`build_context` turns a validated experiment into model, data subsets, evaluator, search
space, profiles and reward (training the base model into the run folder first when the
experiment asks for it). :func:`evaluate_candidate` compresses, recalibrates, evaluates and
profiles one policy; a candidate that raises — in the space, the evaluator, a profile or the
reward (including a non-finite reward) — becomes a failed candidate with its message.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automc.build import CALIBRATION_BATCH, Data, open_data
from automc.compress.spaces import SearchSpace
from automc.config import Constraint, ExperimentConfig, limit_constraints
from automc.errors import UserError, notice
from automc.measure.cache import CachedProfile
from automc.measure.evaluator import Evaluator
from automc.measure.profiles import DeviceProfile, build_profile
from automc.recipes import ProxyConfig
from automc.run import RunDir
from automc.search.candidate import COMPLETE, FAILED, Candidate
from automc.search.proxy import ProxyTrainer
from automc.search.rewards import resolve_reward
from automc.search.run_widths import run_space_config
from automc.train.training import train_classifier


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
    # the uncompressed model's metrics under the names a candidate's have (plus base_*)
    reference: dict[str, float]
    base_trained: bool = True  # False when --check left a base model that needs training untrained
    # the run's target resolved to absolute limits ([{metric, max, spec, fraction}]; empty
    # without a target or when the base model was not measured)
    limits: list[dict[str, Any]] = field(default_factory=list)
    # trains each candidate on the proxy task when the space builds untrained networks
    proxy: ProxyTrainer | None = None

    @property
    def constraints(self) -> list[Constraint]:
        """The experiment's constraints and its target's limits."""
        return list(self.config.constraints) + limit_constraints(self.limits)


def experiment_data(cfg: ExperimentConfig) -> Data:
    """The experiment's dataset with its seeded calibration and validation subsets."""
    d = cfg.data
    return open_data(
        d.dataset,
        d.data_dir,
        verify=d.verify,
        split=d.eval_split,
        calibration_split=d.calibration_split,
        calibration_images=d.calibration_batches * CALIBRATION_BATCH,
        validation=d.validation,
        seed=cfg.seed,
    )


def weights_of(cfg: ExperimentConfig, run: RunDir) -> str | None:
    """Where the base model's weights are: the configured ones, or the run's trained copy."""
    if cfg.model.weights is not None or cfg.model.train is None:
        return cfg.model.weights
    return str(run.base_model.resolve())


def base_recipe(cfg: ExperimentConfig) -> str:
    """What the run's trained base model depends on (model, data, recipe, seed), hashed: a
    copy made by another recipe is never reused."""
    parts = {"model": cfg.model.model_dump(mode="json"), "dataset": cfg.data.dataset, "seed": cfg.seed}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def base_weights(cfg: ExperimentConfig, run: RunDir, data: Data, *, train: bool = True) -> str | None:
    """:func:`weights_of`, training the base model into the run first (once) when the
    experiment asks for training and no intact copy of this recipe is there yet. A damaged
    copy is trained again from the recorded seed. ``train=False`` (``--check``, readers)
    never writes: it returns None (untrained weights) when there is no usable copy."""
    if cfg.model.weights is not None or cfg.model.train is None:
        return cfg.model.weights
    why = run.check_tensors(run.base_model, {"recipe": base_recipe(cfg)})
    if why is None:
        return weights_of(cfg, run)
    if not train:
        return None
    if why != "missing":
        notice(f"{run.base_model} {why}: training the base model again (seed {cfg.seed})")
    model = data.model(cfg.model.name, None, cfg.model.kwargs)
    train_classifier(model, data.dataset.load(data.dataset.default_train_split), config=cfg.model.train, seed=cfg.seed)
    run.save_tensors(run.base_model, model.state_dict(), {"recipe": base_recipe(cfg)})
    return weights_of(cfg, run)


def build_profiles(cfg: ExperimentConfig, run: RunDir | None) -> list[DeviceProfile]:
    """The experiment's profiles; cacheable ones (or those the experiment asks to cache) share
    the run's measurement cache. ``run=None`` measures afresh (``automc export``).

    Two profiles reporting the same metric are refused: a candidate keeps one value per name,
    so the other profile's figure would be lost without a word (and a target on it would be
    steered by one and judged by the other)."""
    profiles: list[DeviceProfile] = []
    reported: dict[str, tuple[int, str]] = {}
    for i, p in enumerate(cfg.profiles):
        profile = build_profile(p.name, p.config)
        for metric in profile.metrics:
            if metric in reported:
                j, other = reported[metric]
                raise UserError(f"profiles[{i}] {p.name!r} reports {metric!r}, which profiles[{j}] {other!r} reports too, and a candidate keeps one value per metric: drop one of them (to compare a lookup table with measured latency, use `automc profile fidelity`)", field=f"profiles[{i}]")
            reported[metric] = (i, p.name)
        cache = profile.cacheable if p.cache is None else p.cache
        profiles.append(CachedProfile(profile, run.measure_cache) if cache and run is not None else profile)
    return profiles


def build_context(cfg: ExperimentConfig, run_dir: Path | RunDir, *, measure_base: bool = True, cache: bool = True, train: bool = True, freeze: bool = False) -> Context:
    """Model, data, space, evaluator, profiles and reward for ``cfg``; ``measure_base`` also
    evaluates and profiles the uncompressed model (Ray workers receive those figures);
    ``train=False`` never trains (nor writes) the base model (see :func:`base_weights`);
    ``freeze`` (the search's driver) freezes a ``widths:`` file or measurement into the run
    first (:mod:`automc.search.run_widths`), which every other context then reads."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    profiles = build_profiles(cfg, run if cache else None)  # first: a clash or a missing table is refused before any training
    torch.manual_seed(cfg.seed)
    data = experiment_data(cfg)
    weights = base_weights(cfg, run, data, train=train)
    trained = weights is not None or cfg.model.train is None
    model = data.model(cfg.model.name, weights, cfg.model.kwargs)
    x = data.example_input()
    evaluator = data.evaluator(bn_calibration_batches=cfg.data.calibration_batches if cfg.data.bn_calibration else 0, device=cfg.device)
    space = data.space(cfg.space.name, model, run_space_config(cfg, run, model, x, freeze=freeze), batches=cfg.data.calibration_batches)
    reward = resolve_reward(cfg.reward.name, cfg.reward.kwargs)
    base_metrics: dict[str, float] = {}
    reference: dict[str, float] = {}
    if measure_base:
        reference = {k: float(v) for k, v in evaluator(model).items()}
        base_metrics = {"base_accuracy": reference["accuracy"], "base_loss": reference["loss"]}
        for prof in profiles:
            measured = {k: float(v) for k, v in prof.measure(model, x).values.items()}
            reference.update(measured)
            base_metrics.update({f"base_{k}": v for k, v in measured.items()})
        reference.update(base_metrics)
    limits = resolve_target(cfg, reference) if measure_base else []
    ctx = Context(cfg, model, x, space, evaluator, profiles, reward, base_metrics, reference, trained, limits)
    if space.trains_candidates:
        ctx.proxy = ProxyTrainer(ctx, space, cfg.proxy or ProxyConfig(device=cfg.device), x, run, save=cache)
    return ctx


def resolve_target(cfg: ExperimentConfig, reference: Mapping[str, float]) -> list[dict[str, Any]]:
    """The experiment's target as absolute limits, from the uncompressed model's metrics; a
    metric no profile measures is a one-line error naming it."""
    if cfg.target is None:
        return []
    for metric in cfg.target.limits:
        if metric in ("accuracy", "loss", "samples"):
            raise UserError(f"target {metric!r} is not a cost: a target limits what profiles measure (macs, size_bytes, latency_ms, ...); a minimum accuracy is a constraint", field=f"target.{metric}")
        if metric not in reference or metric.startswith("base_"):
            measured = ", ".join(sorted(k for k in reference if not k.startswith("base_")))
            profiles = ", ".join(p.name for p in cfg.profiles)
            raise UserError(f"target metric {metric!r} is measured by no profile of this experiment ({profiles}); measured: {measured}", field=f"target.{metric}")
    return cfg.target.resolve(reference)


def materialize(ctx: Context, params: Mapping[str, Any], timings: dict[str, float] | None = None) -> nn.Module:
    """The candidate model as it is evaluated: compressed (or, for an architecture space,
    built and trained on the proxy task: ``timings["proxy_s"]``), then BN- (and activation-)
    recalibrated. Deterministic for given params, config and thread count, which is what lets
    ``automc export`` rebuild a stored candidate with the same accuracy."""
    model = ctx.space.apply(ctx.model, params)
    if ctx.proxy is not None:
        t0 = time.perf_counter()
        model = ctx.proxy(model, params)
        if timings is not None:
            timings["proxy_s"] = time.perf_counter() - t0
    return ctx.evaluator.prepare(model, in_place=not _shares_tensors(model, ctx.model))


def _shares_tensors(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models share a parameter or buffer (then ``a`` must not be changed in
    place: a space's ``apply`` may hand back parts of the base model)."""
    ids = {id(t) for t in (*b.parameters(), *b.buffers())}
    return any(id(t) in ids for t in (*a.parameters(), *a.buffers()))


def evaluate_candidate(ctx: Context, number: int, params: Mapping[str, Any]) -> Candidate:
    """Compress, recalibrate, evaluate and profile one policy; failures become failed candidates.

    ``timings["threads"]`` records the intra-op thread count used (results are bit-exact only
    for the same count)."""
    timings: dict[str, float] = {"threads": float(torch.get_num_threads())}
    metrics: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        prepared = materialize(ctx, params, timings)
        timings["compress_s"] = time.perf_counter() - t0 - timings.get("proxy_s", 0.0)
        t0 = time.perf_counter()
        metrics.update(ctx.evaluator(prepared, prepared=True))
        timings["evaluate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        attach_references(ctx)
        for prof in ctx.profiles:
            metrics.update({k: float(v) for k, v in prof.measure(prepared, ctx.example_input).values.items()})
        timings["profile_s"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - a broken candidate must not stop the search
        return Candidate(number, dict(params), metrics, None, FAILED, f"{type(exc).__name__}: {exc}", timings)
    metrics.update(ctx.base_metrics)
    return rewarded(ctx, number, params, metrics, timings)


def attach_references(ctx: Context) -> None:
    """Hand every profile the uncompressed model and its base figures, as the driver measured
    them (a Ray worker receives them with each candidate), before it measures candidates:
    see :meth:`automc.measure.profiles.DeviceProfile.set_reference`."""
    for prof in ctx.profiles:
        measured = {m: ctx.base_metrics[f"base_{m}"] for m in prof.metrics if f"base_{m}" in ctx.base_metrics}
        if measured:
            prof.set_reference(ctx.model, ctx.example_input, measured)


def rewarded(ctx: Context, number: int, params: Mapping[str, Any], metrics: dict[str, float], timings: dict[str, float]) -> Candidate:
    """The candidate with ``metrics`` and their reward; a reward that raises or is not finite
    fails the candidate (message, file and line recorded)."""
    try:
        reward = ctx.reward(metrics)
    except Exception as exc:  # noqa: BLE001 - user reward code
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return Candidate(number, dict(params), metrics, None, FAILED, f"reward raised {type(exc).__name__}: {exc} ({Path(last.filename).name}:{last.lineno})", timings)
    if not math.isfinite(reward):
        return Candidate(number, dict(params), metrics, None, FAILED, f"reward is not finite ({reward})", timings)
    return Candidate(number, dict(params), metrics, float(reward), COMPLETE, None, timings)
