"""A run's report: the data (``report.json``, ``candidates.csv``) and the files made from it.

:func:`build_report` reads a run directory (its ``config.yaml`` and store) and returns a plain
dict in the versioned schema below; the page and plots (:mod:`automc.results.html`, :mod:`automc.results.png`) are drawn from that dict
only, so everything a report shows can be checked without pixels.

Schema ``automc.report/1`` (keys added later will not change the meaning of these):

* ``schema``, ``created`` (ISO 8601, UTC), ``automc_version``;
* ``run``: ``name``, ``run_dir``, ``config`` (resolved experiment), ``versions``,
  ``base_metrics`` (the uncompressed model, ``base_<metric>``), ``validation`` (``{split,
  images}``: the images every candidate's accuracy is measured on), ``elapsed_s``, ``counts``
  (complete, failed, running, interrupted, duplicates — proposals equal to an earlier
  candidate, answered from its record and never evaluated);
* ``objectives``: ``[{metric, direction, reference, reference_source, scale}]``;
* ``constraints``: ``[{metric, min, max}]`` — the experiment's and its target's limits;
* ``target``: ``[{metric, max, spec, fraction}]`` — the run's target (``spec`` as written,
  ``fraction`` of the uncompressed model), empty without one;
* ``dimensions``: ``[{name, layer, knob}]`` — the policy's dimensions in network order;
* ``hypervolume``: ``final``, ``final_normalized``, ``history`` ``[{evaluations, candidate,
  hypervolume, normalized}]`` (see :mod:`automc.results.pareto` for the reference point);
* ``front``: numbers of the front members, ordered by the first objective (best first);
* ``candidates``: ``[{number, state, params, metrics, reward, feasible, violations, on_front,
  error, timings}]`` in number order (candidates interrupted by a killed run are left out:
  their params were evaluated again under a new number).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automc.atomic import atomic_path, atomic_write_text, staged_files
from automc.errors import UserError
from automc.results.pareto import (
    Objective,
    hypervolume_history,
    pareto_front,
    parse_objectives,
    reference_point,
    run_constraints,
)
from automc.run import RunDir
from automc.search.candidate import Candidate

SCHEMA = "automc.report/1"


@dataclass
class RunRecord:
    """An opened run directory: its resolved config, store and versions."""

    run_dir: Path
    config: dict[str, Any]
    store: Any
    versions: dict[str, Any]


def open_run(run_dir: str | Path) -> RunRecord:
    """Open the run written by ``automc search`` in ``run_dir`` (one-line error if it is not one)."""
    from automc.search.snapshot import open_store

    run = RunDir(run_dir)
    cfg = run.read_config()
    return RunRecord(run.path, cfg, open_store(run.storage_url(cfg.get("storage")), cfg["name"]), run.read_versions())


def _counts(counts: Mapping[str, int]) -> dict[str, int]:
    """The store's counts under the report's names (``complete`` for finished)."""
    out = {"complete": counts["finished"]}
    out.update({k: v for k, v in counts.items() if k != "finished"})
    return out


def parse_objective_args(items: Sequence[str]) -> list[dict[str, str]]:
    """``metric:direction`` strings (``accuracy:max``, ``latency_ms:minimize``) → mappings."""
    out = []
    for item in items:
        metric, _, direction = item.partition(":")
        d = {"max": "maximize", "maximize": "maximize", "min": "minimize", "minimize": "minimize"}.get(direction.strip().lower())
        if not metric.strip() or d is None:
            raise UserError(f"--objective expects METRIC:max or METRIC:min, got {item!r}", field="objective")
        out.append({"metric": metric.strip(), "direction": d})
    return out


def build_report(
    run: RunRecord | str | Path,
    *,
    objectives: Sequence[Mapping[str, Any]] | None = None,
    reference: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The report data of a run (schema ``automc.report/1``). ``objectives`` default to the
    experiment's; ``reference`` overrides reference-point values per metric."""
    import automc

    rec = run if isinstance(run, RunRecord) else open_run(run)
    cfg = rec.config
    objs = parse_objectives(objectives if objectives else cfg.get("objectives", []))
    meta = rec.store.meta()
    cons = run_constraints(cfg, meta)
    target = {t["metric"]: t for t in meta.get("target", []) or []}
    base = dict(meta.get("base_metrics", {}))
    cands = rec.store.candidates()
    finished = [c for c in cands if c.state == "complete"]
    known = set().union(*(c.metrics for c in finished)) if finished else set()
    missing = [o.metric for o in objs if o.metric not in known]
    if finished and missing:  # most likely a misspelt --objective
        raise UserError(f"objective metric {', '.join(missing)} was not measured in this run; measured: {', '.join(sorted(known)) or 'nothing'}", field="objective")
    front = pareto_front(cands, objs, cons)
    ref = reference_point(objs, cands, constraints=cons, base_metrics=base, overrides=reference)
    history = hypervolume_history(cands, front, objs, ref)
    scales = ref.scales(objs)
    members = front.front_indices()
    members.sort(key=lambda i: tuple(front.losses[i]))
    dims: list[dict[str, str]] = []
    seen: set[str] = set()
    for c in cands:
        for name in c.params:
            if name not in seen:
                seen.add(name)
                layer, _, knob = name.rpartition(":")
                dims.append({"name": name, "layer": layer or name, "knob": knob if layer else "value"})
    return {
        "schema": SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "automc_version": automc.__version__,
        "run": {
            "name": cfg["name"],
            "run_dir": str(rec.run_dir),
            "config": cfg,
            "versions": rec.versions,
            "base_metrics": base,
            "locked_groups": list(meta.get("locked_groups", [])),
            "validation": meta.get("validation"),  # {split, images}: where every candidate's accuracy comes from
            "elapsed_s": float(meta.get("elapsed_s", 0.0)),
            "counts": _counts(rec.store.counts()),
        },
        "objectives": [
            {"metric": o.metric, "direction": o.direction, "reference": ref.values[o.metric], "reference_source": ref.sources[o.metric], "scale": float(s)}
            for o, s in zip(objs, scales)
        ],
        "constraints": [{"metric": c.metric, "min": c.min, "max": c.max} for c in cons],
        "target": [{"metric": m, "max": t["max"], "spec": t["spec"], "fraction": t["fraction"]} for m, t in target.items()],
        "dimensions": dims,
        "hypervolume": {
            "final": history[-1]["hypervolume"] if history else 0.0,
            "final_normalized": history[-1]["normalized"] if history else 0.0,
            "history": history,
        },
        "front": [cands[i].number for i in members],
        "candidates": [
            {**c.to_dict(), "feasible": front.feasible[i], "violations": front.violations[i], "on_front": front.on_front[i]}
            for i, c in enumerate(cands)
        ],
        "recovered": [recovered_entry(r) for r in RunDir(rec.run_dir).recoveries()],
    }


