"""Throughput of the search with 2 Ray workers vs 1 (and the in-process executor), one run.

The same experiment (digits, a 128-wide small CNN, channel pruning, random agent, FLOPs
profile) is run three times into fresh run directories; candidates per minute come from the
search loop's own wall time (setup and Ray start excluded).

    .venv/bin/python benchmarks/ray_workers.py [--candidates 40]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from automc.config import parse_config
from automc.search.loop import run_experiment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=40)
    args = ap.parse_args()
    cfg = parse_config(
        {
            "name": "ray-bench",
            "model": {"name": "small_cnn", "kwargs": {"width": 128}, "train": {"epochs": 1}},
            "data": {"dataset": "digits", "calibration_batches": 8},
            "space": {"name": "channel_pruning"},
            "profiles": [{"name": "flops"}],
            "reward": {"name": "amc"},
            "agent": {"name": "random"},
            "budget": {"candidates": args.candidates},
        }
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trained = None
        for label, workers, use_ray in (("in-process", 1, False), ("ray, 1 worker", 1, True), ("ray, 2 workers", 2, True)):
            run_dir = Path(tmp) / label.replace(" ", "_").replace(",", "")
            run_dir.mkdir()
            if trained is not None:  # same base model (and its checksum sidecar) for every run
                for name, data in trained.items():
                    (run_dir / name).write_bytes(data)
            s = run_experiment(cfg, run_dir, workers=workers, use_ray=use_ray)
            trained = trained or {name: (run_dir / name).read_bytes() for name in ("base_model.pt", "base_model.pt.meta.json")}
            per_min = s["finished"] / (s["elapsed_s"] / 60)
            rows.append((label, s["finished"], s["elapsed_s"], per_min))
            print(f"{label:<16} {s['finished']:>3} candidates in {s['elapsed_s']:6.1f} s: {per_min:6.1f} candidates/min", flush=True)
    print(f"2 Ray workers vs 1: {rows[2][3] / rows[1][3]:.2f}x candidates per minute (2 cores)")


if __name__ == "__main__":
    main()
