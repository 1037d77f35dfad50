"""Drawing a report (or a comparison of runs): one self-contained HTML page and PNGs.

Everything here reads the report dicts of :mod:`automc.results.report` and nothing else. The HTML
inlines plotly.js (works offline, from a file:// URL, with no network), holds the Pareto
scatter with hover details, the hypervolume curve, the per-layer policy bars of the front
members and a sortable table; the PNGs (matplotlib) show the same plots for documents and
pull requests.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
MAX_POLICY_MEMBERS = 10  # more bars than this per layer cannot be read


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _label(o: Mapping[str, Any]) -> str:
    return f"{o['metric']} ({'higher' if o['direction'] == 'maximize' else 'lower'} is better)"


def _pairs(report: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(x, y) objective indices of the scatter panels: the first objective on y against each
    other one on x (accuracy vs latency, accuracy vs size, ...)."""
    return [(j, 0) for j in range(1, len(report["objectives"]))]


def _hover(c: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    lines = [f"<b>#{c['number']}</b>" + (" (front)" if c["on_front"] else "") + (f" reward {c['reward']:.4g}" if c["reward"] is not None else "")]
    shown = [o["metric"] for o in report["objectives"]]
    shown += [k for k in ("macs", "params", "size_bytes", "latency_ms", "energy_mj") if k in c["metrics"] and k not in shown]
    lines += [f"{k}: {_fmt(c['metrics'][k])}" for k in shown if k in c["metrics"]]
    values = [v for v in c["params"].values() if isinstance(v, (int, float))]
    if values:
        lines.append(f"policy: {len(c['params'])} dims, mean {sum(values) / len(values):.3g}, min {min(values):.3g}")
    if c["violations"] and c["state"] == "complete":
        lines.append("infeasible: " + "; ".join(c["violations"]))
    return "<br>".join(lines)


def _base_point(report: Mapping[str, Any], mx: str, my: str) -> tuple[float, float] | None:
    """The uncompressed model's (x, y), when the run measured it."""
    base = report["run"]["base_metrics"]
    if f"base_{mx}" in base and f"base_{my}" in base:
        return float(base[f"base_{mx}"]), float(base[f"base_{my}"])
    return None


def _front_points(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    by_number = {c["number"]: c for c in report["candidates"]}
    return [by_number[n] for n in report["front"]]


def _policy_members(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """At most MAX_POLICY_MEMBERS front members, spread evenly along the front."""
    members = _front_points(report)
    if len(members) <= MAX_POLICY_MEMBERS:
        return members
    step = (len(members) - 1) / (MAX_POLICY_MEMBERS - 1)
    return [members[round(i * step)] for i in range(MAX_POLICY_MEMBERS)]


def _knobs(report: Mapping[str, Any]) -> dict[str, list[Mapping[str, str]]]:
    out: dict[str, list[Mapping[str, str]]] = {}
    for d in report["dimensions"]:
        out.setdefault(d["knob"], []).append(d)
    return out


def _panel(report: Mapping[str, Any], xi: int, yi: int) -> dict[str, Any]:
    """What one scatter panel (objective ``xi`` on x, ``yi`` on y) shows, for both renderers:
    feasible non-front candidates, infeasible ones that have both metrics, the front sorted
    along x, whether to draw it as a staircase, the uncompressed model's point, and the
    constraint bounds on either axis as ``(axis, bound, label)``."""
    objs = report["objectives"]
    mx, my = objs[xi]["metric"], objs[yi]["metric"]
    lines = []
    for c in report["constraints"]:
        for bound, sign in ((c["min"], "≥"), (c["max"], "≤")):
            if bound is not None and c["metric"] in (mx, my):
                lines.append(("x" if c["metric"] == mx else "y", bound, f"{c['metric']} {sign} {bound:g}"))
    return {
        "mx": mx,
        "my": my,
        "rest": [c for c in report["candidates"] if c["feasible"] and not c["on_front"]],
        "bad": [c for c in report["candidates"] if not c["feasible"] and c["state"] == "complete" and mx in c["metrics"] and my in c["metrics"]],
        "front": sorted(_front_points(report), key=lambda c: c["metrics"][mx]),
        "staircase": objs[xi]["direction"] == "minimize" and objs[yi]["direction"] == "maximize" and len(objs) == 2,
        "base": _base_point(report, mx, my),
        "constraints": lines,
    }


# ---------------------------------------------------------------- plotly (HTML)


def pareto_figure(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> Any:
    """Scatter of every candidate with the front highlighted; one colour per run when
    comparing several."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    first = runs[0][1]
    objs = first["objectives"]
    pairs = _pairs(first)
    fig = make_subplots(rows=1, cols=len(pairs), subplot_titles=[f"{objs[y]['metric']} vs {objs[x]['metric']}" for x, y in pairs])
    single = len(runs) == 1
    for r, (label, report) in enumerate(runs):
        color = COLORS[r % len(COLORS)]
        for p, (xi, yi) in enumerate(pairs):
            panel = _panel(report, xi, yi)
            mx, my = panel["mx"], panel["my"]
            groups = [
                ("feasible", panel["rest"], dict(color="#b0b0b0" if single else color, size=7, opacity=0.6 if single else 0.3)),
                ("infeasible", panel["bad"], dict(color="#e8a0a0" if single else color, symbol="x", size=7, opacity=0.6 if single else 0.25)),
            ]
            for name, cs, marker in groups:
                if not cs:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=[c["metrics"][mx] for c in cs], y=[c["metrics"][my] for c in cs], mode="markers", marker=marker,
                        name=name if single else f"{label}: {name}", legendgroup=f"{label}-{name}", showlegend=p == 0,
                        hovertext=[_hover(c, report) for c in cs], hoverinfo="text",
                    ),
                    row=1, col=p + 1,
                )
            front = panel["front"]
            fig.add_trace(
                go.Scatter(
                    x=[c["metrics"][mx] for c in front], y=[c["metrics"][my] for c in front], mode="lines+markers",
                    line=dict(color=color, shape="hv" if panel["staircase"] else "linear", width=2), marker=dict(color=color, size=10, line=dict(color="white", width=1)),
                    name="Pareto front" if single else f"{label}: front", legendgroup=f"{label}-front", showlegend=p == 0,
                    hovertext=[_hover(c, report) for c in front], hoverinfo="text",
                ),
                row=1, col=p + 1,
            )
            base = panel["base"]
            if base is not None:
                fig.add_trace(
                    go.Scatter(
                        x=[base[0]], y=[base[1]], mode="markers", marker=dict(symbol="star", size=14, color="#333" if single else color),
                        name="uncompressed" if single else f"{label}: uncompressed", legendgroup=f"{label}-base", showlegend=p == 0,
                        hovertext=[f"<b>uncompressed model</b><br>{mx}: {_fmt(base[0])}<br>{my}: {_fmt(base[1])}"], hoverinfo="text",
                    ),
                    row=1, col=p + 1,
                )
            if r == 0:
                fig.update_xaxes(title_text=_label(objs[xi]), row=1, col=p + 1)
                fig.update_yaxes(title_text=_label(objs[yi]), row=1, col=p + 1)
                for axis, bound, text in panel["constraints"]:
                    add = fig.add_vline if axis == "x" else fig.add_hline
                    add(bound, line_dash="dash", line_color="#d62728", row=1, col=p + 1, annotation_text=text)
    fig.update_layout(height=520, margin=dict(t=60, l=60, r=20, b=60), hovermode="closest", template="plotly_white", legend=dict(orientation="h", y=-0.18))
    return fig


def hypervolume_figure(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for r, (label, report) in enumerate(runs):
        h = report["hypervolume"]["history"]
        fig.add_trace(
            go.Scatter(
                x=[p["evaluations"] for p in h], y=[p["normalized"] for p in h], mode="lines", line=dict(color=COLORS[r % len(COLORS)], width=2, shape="hv"),
                name=label, hovertemplate="%{x} evaluations<br>normalised hypervolume %{y:.4f}<extra>" + html.escape(label) + "</extra>",
            )
        )
    fig.update_layout(
        height=380, template="plotly_white", margin=dict(t=20, l=60, r=20, b=50),
        xaxis_title="evaluations", yaxis_title="normalised hypervolume", showlegend=len(runs) > 1,
    )
    return fig


def policy_figure(report: Mapping[str, Any]) -> Any:
    """Per-layer values of the front members, one panel per knob (ratio, bits, density...)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    knobs = _knobs(report)
    members = _policy_members(report)
    fig = make_subplots(rows=max(len(knobs), 1), cols=1, subplot_titles=list(knobs) or ["no dimensions"], vertical_spacing=0.12)
    for k, (knob, dims) in enumerate(knobs.items()):
        for m, c in enumerate(members):
            fig.add_trace(
                go.Bar(
                    x=[d["layer"] for d in dims], y=[c["params"].get(d["name"]) for d in dims], name=f"#{c['number']}",
                    legendgroup=f"#{c['number']}", showlegend=k == 0, marker_color=COLORS[m % len(COLORS)],
                    hovertemplate="%{x}: %{y}<extra>#" + str(c["number"]) + "</extra>",
                ),
                row=k + 1, col=1,
            )
    fig.update_layout(barmode="group", height=320 * max(len(knobs), 1) + 80, template="plotly_white", margin=dict(t=40, l=60, r=20, b=80))
    return fig


def _table_html(report: Mapping[str, Any]) -> str:
    objectives = [o["metric"] for o in report["objectives"]]
    metrics = objectives + sorted({k for c in report["candidates"] for k in c["metrics"] if not k.startswith("base_") and k not in ("samples",)} - set(objectives))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["#", "state", "front", "feasible", "reward", *metrics, "notes"])
    rows = []
    for c in report["candidates"]:
        notes = c["error"] or ("; ".join(c["violations"]) if c["state"] == "complete" and not c["feasible"] else "")
        cells = [c["number"], c["state"], c["on_front"], c["feasible"], c["reward"], *[c["metrics"].get(m) for m in metrics]]
        tds = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in cells) + f"<td class='notes'>{html.escape(notes)}</td>"
        rows.append(f"<tr class='{'front' if c['on_front'] else ''}'>{tds}</tr>")
    return f"<table id='candidates' class='sortable'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


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
        ("search", f"space {name('space')}, agent {name('agent')}, reward {name('reward')}"),
        ("candidates", f"{counts['complete']} finished, {counts['failed']} failed, {counts['running']} running, {counts['interrupted']} interrupted; {run['elapsed_s'] / 60:.1f} min"),
        ("objectives", _objective_text(report)),
        ("constraints", ", ".join(f"{c['metric']} in [{_fmt(c['min']) or '-inf'}, {_fmt(c['max']) or 'inf'}]" for c in report["constraints"]) or "none"),
        ("uncompressed", ", ".join(f"{k.removeprefix('base_')} {_fmt(v)}" for k, v in run["base_metrics"].items()) or "not measured"),
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
    path = Path(path)
    path.write_text(_page(f"automc report: {run['name']}", header, sections), encoding="utf-8")
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
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in (s["label"], s["agent"], s["space"], s["finished"], s["failed"], s["front"], s["hypervolume_normalized"], s["minutes"])) + "</tr>"
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
    path.write_text(_page("automc comparison", header, sections), encoding="utf-8")
    return path


# ---------------------------------------------------------------- matplotlib (PNG)


def _mpl() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png_pareto(runs: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> Path:
    plt = _mpl()
    first = runs[0][1]
    objs = first["objectives"]
    pairs = _pairs(first)
    fig, axes = plt.subplots(1, len(pairs), figsize=(7 * len(pairs), 5), squeeze=False)
    single = len(runs) == 1
    for r, (label, report) in enumerate(runs):
        color = COLORS[r % len(COLORS)]
        for ax, (xi, yi) in zip(axes[0], pairs):
            panel = _panel(report, xi, yi)
            mx, my, rest, bad, front = panel["mx"], panel["my"], panel["rest"], panel["bad"], panel["front"]
            ax.scatter([c["metrics"][mx] for c in rest], [c["metrics"][my] for c in rest], s=18, color="#b0b0b0" if single else color, alpha=0.6 if single else 0.3, label="feasible" if single else None)
            if bad:
                ax.scatter([c["metrics"][mx] for c in bad], [c["metrics"][my] for c in bad], s=18, marker="x", color="#e08080" if single else color, alpha=0.6 if single else 0.25, label="infeasible" if single else None)
            ax.plot([c["metrics"][mx] for c in front], [c["metrics"][my] for c in front], "-o", drawstyle="steps-post" if panel["staircase"] else "default", color=color, markersize=6, label="Pareto front" if single else label)
            base = panel["base"]
            if base is not None:
                ax.scatter([base[0]], [base[1]], marker="*", s=160, color="#333" if single else color, label="uncompressed" if single else None, zorder=3)
            ax.set_xlabel(_label(objs[xi]))
            ax.set_ylabel(_label(objs[yi]))
            ax.grid(alpha=0.3)
            if r == 0:
                for axis, bound, _text in panel["constraints"]:
                    (ax.axvline if axis == "x" else ax.axhline)(bound, ls="--", color="#d62728", lw=1)
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle("Pareto front" + ("" if single else "s") + f": {first['run']['name']}" * single)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _png_hypervolume(runs: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> Path:
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r, (label, report) in enumerate(runs):
        h = report["hypervolume"]["history"]
        ax.step([p["evaluations"] for p in h], [p["normalized"] for p in h], where="post", color=COLORS[r % len(COLORS)], label=label)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("normalised hypervolume")
    ax.set_title("Hypervolume of the feasible front after each evaluation")
    ax.grid(alpha=0.3)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _png_policy(report: Mapping[str, Any], path: Path) -> Path:
    plt = _mpl()
    knobs = _knobs(report)
    members = _policy_members(report)
    fig, axes = plt.subplots(max(len(knobs), 1), 1, figsize=(12, 3.6 * max(len(knobs), 1)), squeeze=False)
    for ax, (knob, dims) in zip(axes[:, 0], knobs.items()):
        width = 0.8 / max(len(members), 1)
        for m, c in enumerate(members):
            xs = [i + (m - (len(members) - 1) / 2) * width for i in range(len(dims))]
            ax.bar(xs, [c["params"].get(d["name"], 0) for d in dims], width=width, color=COLORS[m % len(COLORS)], label=f"#{c['number']}")
        ax.set_xticks(range(len(dims)))
        ax.set_xticklabels([d["layer"] for d in dims], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(knob)
        ax.grid(axis="y", alpha=0.3)
    if members:
        axes[0][0].legend(ncol=min(len(members), 10), fontsize=7, loc="upper right")
    fig.suptitle("Per-layer policy of the front members")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_pngs(report: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    single = [(report["run"]["name"], report)]
    return {
        "pareto_png": _png_pareto(single, folder / "pareto.png"),
        "hypervolume_png": _png_hypervolume(single, folder / "hypervolume.png"),
        "policy_png": _png_policy(report, folder / "policy.png"),
    }


def write_comparison_pngs(comparison: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
    folder = Path(folder)
    runs = [(r["label"], r["report"]) for r in comparison["runs"]]
    return {"pareto_png": _png_pareto(runs, folder / "pareto.png"), "hypervolume_png": _png_hypervolume(runs, folder / "hypervolume.png")}
