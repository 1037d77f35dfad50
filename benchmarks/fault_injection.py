"""kill -9 at random points of whole searches, rerun each time: nothing lost, nothing repeated.

For each scenario the search runs as ``python -m automc search`` and is killed with SIGKILL
after a random delay (seeded) — during base-model training, mid-evaluation, between the
store's writes, while the agent state or the report is written — then rerun with the same
command, until one run completes. Afterwards it prints, per scenario:

* finished candidates (must equal the budget) and how many of them every kill kept
  (a candidate finished before a kill must be in the final record, unchanged: **lost = 0**);
* repeated policies: finished candidates sharing a canonical policy
  (:meth:`SearchSpace.canonical`) — **must be 0**; proposals answered from the record;
* whether ``report.json`` parses and ``report.html`` is complete after kills during reporting.

Scenarios: ``quickstart`` (experiments/quickstart.yaml: digits, NSGA-II, 40 candidates) and
``ddpg-resnet20`` (pretrained ResNet-20 on CIFAR-10, channel pruning, DDPG, 40 candidates;
needs the shared data). Two kills fall at a random time after the start (uniform in
[0.3, --max-delay] s: imports, base-model training); the others at a random 0–0.4 s after the
store first holds N finished candidates, N drawn without repetition over the budget.

    .venv/bin/python benchmarks/fault_injection.py [--scenario quickstart] [--kills 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

SCENARIOS: dict[str, dict[str, Any]] = {
    "quickstart": yaml.safe_load((REPO / "experiments" / "quickstart.yaml").read_text()),
    "ddpg-resnet20": {
        "name": "ddpg_resnet20_faults",
        "seed": 0,
        "model": {"name": "resnet20", "weights": "pretrained"},
        "data": {"dataset": "cifar10", "eval_split": "test-exact", "calibration_split": "train-exact", "validation": 500, "calibration_batches": 4},
        "space": {"name": "channel_pruning", "config": {"lbound": 0.3}},
        "profiles": [{"name": "flops"}],
        "reward": {"name": "accuracy"},
        "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "macs", "direction": "minimize"}],
        "agent": {"name": "ddpg", "config": {"budget": 0.5, "warmup_episodes": 10}},
        "budget": {"candidates": 40},
    },
}


def _snapshot(run_dir: Path, name: str) -> dict[int, tuple]:
    """Finished candidates by number: (params, metrics, reward), read without writing."""
    from automc.search.snapshot import open_store

    if not (run_dir / "study.db").exists():
        return {}
    try:
        store = open_store(f"sqlite:///{run_dir / 'study.db'}", name)
    except Exception:  # noqa: BLE001 - killed before the study existed
        return {}
    return {c.number: (json.dumps(dict(c.params), sort_keys=True), json.dumps(dict(c.metrics), sort_keys=True), c.reward) for c in store.candidates() if c.state == "complete"}


def _run(cmd: list[str], delay: float | None, env: dict[str, str], *, until: tuple[Path, str, int] | None = None) -> int | None:
    """Run ``cmd``; kill it after ``delay`` seconds — counted from the moment the run's store
    holds ``until = (run_dir, name, n)`` finished candidates when given — or let it finish."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if delay is None:
        _, err = proc.communicate()
        if proc.returncode != 0:
            print(err.decode(errors="replace")[-2000:], file=sys.stderr)
        return proc.returncode
    if until is not None:
        while proc.poll() is None and len(_snapshot(until[0], until[1])) < until[2]:
            time.sleep(0.05)
    try:
        proc.wait(timeout=delay)
        return proc.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return None


