"""A run's channel widths, frozen when it first starts.

A channel space's ``widths:`` setting names a widths file (``automc profile widths``) or says
``measure``. Either way the counts a run rounds its channels to must not change under it: a
file edited or measured again between a search and its resume, export or recovery would build
other models for the same policies — the ledger's duplicates, the front and the exported
models would no longer be what was evaluated. So when a run first starts, the driver freezes
them into ``RUN/widths.json``:

- ``widths: FILE``: the file is copied. A resume whose file has changed since is refused (one
  line naming both files); a file gone since is no matter, the copy is used.
- ``widths: measure``: the runtime's channel step is measured on the experiment's first timed
  latency profile (``automc profile widths --context step``: pruned whole models side by
  side, about a minute for a ResNet-20) and each group's widths written; never measured again
  for that run.

Every context of the run — the driver, its Ray workers, ``export``, ``finetune`` — then builds
its space from that copy, wherever it runs from. The copy records what it was made from
(``frozen_from``): one left by a start that failed its dry run is made again when the
experiment has changed. A run started before widths were frozen reads its file, as it did.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automc.atomic import atomic_write_text
from automc.compress.spaces import build_space
from automc.compress.widths_file import load_widths, read_widths_file
from automc.config import ExperimentConfig
from automc.errors import UserError, notice
from automc.measure.profiles import PROFILES, DeviceProfile, build_profile
from automc.run import RunDir

MEASURE = "measure"  # widths: measure — the step measured on this machine when the run starts
KEY = "widths"


def widths_setting(config: Mapping[str, Any] | None) -> tuple[tuple[str, ...], str] | None:
    """Where a space config names widths by a string (a file or ``measure``) — the key path,
    e.g. ``("widths",)`` or ``("pruning", "widths")`` for the joint space — and the string;
    None when it names none (no widths, or widths given inline)."""
    found: list[tuple[tuple[str, ...], str]] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for key, value in node.items():
            if key == KEY:
                if isinstance(value, str):
                    found.append(((*path, key), value))
            elif isinstance(value, Mapping):
                walk(value, (*path, str(key)))

    walk(config or {}, ())
    if len(found) > 1:
        where = ", ".join(".".join(p) for p, _ in found)
        raise UserError(f"space.config names widths in {len(found)} places ({where}): a run rounds to one set of widths", field="space.config.widths")
    return found[0] if found else None


def run_space_config(cfg: ExperimentConfig, run: RunDir | None, model: nn.Module, example_input: torch.Tensor, *, freeze: bool = False) -> dict[str, Any] | None:
    """The space config ``cfg``'s space is built with in ``run``: a ``widths:`` file or
    ``measure`` replaced by the run's frozen widths. ``freeze`` (the driver, holding the run's
    lock, its config checked) copies or measures them first; other callers only read. Without
    a frozen copy a file is read where it is (a run from before, ``--check``) and ``measure``
    builds the space without widths (``--check``: they are measured when the search starts)."""
    config = cfg.space.config
    found = widths_setting(config)
    if found is None:
        return config
    path, setting = found
    source = _source(cfg, path, setting)
    frozen = read_frozen(run, source)
    if freeze:
        if run is None:
            raise ValueError("freezing widths needs the run folder")
        frozen = _freeze(cfg, run, path, setting, source, frozen, model, example_input)
    if frozen is not None:
        return _with(config, path, frozen)
    if setting == MEASURE:
        measured_profile(cfg)  # no timed latency profile: said now, not when the search starts
        return _with(config, path, None)
    return config


def read_frozen(run: RunDir | None, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The run's frozen widths (None when it has none, or, given ``source``, when they were
    made from something else: a start that failed its dry run)."""
    if run is None or not run.widths_file.is_file():
        return None
    try:
        data = json.loads(run.widths_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{run.widths_file} is damaged ({exc}): restore it; measuring or copying the widths again could change the models this run's candidates stand for", field="space.config.widths") from None
    if not isinstance(data, dict) or (source is not None and data.get("frozen_from") != dict(source)):
        return None
    return data


def describe_widths(cfg: ExperimentConfig, run: RunDir) -> str | None:
    """In words, the widths ``cfg``'s run rounds to (``automc search --check``); None without."""
    found = widths_setting(cfg.space.config)
    if found is None:
        return None
    setting = found[1]
    frozen = read_frozen(run, _source(cfg, *found))
    if frozen is not None:
        step = frozen.get("measured_on", {}).get("step")
        return f"frozen in {run.widths_file}" + (f" (step {step})" if step is not None else "")
    if setting == MEASURE:
        return f"the channel step, measured on {measured_profile(cfg).name} when the search starts"
    return f"{setting}, copied into the run when the search starts"


def measured_profile(cfg: ExperimentConfig) -> DeviceProfile:
    """The experiment's first profile that times latency (not an analytic model, not a lookup
    table): what ``widths: measure`` reads the channel step off."""
    for p in cfg.profiles:
        # a model of the device (flops, lookup table, accelerator) times nothing: its class
        # says so without building it (a table that is missing is not this question's error)
        if getattr(PROFILES.get(p.name), "analytic", False) is True:
            continue
        profile = build_profile(p.name, p.config)
        if "latency_ms" in profile.metrics and not profile.analytic and not profile.describe().get("analytic"):
            return profile
    names = ", ".join(p.name for p in cfg.profiles)
    raise UserError(f"widths: measure reads the channel step off a timed latency profile, and this experiment has none (profiles: {names}): add one (e.g. onnxruntime-cpu) or name a widths file written by 'automc profile widths'", field="space.config.widths")


def _source(cfg: ExperimentConfig, path: tuple[str, ...], setting: str) -> dict[str, Any]:
    """What frozen widths are made from: the setting, the model and the rest of the space."""
    source: dict[str, Any] = {"widths": setting, "model": cfg.model.name, "model_kwargs": cfg.model.kwargs, "space": cfg.space.name, "space_config": _with(cfg.space.config, path, None)}
    if setting == MEASURE:
        source["profiles"] = [{"name": p.name, "config": p.config} for p in cfg.profiles]
    return json.loads(json.dumps(source, default=str))  # as it reads back from the file


def _freeze(cfg: ExperimentConfig, run: RunDir, path: tuple[str, ...], setting: str, source: dict[str, Any], frozen: dict[str, Any] | None, model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The run's frozen widths, written now unless already there (and, for a file, checked
    against it)."""
    field = ".".join(("space", "config", *path))
    if setting == MEASURE:
        if frozen is not None:
            return frozen
        if run.config_file.exists():  # started on widths it no longer has
            raise UserError(f"{run.widths_file} is missing or was measured for another experiment than {run.config_file}: restore it, or start a new search with another --run-dir (measuring again could change the models this run's candidates stand for)", field=field)
        data = _measure(cfg, path, model, x)
    else:
        file = Path(setting)
        if frozen is not None:
            if not file.is_file() or load_widths(read_widths_file(file, field), field=field) == load_widths(frozen, field=field, where=str(run.widths_file)):
                return frozen
            if run.config_file.exists():  # the run has started on the copy
                raise UserError(f"widths file {file} has changed since this run started ({run.widths_file} holds the widths it started with): restore the file, or start a new search with another --run-dir", field=field)
        data = read_widths_file(file, field)
    data = {**data, "frozen_from": source}
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.widths_file, json.dumps(data, indent=2) + "\n")
    return data


def _measure(cfg: ExperimentConfig, path: tuple[str, ...], model: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The channel step measured on this machine (context ``step``) for the channel groups of
    the space's pruning settings."""
    profile = measured_profile(cfg)
    settings = _at(cfg.space.config, path[:-1])
    space = build_space("channel_pruning", model, x, calibration=[x], config={k: v for k, v in settings.items() if k != KEY})
    notice(f"widths: measure: measuring the channel step on {profile.name} (once per run)")
    started = time.perf_counter()
    data: dict[str, Any] = PROFILES.get("lut").derive_widths(profile, model, space, x, context="step")
    data["measured_on"]["model"] = cfg.model.name
    notice(f"widths: step {data['measured_on']['step']} from {data['measured_on']['measurements']} model measurements ({time.perf_counter() - started:.0f} s)")
    return data


def _at(config: Mapping[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any]:
    node: Any = config or {}
    for key in path:
        node = node[key]
    return dict(node)


def _with(config: Mapping[str, Any] | None, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``value`` at ``path``."""
    out = copy.deepcopy(dict(config or {}))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out
