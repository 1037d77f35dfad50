"""The report's figures (plotly): the Pareto scatter with hover details, the hypervolume
curve and the per-layer policy bars of the front members, plus the helpers the HTML page
(:mod:`automc.results.html`) and the PNGs (:mod:`automc.results.png`) share.

Everything here reads the report dicts of :mod:`automc.results.report` and nothing else.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
MAX_POLICY_MEMBERS = 10  # more bars than this per layer cannot be read
RECOVERED = "#2ca02c"  # the recovered (fine-tuned) finalists


def format_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def axis_label(o: Mapping[str, Any]) -> str:
    return f"{o['metric']} ({'higher' if o['direction'] == 'maximize' else 'lower'} is better)"


def panel_pairs(report: Mapping[str, Any]) -> list[tuple[int, int]]:
    """(x, y) objective indices of the scatter panels: the first objective on y against each
    other one on x (accuracy vs latency, accuracy vs size, ...)."""
    return [(j, 0) for j in range(1, len(report["objectives"]))]


def _hover(c: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    lines = [f"<b>#{c['number']}</b>" + (" (front)" if c["on_front"] else "") + (f" reward {c['reward']:.4g}" if c["reward"] is not None else "")]
    shown = [o["metric"] for o in report["objectives"]]
    shown += [k for k in ("macs", "params", "size_bytes", "latency_ms", "energy_mj") if k in c["metrics"] and k not in shown]
    lines += [f"{k}: {format_value(c['metrics'][k])}" for k in shown if k in c["metrics"]]
    values = [v for v in c["params"].values() if isinstance(v, (int, float))]
    if values:
        lines.append(f"policy: {len(c['params'])} dims, mean {sum(values) / len(values):.3g}, min {min(values):.3g}")
    if c["violations"] and c["state"] == "complete":
        lines.append("infeasible: " + "; ".join(c["violations"]))
    return "<br>".join(lines)


def base_point(report: Mapping[str, Any], mx: str, my: str) -> tuple[float, float] | None:
    """The uncompressed model's (x, y), when the run measured it."""
    base = report["run"]["base_metrics"]
    if f"base_{mx}" in base and f"base_{my}" in base:
        return float(base[f"base_{mx}"]), float(base[f"base_{my}"])
    return None


