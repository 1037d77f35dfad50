"""Throughput of the search with 2 Ray workers vs 1 (and the in-process executor), one run.

The ResNet-20 task of ``benchmarks/agents_resnet20.py`` (pretrained, CIFAR-10, channel
pruning of all groups projected onto half the MACs, accuracy on 1,000 training images after
BN recalibration) is searched by one agent into fresh run directories: in process (torch on
``--threads`` threads), then on Ray with 1 and with 2 workers (1 thread each). Candidates per
minute come from the search loop's own wall time (setup and Ray start excluded); the driver's
own CPU seconds per candidate (agent, projection, store, Ray bookkeeping) are printed beside
them, since on 2 cores every driver second is taken from a worker.

    .venv/bin/python benchmarks/ray_workers.py --data-dir ../shared/data [--agent random] [--candidates 40]

RL agents keep ``episodes_in_flight`` episodes outstanding (``--in-flight``; by default the
agent's own: PPO's whole rollout of 4, DDPG's 1 — give DDPG 2 or more to use both workers). Writes ``benchmarks/results/ray_workers_<agent>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
from pathlib import Path
from typing import Any

from agents_resnet20 import resnet_config
from recovery_headline import REPO, _cpu

from automc.atomic import atomic_write_text
from automc.config import parse_config
from automc.search.loop import run_experiment

RL_AGENTS = ("ddpg", "ppo", "mnas-controller")


def _driver_cpu_s() -> float:
    """CPU seconds this process (the driver) has used so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--agent", default="random")
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--in-flight", type=int, help="episodes in flight for an RL agent (default: the agent's)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the in-process run")
    ap.add_argument("--out", type=Path, help="result file (default: benchmarks/results/ray_workers_<agent>.json)")
    args = ap.parse_args()
    agent_config: dict[str, Any] = {"episodes_in_flight": args.in_flight} if args.agent in RL_AGENTS and args.in_flight else {}
    cfg = parse_config(resnet_config(args.agent, args.agent, agent_config, "all", 0, args.candidates, args.data_dir))
    import torch

    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, workers, use_ray in (("in process", 1, False), ("ray, 1 worker", 1, True), ("ray, 2 workers", 2, True)):
            run_dir = Path(tmp) / label.replace(" ", "_").replace(",", "")
            marks: list[float] = []  # the driver's CPU seconds at each finished candidate
            s = run_experiment(cfg, run_dir, workers=workers, use_ray=use_ray, on_candidate=lambda *_: marks.append(_driver_cpu_s()))
            cpu = (marks[-1] - marks[0]) / max(1, len(marks) - 1)
            per_min = s["finished"] / (s["elapsed_s"] / 60)
            row = {"executor": label, "workers": workers, "candidates": s["finished"], "elapsed_s": s["elapsed_s"], "per_minute": per_min, "driver_cpu_s_per_candidate": None if not use_ray else cpu}
            rows.append(row)
            driver = "" if not use_ray else f"; driver {row['driver_cpu_s_per_candidate']:.3f} CPU s per candidate"
            print(f"{label:<16} {s['finished']:>3} candidates in {s['elapsed_s']:6.1f} s: {per_min:6.1f} candidates/min{driver}", flush=True)
    ratio = rows[2]["per_minute"] / rows[1]["per_minute"]
    print(f"2 Ray workers vs 1: {ratio:.2f}x candidates per minute ({os.cpu_count()} cores)")
    out = {"task": "resnet20, channel pruning (all groups), target macs 0.5, 1,000 validation images", "agent": args.agent, "agent_config": agent_config, "rows": rows, "two_vs_one": ratio, "cpu": _cpu(), "cores": os.cpu_count()}
    atomic_write_text(args.out or REPO / "benchmarks" / "results" / f"ray_workers_{args.agent}.json", json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
