"""The report's plots as PNGs (matplotlib), for documents and pull requests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from automc.results.plots import COLORS, RECOVERED, axis_label, layer_knobs, panel_pairs, policy_members, scatter_panel


def _mpl() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png_pareto(runs: Sequence[tuple[str, Mapping[str, Any]]], path: Path) -> Path:
    plt = _mpl()
    first = runs[0][1]
    objs = first["objectives"]
    pairs = panel_pairs(first)
    fig, axes = plt.subplots(1, len(pairs), figsize=(7 * len(pairs), 5), squeeze=False)
    single = len(runs) == 1
    for r, (label, report) in enumerate(runs):
        color = COLORS[r % len(COLORS)]
        for ax, (xi, yi) in zip(axes[0], pairs):
            panel = scatter_panel(report, xi, yi)
            mx, my, rest, bad, front = panel["mx"], panel["my"], panel["rest"], panel["bad"], panel["front"]
            ax.scatter([c["metrics"][mx] for c in rest], [c["metrics"][my] for c in rest], s=18, color="#b0b0b0" if single else color, alpha=0.6 if single else 0.3, label="feasible" if single else None)
            if bad:
                ax.scatter([c["metrics"][mx] for c in bad], [c["metrics"][my] for c in bad], s=18, marker="x", color="#e08080" if single else color, alpha=0.6 if single else 0.25, label="infeasible" if single else None)
            ax.plot([c["metrics"][mx] for c in front], [c["metrics"][my] for c in front], "-o", drawstyle="steps-post" if panel["staircase"] else "default", color=color, markersize=6, label="Pareto front" if single else label)
            for i, item in enumerate(panel["recovered"]):
                ax.annotate("", xy=(item["after"][mx], item["after"][my]), xytext=(item["before"][mx], item["before"][my]), arrowprops=dict(arrowstyle="->", color=RECOVERED, lw=1, ls=":"))
                ax.scatter([item["after"][mx]], [item["after"][my]], marker="D", s=40, color=RECOVERED, zorder=3, label="recovered (fine-tuned)" if single and i == 0 else None)
            base = panel["base"]
            if base is not None:
                ax.scatter([base[0]], [base[1]], marker="*", s=160, color="#333" if single else color, label="uncompressed" if single else None, zorder=3)
            ax.set_xlabel(axis_label(objs[xi]))
            ax.set_ylabel(axis_label(objs[yi]))
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
    knobs = layer_knobs(report)
    members = policy_members(report)
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
