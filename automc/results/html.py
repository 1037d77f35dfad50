"""The report as one self-contained HTML page (or a comparison of runs): plotly.js inlined
(works offline, from a file:// URL, with no network), the figures of
:mod:`automc.results.plots` and a sortable table of every candidate."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.atomic import atomic_write_text
from automc.results.plots import (
    format_value,
    hypervolume_figure,
    pareto_figure,
    policy_figure,
)


def _table_html(report: Mapping[str, Any]) -> str:
    objectives = [o["metric"] for o in report["objectives"]]
    metrics = objectives + sorted({k for c in report["candidates"] for k in c["metrics"] if not k.startswith("base_") and k not in ("samples",)} - set(objectives))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["#", "state", "front", "feasible", "reward", *metrics, "notes"])
    rows = []
    for c in report["candidates"]:
        notes = c["error"] or ("; ".join(c["violations"]) if c["state"] == "complete" and not c["feasible"] else "")
        cells = [c["number"], c["state"], c["on_front"], c["feasible"], c["reward"], *[c["metrics"].get(m) for m in metrics]]
        tds = "".join(f"<td>{html.escape(format_value(v))}</td>" for v in cells) + f"<td class='notes'>{html.escape(notes)}</td>"
        rows.append(f"<tr class='{'front' if c['on_front'] else ''}'>{tds}</tr>")
    return f"<table id='candidates' class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _recovered_html(report: Mapping[str, Any]) -> str:
    """One row per recovery: candidate, how it was trained, each objective before → after."""
    metrics = [o["metric"] for o in report["objectives"]]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["#", "training", *[f"{m} before" for m in metrics], *[f"{m} after" for m in metrics], "reward after", "train s"])
    rows = []
    for r in report["recovered"]:
        cells = [r["number"], r["how"], *[r["before"].get(m) for m in metrics], *[r["after"].get(m) for m in metrics], r["reward_after"], r["train_seconds"]]
        rows.append("<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in cells) + "</tr>")
    return f"<table id='recovered' class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.15em;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:.92em}.meta td{padding:1px 12px 1px 0;vertical-align:top}
table.sortable{border-collapse:collapse;font-size:.85em;width:100%}
table.sortable th{cursor:pointer;background:#f3f3f3;position:sticky;top:0;text-align:right;padding:4px 6px;border-bottom:2px solid #ccc;user-select:none}
table.sortable th.asc:after{content:" ▲"}table.sortable th.desc:after{content:" ▼"}
table.sortable td{text-align:right;padding:3px 6px;border-bottom:1px solid #eee;white-space:nowrap}
table.sortable td.notes{text-align:left;white-space:normal;color:#a33}
tr.front{background:#eaf2fb;font-weight:600}
.tablewrap{max-height:600px;overflow:auto;border:1px solid #ddd}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].textContent, y = b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (x === '' ? 1 : y === '' ? -1 : x.localeCompare(y));
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _page(title: str, header: str, sections: Sequence[tuple[str, str]]) -> str:
    import plotly.offline

    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>"
        f"<body>{header}{body}<script>{_SORT_JS}</script></body></html>"
    )


def _fig_html(fig: Any, div_id: str) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False, "responsive": True}))


def _validation_text(v: Mapping[str, Any] | None) -> str:
    """Which images the candidates' accuracy comes from, and a warning when they are test
    images (then test figures of the chosen candidates are optimistic: they chose them)."""
    if not v:
        return "not recorded (a run made before automc recorded it)"
    text = f"accuracy of every candidate on {v['images']:,} images of the {v['split']!r} split (seeded, disjoint from the BN-calibration images)"
    if str(v["split"]).startswith("test"):
        text += " — test images: they chose the candidates, so accuracy on them is optimistic; validate on a training split and keep the test split for the final figures"
    return text  # escaped by _meta_table


def _meta_table(rows: Sequence[tuple[str, str]]) -> str:
    return "<table class='meta'>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>"


def _objective_text(report: Mapping[str, Any]) -> str:
    return ", ".join(f"{o['metric']} ({o['direction']}, reference {o['reference']:.6g} from {o['reference_source']})" for o in report["objectives"])


def write_html_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """The single-run report page (self-contained)."""
    run = report["run"]
    cfg = run["config"]
    counts = run["counts"]
    hv = report["hypervolume"]
    def name(key: str) -> str:
        return str(cfg.get(key, {}).get("name", "?"))

    rows = [
        ("model", f"{name('model')} on {cfg.get('data', {}).get('dataset', '?')}"),
        ("validation", _validation_text(run.get("validation"))),
        ("search", f"space {name('space')}, agent {name('agent')}, reward {name('reward')}"),
        ("candidates", f"{counts['complete']} finished, {counts['failed']} failed, {counts['running']} running, {counts['interrupted']} interrupted, {counts.get('duplicates', 0)} duplicate proposals answered from the record; {run['elapsed_s'] / 60:.1f} min"),
        ("objectives", _objective_text(report)),
        ("constraints", ", ".join(f"{c['metric']} in [{format_value(c['min']) or '-inf'}, {format_value(c['max']) or 'inf'}]" for c in report["constraints"]) or "none"),
        ("target", ", ".join(f"{t['metric']} ≤ {format_value(t['max'])} ({t['spec']}: {t['fraction']:.1%} of the uncompressed)" for t in report.get("target", [])) or "none"),
        ("uncompressed", ", ".join(f"{k.removeprefix('base_')} {format_value(v)}" for k, v in run["base_metrics"].items()) or "not measured"),
        ("front", f"{len(report['front'])} candidates: " + ", ".join(f"#{n}" for n in report["front"])),
        ("hypervolume", f"{hv['final_normalized']:.4f} normalised ({hv['final']:.6g} raw)"),
        ("report", f"{report['schema']}, written {report['created']} by automc {report['automc_version']}"),
    ]
    header = f"<h1>automc report: {html.escape(run['name'])}</h1>" + _meta_table(rows)
    single = [(run["name"], report)]
    sections = [
        ("Pareto front", _fig_html(pareto_figure(single), "pareto")),
        ("Hypervolume over evaluations", _fig_html(hypervolume_figure(single), "hypervolume")),
        ("Policies of the front", _fig_html(policy_figure(report), "policy")),
        ("All candidates (click a column to sort)", f"<div class='tablewrap'>{_table_html(report)}</div>"),
    ]
    if report.get("recovered"):
        sections.insert(1, ("Recovered finalists (fine-tuned; before → after)", _recovered_html(report)))
    path = Path(path)
    atomic_write_text(path, _page(f"automc report: {run['name']}", header, sections))
    return path


def write_html_comparison(comparison: Mapping[str, Any], path: str | Path) -> Path:
    """Fronts and hypervolume curves of several runs on one page."""
    runs = [(r["label"], r["report"]) for r in comparison["runs"]]
    first = runs[0][1]
    rows = [("objectives", _objective_text(first)), ("runs", str(len(runs)))]
    table = (
        "<table class='sortable'><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in ("run", "agent", "space", "finished", "failed", "front", "hypervolume (normalised)", "minutes"))
        + "</tr></thead><tbody>"
        + "".join(
            "<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in (s["label"], s["agent"], s["space"], s["finished"], s["failed"], s["front"], s["hypervolume_normalized"], s["minutes"])) + "</tr>"
            for s in comparison["summary"]
        )
        + "</tbody></table>"
    )
    header = "<h1>automc comparison</h1>" + _meta_table(rows)
    sections = [
        ("Runs", table),
        ("Pareto fronts", _fig_html(pareto_figure(runs), "pareto")),
        ("Hypervolume over evaluations (common reference point)", _fig_html(hypervolume_figure(runs), "hypervolume")),
    ]
    path = Path(path)
    atomic_write_text(path, _page("automc comparison", header, sections))
    return path


# ---------------------------------------------------------------- matplotlib (PNG)
