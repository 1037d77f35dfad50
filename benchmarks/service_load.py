"""The service under load: 20 submissions and 200 concurrent clients against ``automc serve``.

Starts ``automc serve --max-concurrent 2`` on a fresh root, submits ``--experiments`` small
searches (digits, a small CNN, ``--candidates`` each; the queue runs two at a time), and
while they run keeps ``--clients`` clients busy: 60% poll ``GET /api/experiments``, 20% poll
one experiment, 20% follow one experiment's server-sent events. Prints the p50 / p99 latency
of ``GET /api/experiments`` measured while two searches ran (the target: p99 ≤ 200 ms on
2 cores) by a separate probe process sending one request at a time, and as the 200 clients
timed it (those timings include the queueing in their own, busy, event loop), the CPU time
of the server and of the load generator, the submission latency (it includes each experiment's dry run; the submissions go
in one after another among the clients), and whether every experiment finished with its
full budget. Writes ``benchmarks/results/service_load.json``::

    .venv/bin/python benchmarks/service_load.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
TOKEN = "load-test-token"


def experiment(i: int, candidates: int) -> dict[str, Any]:
    return {
        "name": f"load{i:02d}",
        "seed": i,
        "model": {"name": "small_cnn", "kwargs": {"width": 8}, "train": {"epochs": 3}},
        "data": {"dataset": "digits", "calibration_batches": 2, "validation": 200},
        "space": {"name": "channel_pruning"},
        "profiles": [{"name": "flops"}],
        "reward": {"name": "amc"},
        "agent": {"name": "random"},
        "budget": {"candidates": candidates},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (where the 2 cores went)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def probe(url: str, stop: Any, out: Any) -> None:
    """A separate process, one request at a time, every ~0.2 s: ``GET /api/experiments``'s
    latency as a client that is not itself overloaded sees it (the 200 clients of the load
    generator share one Python event loop, whose own queueing their timings include)."""
    samples: list[tuple[float, int]] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as api:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = api.get("/api/experiments")
            samples.append((time.perf_counter() - t0, sum(e["state"] == "running" for e in r.json())))
            time.sleep(random.uniform(0.1, 0.3))
    out.send(samples)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def poll_list(api: httpx.AsyncClient, stop: asyncio.Event, samples: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        r = await api.get("/api/experiments")
        dt = time.perf_counter() - t0
        running = sum(e["state"] == "running" for e in r.json())
        samples.append((dt, running))
        await asyncio.sleep(random.uniform(0.3, 0.7))


async def poll_one(api: httpx.AsyncClient, stop: asyncio.Event, ids: list[str], latencies: list[float]) -> None:
    while not stop.is_set():
        if not ids:
            await asyncio.sleep(0.5)
            continue
        t0 = time.perf_counter()
        await api.get(f"/api/experiments/{random.choice(ids)}")
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(random.uniform(0.3, 0.7))


async def follow(api: httpx.AsyncClient, stop: asyncio.Event, ids: list[str], counts: list[int]) -> None:
    while not stop.is_set():
        if not ids:
            await asyncio.sleep(0.5)
            continue
        n = 0
        try:
            async with api.stream("GET", f"/api/experiments/{random.choice(ids)}/events", timeout=None) as r:
                async for line in r.aiter_lines():
                    n += line.startswith("data:")
                    if stop.is_set():
                        break
        except httpx.HTTPError:
            pass
        counts.append(n)


async def load(url: str, experiments: int, clients: int, candidates: int) -> dict[str, Any]:
    """Start the clients, submit the experiments among them, wait until every one ended."""
    ids: list[str] = []
    submit_s: list[float] = []
    limits = httpx.Limits(max_connections=clients + 20, max_keepalive_connections=clients + 20)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, limits=limits) as api:
        stop = asyncio.Event()
        list_samples: list[tuple[float, int]] = []
        one: list[float] = []
        events: list[int] = []
        n_list, n_one = int(clients * 0.6), int(clients * 0.2)
        tasks = [asyncio.create_task(poll_list(api, stop, list_samples)) for _ in range(n_list)]
        tasks += [asyncio.create_task(poll_one(api, stop, ids, one)) for _ in range(n_one)]
        tasks += [asyncio.create_task(follow(api, stop, ids, events)) for _ in range(clients - n_list - n_one)]
        started = time.perf_counter()
        for i in range(experiments):
            t0 = time.perf_counter()
            r = await api.post("/api/experiments", json=experiment(i, candidates), timeout=600)
            r.raise_for_status()
            submit_s.append(time.perf_counter() - t0)
            ids.append(r.json()["id"])
        while True:
            await asyncio.sleep(2)
            listed = (await api.get("/api/experiments")).json()
            if all(e["state"] not in ("queued", "running") for e in listed):
                break
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        busy = [dt for dt, running in list_samples if running == 2]
        return {
            "clients": clients,
            "seconds": time.perf_counter() - started,
            "list_requests": len(list_samples),
            "list_requests_while_2_ran": len(busy),
            "list_p50_ms_while_2_ran": 1000 * percentile(busy, 50) if busy else None,
            "list_p99_ms_while_2_ran": 1000 * percentile(busy, 99) if busy else None,
            "list_p99_ms_all": 1000 * percentile([dt for dt, _ in list_samples], 99),
            "detail_requests": len(one),
            "detail_p99_ms": 1000 * percentile(one, 99) if one else None,
            "sse_data_lines": sum(events),
            "finished_with_full_budget": sum(e["state"] == "finished" and e["progress"]["finished"] == candidates for e in listed),
            "experiments": len(listed),
            "submission_p50_s": statistics.median(submit_s),
            "submission_max_s": max(submit_s),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--experiments", type=int, default=20)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--clients", type=int, default=200)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="automc-load-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "automc", "serve", "--root", str(root), "--port", str(port), "--token", TOKEN, "--max-concurrent", "2"], cwd=REPO, stderr=open(root / "server.log", "ab"))
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        ctx = multiprocessing.get_context("spawn")
        stop, (receive, send) = ctx.Event(), ctx.Pipe(duplex=False)
        prober = ctx.Process(target=probe, args=(url, stop, send))
        prober.start()
        result = asyncio.run(load(url, args.experiments, args.clients, args.candidates))
        stop.set()
        probed = [dt for dt, running in receive.recv() if running == 2]
        prober.join()
        result.update({"probe_requests_while_2_ran": len(probed), "probe_p50_ms_while_2_ran": 1000 * percentile(probed, 50), "probe_p99_ms_while_2_ran": 1000 * percentile(probed, 99)})
        result["server_cpu_s"] = cpu_seconds(server.pid)
        result["load_generator_cpu_s"] = cpu_seconds(os.getpid())
    finally:
        server.terminate()
        server.wait(30)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    result.update({"candidates_each": args.candidates, "cpu": cpu, "cores": os.cpu_count()})
    text = json.dumps(result, indent=1) + "\n"
    (REPO / "benchmarks" / "results" / "service_load.json").write_text(text)
    print(text)
    print(f"GET /api/experiments while 2 searches ran, from a separate one-request-at-a-time client: p50 {result['probe_p50_ms_while_2_ran']:.1f} ms, p99 {result['probe_p99_ms_while_2_ran']:.1f} ms ({result['probe_requests_while_2_ran']} requests)")
    print(f"CPU seconds: server {result['server_cpu_s']:.0f}, load generator {result['load_generator_cpu_s']:.0f} of {result['seconds']:.0f} s wall")
    print(f"GET /api/experiments while 2 searches ran, as the {args.clients} clients in the load generator timed it: p50 {result['list_p50_ms_while_2_ran']:.1f} ms, p99 {result['list_p99_ms_while_2_ran']:.1f} ms ({result['list_requests_while_2_ran']} requests, {args.clients} clients); {result['finished_with_full_budget']}/{result['experiments']} experiments finished with their full budget")


if __name__ == "__main__":
    main()