def recovered_entry(result: Mapping[str, Any]) -> dict[str, Any]:
    """A finalist's recovery as the report shows it: metrics before → after, and how."""
    recipe = result.get("recipe", {})
    distill = recipe.get("distill") or {}
    kinds = "+".join(distill.get("kinds", [])) or "none"
    how = f"{len(result['history'])} epochs, KD {kinds}" + (", QAT" if result.get("qat_layers") else "")
    return {
        "number": result["number"],
        "key": result["key"],
        "how": how,
        "before": dict(result["before"]),
        "after": dict(result["after"]),
        "reward_before": result.get("reward_before"),
        "reward_after": result.get("reward_after"),
        "epochs": len(result["history"]),
        "train_seconds": result.get("train_seconds"),
        "train": result.get("train", {}),
        "recipe": recipe,
    }


def report_objectives(report: Mapping[str, Any]) -> list[Objective]:
    return [Objective(metric=o["metric"], direction=o["direction"]) for o in report["objectives"]]


def candidates_from_report(report: Mapping[str, Any]) -> list[Candidate]:
    return [Candidate.from_dict(c) for c in report["candidates"]]


def write_csv(report: Mapping[str, Any], path: str | Path) -> Path:
    """One row per candidate: status columns, then every metric (objectives first), then
    every param."""
    path = Path(path)
    objectives = [o["metric"] for o in report["objectives"]]
    metrics = objectives + sorted({k for c in report["candidates"] for k in c["metrics"]} - set(objectives))
    params = [d["name"] for d in report["dimensions"]]
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", "on_front", "feasible", "reward", *metrics, *params, "violations", "error"])
        for c in report["candidates"]:
            w.writerow(
                [c["number"], c["state"], int(c["on_front"]), int(c["feasible"]), "" if c["reward"] is None else c["reward"]]
                + [c["metrics"].get(m, "") for m in metrics]
                + [c["params"].get(p, "") for p in params]
                + ["; ".join(c["violations"]) if not c["feasible"] and c["state"] == "complete" else "", c["error"] or ""]
            )
    return path


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    objectives: Sequence[Mapping[str, Any]] | None = None,
    reference: Mapping[str, float] | None = None,
    png: bool = True,
) -> dict[str, Path]:
    """Write ``report.json``, ``candidates.csv``, ``report.html`` and PNGs for a run into
    ``out`` (default ``RUN_DIR/report``); returns the written paths by kind.

    Every file is first written into a staging folder beside ``out`` and only then renamed
    into place, so a failure (disk full) leaves the previous report whole, never a mix of a
    new ``report.json`` and a half-written page."""
    from automc.results.html import write_html_report
    from automc.results.png import write_pngs

    folder = report_folder(Path(out) if out is not None else RunDir(run_dir).report_dir)
    data = build_report(run_dir, objectives=objectives, reference=reference)
    with staged_files(folder) as staging:
        staged: dict[str, Path] = {"json": staging / "report.json"}
        atomic_write_text(staged["json"], json.dumps(data, indent=1, default=float) + "\n")
        staged["csv"] = write_csv(data, staging / "candidates.csv")
        staged["html"] = write_html_report(data, staging / "report.html")
        if png:
            staged.update(write_pngs(data, staging))
    return {kind: folder / path.name for kind, path in staged.items()}


def report_folder(folder: Path) -> Path:
    """``folder``, unless it is a file (one line: the report would fail at its first write)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"report folder {folder} is a file: remove it, or pass --out DIR", field="out")
    return folder
