"""Comparing runs: several reports under the same objectives and one common reference point
(``automc compare``), written as ``compare.json``, ``compare.html`` and PNGs."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.atomic import atomic_write_text, staged_files
from automc.errors import UserError
from automc.results.report import build_report, open_run, report_folder


COMPARISON_SCHEMA = "automc.comparison/1"


def build_comparison(
    run_dirs: Sequence[str | Path],
    *,
    objectives: Sequence[Mapping[str, Any]] | None = None,
    reference: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Reports of several runs under the same objectives (default: the first run's) and one
    common reference point — per objective the worst of the runs' own reference values — so
    that their hypervolumes are comparable."""
    if len(run_dirs) < 2:
        raise UserError("compare needs at least two run directories", field="runs")
    recs = [open_run(d) for d in run_dirs]
    objs = list(objectives) if objectives else list(recs[0].config.get("objectives", []))
    own = [build_report(r, objectives=objs) for r in recs]
    common: dict[str, float] = {}
    for o in own[0]["objectives"]:
        values = [next(x["reference"] for x in rep["objectives"] if x["metric"] == o["metric"]) for rep in own]
        common[o["metric"]] = max(values) if o["direction"] == "minimize" else min(values)
    common.update(reference or {})
    reports = [build_report(r, objectives=objs, reference=common) for r in recs]
    for rep in reports:  # say where each common value came from, not just "given"
        for o in rep["objectives"]:
            if o["metric"] not in (reference or {}):
                rules = sorted({x["reference_source"] for r in own for x in r["objectives"] if x["metric"] == o["metric"]})
                o["reference_source"] = f"the worst of the runs' ({', '.join(rules)})"
    labels = [rep["run"]["name"] for rep in reports]
    if len(set(labels)) < len(labels):  # same experiment name twice: tell them apart by folder
        labels = [f"{rep['run']['name']} ({Path(rep['run']['run_dir']).name})" for rep in reports]
    return {
        "schema": COMPARISON_SCHEMA,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "objectives": reports[0]["objectives"],
        "summary": [
            {
                "label": label,
                "run_dir": rep["run"]["run_dir"],
                "agent": rep["run"]["config"].get("agent", {}).get("name", "?"),
                "space": rep["run"]["config"].get("space", {}).get("name", "?"),
                "finished": rep["run"]["counts"]["complete"],
                "failed": rep["run"]["counts"]["failed"],
                "front": len(rep["front"]),
                "hypervolume": rep["hypervolume"]["final"],
                "hypervolume_normalized": rep["hypervolume"]["final_normalized"],
                "minutes": round(rep["run"]["elapsed_s"] / 60, 2),
            }
            for label, rep in zip(labels, reports)
        ],
        "runs": [{"label": label, "run_dir": rep["run"]["run_dir"], "report": rep} for label, rep in zip(labels, reports)],
    }


def write_comparison(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    *,
    objectives: Sequence[Mapping[str, Any]] | None = None,
    reference: Mapping[str, float] | None = None,
    png: bool = True,
) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.html`` and PNGs for several runs into ``out``."""
    from automc.results.html import write_html_comparison
    from automc.results.png import write_comparison_pngs

    folder = report_folder(Path(out))
    data = build_comparison(run_dirs, objectives=objectives, reference=reference)
    with staged_files(folder) as staging:
        staged: dict[str, Path] = {"json": staging / "compare.json"}
        atomic_write_text(staged["json"], json.dumps(data, indent=1, default=float) + "\n")
        staged["html"] = write_html_comparison(data, staging / "compare.html")
        if png:
            staged.update(write_comparison_pngs(data, staging))
    return {kind: folder / path.name for kind, path in staged.items()}
