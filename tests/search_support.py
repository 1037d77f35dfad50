"""What the search tests share: a tiny experiment (digits, a 4-wide CNN) and its helpers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import yaml

from automc.search.candidate import Candidate

TINY = {
    "name": "tiny",
    "seed": 0,
    "model": {"name": "small_cnn", "kwargs": {"width": 4}, "train": {"epochs": 3}},
    "data": {"dataset": "digits", "calibration_batches": 2, "validation": 120},
    "space": {"name": "channel_pruning"},
    "profiles": [{"name": "flops"}],
    "reward": {"name": "amc"},
    "agent": {"name": "random"},
    "budget": {"candidates": 6},
}


def write_config(tmp_path: Path, cfg: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def trials_of(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "study.db") as db:
        return db.execute("select number, state, datetime_complete from trials order by number").fetchall()


def fake_eval(number: int, params: dict) -> Candidate:
    s = float(np.mean(list(params.values())))
    return Candidate(number, params, {"accuracy": 0.5 + 0.4 * s, "macs": 1e5 * s}, 0.5 + 0.4 * s - 0.3 * s * s)