def front_points(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    by_number = {c["number"]: c for c in report["candidates"]}
    return [by_number[n] for n in report["front"]]


def policy_members(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """At most MAX_POLICY_MEMBERS front members, spread evenly along the front."""
    members = front_points(report)
    if len(members) <= MAX_POLICY_MEMBERS:
        return members
    step = (len(members) - 1) / (MAX_POLICY_MEMBERS - 1)
    return [members[round(i * step)] for i in range(MAX_POLICY_MEMBERS)]


def layer_knobs(report: Mapping[str, Any]) -> dict[str, list[Mapping[str, str]]]:
    out: dict[str, list[Mapping[str, str]]] = {}
    for d in report["dimensions"]:
        out.setdefault(d["knob"], []).append(d)
    return out


def scatter_panel(report: Mapping[str, Any], xi: int, yi: int) -> dict[str, Any]:
    """What one scatter panel (objective ``xi`` on x, ``yi`` on y) shows, for both renderers:
    feasible non-front candidates, infeasible ones that have both metrics, the front sorted
    along x, whether to draw it as a staircase, the uncompressed model's point, and the
    constraint bounds on either axis as ``(axis, bound, label)``."""
    objs = report["objectives"]
    mx, my = objs[xi]["metric"], objs[yi]["metric"]
    lines = []
    targets = {(t["metric"], t["max"]): t for t in report.get("target", [])}
    for c in report["constraints"]:
        for bound, sign in ((c["min"], "≥"), (c["max"], "≤")):
            if bound is not None and c["metric"] in (mx, my):
                t = targets.get((c["metric"], bound)) if sign == "≤" else None
                text = f"target {c['metric']} ≤ {bound:g} ({t['fraction']:.0%})" if t else f"{c['metric']} {sign} {bound:g}"
                lines.append(("x" if c["metric"] == mx else "y", bound, text))
    return {
        "mx": mx,
        "my": my,
        "rest": [c for c in report["candidates"] if c["feasible"] and not c["on_front"]],
        "bad": [c for c in report["candidates"] if not c["feasible"] and c["state"] == "complete" and mx in c["metrics"] and my in c["metrics"]],
        "front": sorted(front_points(report), key=lambda c: c["metrics"][mx]),
        "staircase": objs[xi]["direction"] == "minimize" and objs[yi]["direction"] == "maximize" and len(objs) == 2,
        "base": base_point(report, mx, my),
        "constraints": lines,
        "recovered": [r for r in report.get("recovered", []) if all(m in r["before"] and m in r["after"] for m in (mx, my))],
    }


def recovered_hover(r: Mapping[str, Any], mx: str, my: str) -> str:
    """Hover text of a recovered finalist: what it was and what training made of it."""
    rows = [f"<b>#{r['number']} recovered</b> ({r['how']})"]
    for m in dict.fromkeys([mx, my, "accuracy"]):
        if m in r["before"] and m in r["after"]:
            rows.append(f"{m}: {format_value(r['before'][m])} → {format_value(r['after'][m])}")
    return "<br>".join(rows)


# ---------------------------------------------------------------- plotly (HTML)


def pareto_figure(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> Any:
    """Scatter of every candidate with the front highlighted; one colour per run when
    comparing several."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    first = runs[0][1]
    objs = first["objectives"]
    pairs = panel_pairs(first)
    fig = make_subplots(rows=1, cols=len(pairs), subplot_titles=[f"{objs[y]['metric']} vs {objs[x]['metric']}" for x, y in pairs])
    single = len(runs) == 1
    for r, (label, report) in enumerate(runs):
        color = COLORS[r % len(COLORS)]
        for p, (xi, yi) in enumerate(pairs):
            panel = scatter_panel(report, xi, yi)
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
            rec = panel["recovered"]
            if rec:
                xs: list[Any] = []
                ys: list[Any] = []
                for item in rec:  # a dotted segment from each finalist to what it became
                    xs += [item["before"][mx], item["after"][mx], None]
                    ys += [item["before"][my], item["after"][my], None]
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=RECOVERED, dash="dot", width=1), hoverinfo="skip", showlegend=False, legendgroup=f"{label}-recovered"), row=1, col=p + 1)
                fig.add_trace(
                    go.Scatter(
                        x=[item["after"][mx] for item in rec], y=[item["after"][my] for item in rec], mode="markers",
                        marker=dict(symbol="diamond", size=11, color=RECOVERED, line=dict(color="white", width=1)),
                        name="recovered (fine-tuned)" if single else f"{label}: recovered", legendgroup=f"{label}-recovered", showlegend=p == 0,
                        hovertext=[recovered_hover(item, mx, my) for item in rec], hoverinfo="text",
                    ),
                    row=1, col=p + 1,
                )
            base = panel["base"]
            if base is not None:
                fig.add_trace(
                    go.Scatter(
                        x=[base[0]], y=[base[1]], mode="markers", marker=dict(symbol="star", size=14, color="#333" if single else color),
                        name="uncompressed" if single else f"{label}: uncompressed", legendgroup=f"{label}-base", showlegend=p == 0,
                        hovertext=[f"<b>uncompressed model</b><br>{mx}: {format_value(base[0])}<br>{my}: {format_value(base[1])}"], hoverinfo="text",
                    ),
                    row=1, col=p + 1,
                )
            if r == 0:
                fig.update_xaxes(title_text=axis_label(objs[xi]), row=1, col=p + 1)
                fig.update_yaxes(title_text=axis_label(objs[yi]), row=1, col=p + 1)
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

    knobs = layer_knobs(report)
    members = policy_members(report)
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
