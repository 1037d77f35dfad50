"""The cluster path for real: a search against a Ray cluster started with ``ray start``, one of
its two nodes killed mid-search.

1. ``ray start --head --num-cpus 1`` and a second node ``ray start --address HEAD --num-cpus 1``
   (both on this machine, as separate raylets), with Ray's token authentication on
   (``RAY_AUTH_MODE=token``, a fresh token shared through ``RAY_AUTH_TOKEN_PATH``);
2. ``automc search EXP --address HEAD --workers 2`` on the ResNet-20 task of
   ``benchmarks/agents_resnet20.py`` (random agent, ``--candidates``);
3. once ``--kill-after`` candidates are recorded, the second node's raylet and its workers are
   killed with SIGKILL;
4. the search must complete its budget on the node left: every candidate finished, none
   failed, the lost one recorded (``retries`` on its trial) and evaluated again.

Prints what happened and writes ``benchmarks/results/ray_cluster.json`` (or ``--out``); ``ray stop --force``
at the end (it stops every Ray node on this machine)::

    .venv/bin/python benchmarks/ray_cluster.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from agents_resnet20 import resnet_config
from recovery_headline import REPO, _cpu

from automc.atomic import atomic_write_text

PORT, NODE_MANAGER_PORT = 6391, 6392


def ray_cli(*args: str, env: dict[str, str]) -> None:
    """``ray ARGS`` (the venv's), failing loudly."""
    ray = Path(sys.executable).with_name("ray")
    subprocess.run([str(ray), *args], check=True, stdout=subprocess.DEVNULL, env=env)


def processes_of_node(port: int) -> list[int]:
    """PIDs of the raylet started with ``--node-manager-port port`` and of its workers."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    pids = [int(line.split()[0]) for line in out.splitlines() if f"node_manager_port={port}" in line or f"node-manager-port={port}" in line]
    return pids


def trials(run_dir: Path) -> list[tuple[int, str]]:
    try:
        with sqlite3.connect(f"file:{run_dir / 'study.db'}?mode=ro", uri=True) as db:
            return db.execute("select number, state from trials").fetchall()
    except sqlite3.Error:
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--candidates", type=int, default=24)
    ap.add_argument("--kill-after", type=int, default=6, help="kill the second node once this many candidates are recorded")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ray_cluster.json", help="result file")
    args = ap.parse_args()
    head = f"127.0.0.1:{PORT}"
    result: dict[str, Any] = {"cpu": _cpu(), "candidates": args.candidates}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = resnet_config("random", "random", {}, "all", 0, args.candidates, args.data_dir)
        exp = Path(tmp) / "exp.yaml"
        exp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_dir = Path(tmp) / "run"
        # token authentication, as a real cluster should run: one shared secret for every node
        # and for the driver (Ray reads it from RAY_AUTH_TOKEN_PATH)
        token = Path(tmp) / "ray_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        ray_cli("start", "--head", "--num-cpus", "1", "--port", str(PORT), "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--disable-usage-stats", env=env)
        try:
            ray_cli("start", "--address", head, "--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--node-manager-port", str(NODE_MANAGER_PORT), "--disable-usage-stats", env=env)
            t0 = time.perf_counter()
            search = subprocess.Popen([sys.executable, "-m", "automc", "search", str(exp), "--run-dir", str(run_dir), "--address", head, "--workers", "2", "--json", "--no-report"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
            while sum(1 for _, state in trials(run_dir) if state == "COMPLETE") < args.kill_after:
                if search.poll() is not None:
                    raise SystemExit(f"the search ended (exit {search.returncode}) before the node was killed")
                time.sleep(0.5)
            victims = processes_of_node(NODE_MANAGER_PORT)
            if not victims:
                raise SystemExit("found no process of the second node to kill")
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed_at = time.perf_counter() - t0
            print(f"killed the second node (raylet pids {victims}) after {args.kill_after} candidates, {killed_at:.0f} s in", flush=True)
            out, _ = search.communicate(timeout=3600)
            if search.returncode != 0:
                raise SystemExit(f"the search failed (exit {search.returncode}) after the node was killed")
            summary = json.loads(out)
        finally:
            ray_cli("stop", "--force", env=env)
        from automc.run import RunDir
        from automc.search.store import Store

        store = Store(RunDir(run_dir).storage_url(None), cfg["name"], readonly=True)
        retried = {t.number: t.user_attrs["retries"] for t in store.study.get_trials() if "retries" in t.user_attrs}
        numbers = sorted(c.number for c in store.candidates())
        shutil.rmtree(run_dir, ignore_errors=True)
    result.update({"finished": summary["finished"], "failed": summary["failed"], "killed_after_candidates": args.kill_after, "killed_at_s": killed_at, "search_s": summary.get("elapsed_s"), "retried": retried, "numbers_complete": numbers == list(range(args.candidates))})
    print(f"search completed: {summary['finished']} finished, {summary['failed']} failed of {args.candidates}; evaluated again after the node loss: {sorted(retried) or 'none'}")
    ok = summary["finished"] == args.candidates and summary["failed"] == 0 and numbers == list(range(args.candidates))
    result["ok"] = ok
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if not ok:
        raise SystemExit("the search did not complete its budget cleanly after the node loss")


if __name__ == "__main__":
    main()