def scenario(name: str, kills: int, max_delay: float, report_kills: int, seed: int, data_dir: str | None) -> dict[str, Any]:
    cfg = SCENARIOS[name]
    rng = random.Random(seed)
    env = dict(os.environ)
    if data_dir:
        env["AUTOMC_DATA_DIR"] = data_dir
    with tempfile.TemporaryDirectory(prefix="automc-faults-") as tmp:
        path, run_dir = Path(tmp) / "exp.yaml", Path(tmp) / "run"
        path.write_text(yaml.safe_dump(cfg))
        search = [sys.executable, "-m", "automc", "search", str(path), "--run-dir", str(run_dir), "--no-report"]
        seen: dict[int, tuple] = {}
        killed, t0 = 0, time.monotonic()
        budget = cfg["budget"]["candidates"]
        # two kills by time from the start (imports, base-model training), the others spread
        # over the budget: a short random delay after the store holds N finished candidates
        targets = sorted(rng.sample(range(1, budget), kills - 2))
        plan = [("time", None)] * 2 + [("progress", n) for n in targets]
        for mode, target in plan:
            if mode == "time":
                delay, until = rng.uniform(0.3, max_delay), None
            else:
                delay, until = rng.uniform(0.0, 0.4), (run_dir, cfg["name"], target)
            code = _run(search, delay, env, until=until)
            killed += code is None
            now = _snapshot(run_dir, cfg["name"])
            lost = [n for n, row in seen.items() if now.get(n) != row]
            assert not lost, f"kill lost or changed finished candidates {lost}"
            seen.update(now)
            where = f"{delay:4.2f} s after start" if mode == "time" else f"{delay:4.2f} s after {target} finished"
            print(f"  {name}: killed {where} -> {len(now)} finished", flush=True)
            if code == 0:
                break
        assert _run(search, None, env) == 0, "the final rerun failed"
        final = _snapshot(run_dir, cfg["name"])
        lost = [n for n, row in seen.items() if final.get(n) != row]
        report = [sys.executable, "-m", "automc", "report", str(run_dir)]
        for _ in range(report_kills):  # kills while the report is written
            _run(report, rng.uniform(0.5, 4.0), env)
        assert _run(report, None, env) == 0
        html = (run_dir / "report" / "report.html").read_text()
        data = json.loads((run_dir / "report" / "report.json").read_text())
        repeated, duplicates = _repeats(cfg, run_dir, data_dir)
        return {
            "scenario": name,
            "budget": cfg["budget"]["candidates"],
            "kills": killed,
            "finished": len(final),
            "kept_across_kills": len(seen) - len(lost),
            "lost": len(lost),
            "repeated": repeated,
            "duplicates_answered": duplicates,
            "report_complete": html.rstrip().endswith("</html>") and data["run"]["counts"]["complete"] == len(final),
            "minutes": (time.monotonic() - t0) / 60,
        }


def _repeats(cfg: dict[str, Any], run_dir: Path, data_dir: str | None) -> tuple[int, int]:
    """Finished candidates whose canonical policy equals an earlier finished one's."""
    if data_dir:
        os.environ["AUTOMC_DATA_DIR"] = data_dir
    from automc.config import parse_config
    from automc.run import RunDir
    from automc.search.context import build_context
    from automc.search.snapshot import open_store

    ctx = build_context(parse_config(cfg), RunDir(run_dir), measure_base=False, cache=False, train=False)
    store = open_store(f"sqlite:///{run_dir / 'study.db'}", cfg["name"])
    keys = [ctx.space.canonical(c.params) for c in store.candidates() if c.state == "complete"]
    return len(keys) - len(set(keys)), store.counts()["duplicates"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--report-kills", type=int, default=3)
    ap.add_argument("--max-delay", type=float, default=8.0, help="latest time-based kill point after a (re)start, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    rows = [scenario(s, args.kills, args.max_delay, args.report_kills, args.seed, args.data_dir) for s in (args.scenario or sorted(SCENARIOS, reverse=True))]
    print(f"\n{'scenario':16}{'budget':>7}{'kills':>6}{'finished':>9}{'kept':>6}{'lost':>5}{'repeated':>9}{'answered':>9}{'report ok':>10}{'min':>6}")
    for r in rows:
        print(f"{r['scenario']:16}{r['budget']:>7}{r['kills']:>6}{r['finished']:>9}{r['kept_across_kills']:>6}{r['lost']:>5}{r['repeated']:>9}{r['duplicates_answered']:>9}{str(r['report_complete']):>10}{r['minutes']:>6.1f}")
    bad = [r["scenario"] for r in rows if r["lost"] or r["repeated"] or r["finished"] != r["budget"] or not r["report_complete"]]
    if bad:
        sys.exit(f"FAILED: {', '.join(bad)}")


if __name__ == "__main__":
    main()
