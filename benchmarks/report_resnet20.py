"""The report must-show on a real run: ResNet-20 on CIFAR-10, 40 candidates, latency measured.

Runs (or resumes) ``experiments/pareto_resnet20_latency.yaml``, writes its report, then
exports every front member with ``automc export`` and prints stored against re-measured
accuracy (goal: identical) and latency (goal: within 5%), one row per member, from one run.

    AUTOMC_DATA_DIR=../shared/data .venv/bin/python benchmarks/report_resnet20.py [--run-dir DIR] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from automc.config import load_config
from automc.results.export import export_candidate
from automc.results.report import write_report
from automc.search.loop import run_experiment

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "experiments" / "pareto_resnet20_latency.yaml"))
    ap.add_argument("--run-dir", default="runs/pareto_resnet20_latency")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    cfg = load_config(args.config)
    t0 = time.perf_counter()
    summary = run_experiment(cfg, Path(args.run_dir))
    print(f"search: {summary['finished']} finished, {summary['failed']} failed ({summary['evaluated_now']} evaluated now, {time.perf_counter() - t0:.0f} s)")
    paths = write_report(args.run_dir)
    report = json.loads(paths["json"].read_text())
    print(f"report: {paths['html']} — front of {len(report['front'])}, normalised hypervolume {report['hypervolume']['final_normalized']:.4f}")

    rows = []
    print(f"\n{'#':>4}{'accuracy stored':>17}{'re-measured':>13}{'latency stored':>16}{'re-measured':>13}{'diff':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in report["front"]:
            card = export_candidate(args.run_dir, n, Path(tmp) / str(n))
            lat = card["reproduction"]["latency_ms"]
            acc = card["reproduction"]["accuracy"]
            rows.append({"candidate": n, "accuracy_stored": acc["stored"], "accuracy_measured": acc["measured"], "latency_stored_ms": lat["stored"], "latency_measured_ms": lat["measured"], "latency_difference": lat["relative_difference"]})
            print(f"{n:>4}{acc['stored']:>17.4f}{acc['measured']:>13.4f}{lat['stored']:>16.4f}{lat['measured']:>13.4f}{100 * lat['relative_difference']:>7.2f}%")
    exact = sum(r["accuracy_stored"] == r["accuracy_measured"] for r in rows)
    within = sum(abs(r["latency_difference"]) <= 0.05 for r in rows)
    print(f"\naccuracy identical for {exact}/{len(rows)} front members (goal: all); latency within 5% for {within}/{len(rows)} (goal: all)")
    if args.out:
        Path(args.out).write_text(json.dumps({"front": rows, "accuracy_identical": exact, "latency_within_5_percent": within, "hypervolume_normalized": report["hypervolume"]["final_normalized"]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
