"""What the API shows of each run folder, kept fresh by one watcher thread.

Reading a run means snapshotting its Optuna store and building its report (tens to hundreds
of milliseconds of Python). Requests never do that: a watcher rebuilds a folder's view only
when its ``study.db`` (or its write-ahead log) or ``service.json`` changed (about once a second at most) — the report
itself built in a child process, so the server's interpreter stays free for requests — and
requests read the latest view — so ``GET /api/experiments`` stays fast however many clients poll it while
searches run. The watcher also appends each folder's events (a candidate finished, the
state changed) to an in-memory log that the server-sent-event streams read.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import multiprocessing
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automc.service.jobs import JobQueue
from automc.service.records import JOB_FILE

MAX_EVENTS = 5000  # per experiment, in memory; a client further behind gets the current state


@dataclass
class View:
    """The latest view of one run folder and its event log."""

    summary: dict[str, Any]
    report: dict[str, Any] | None = None
    stamp: tuple[Any, ...] = ()
    seen: set[int] = field(default_factory=set)  # candidate numbers already announced
    events: list[dict[str, Any]] = field(default_factory=list)
    first_event: int = 0  # id of events[0]
    detail: bytes | None = None  # GET /api/experiments/{id}, serialised once per update

    def add_event(self, event: dict[str, Any]) -> None:
        self.events.append({**event, "id": self.first_event + len(self.events)})
        if len(self.events) > MAX_EVENTS:
            drop = len(self.events) - MAX_EVENTS
            self.events, self.first_event = self.events[drop:], self.first_event + drop

    def events_after(self, last_id: int) -> list[dict[str, Any]]:
        return self.events[max(0, last_id + 1 - self.first_event) :]


# a running search commits to the write-ahead log; study.db itself changes at checkpoints
STORE_FILES = ("study.db", "study.db-wal")


def store_mtime(folder: Path) -> float:
    """When the run's SQLite record last changed (0 when it has none)."""
    return max((p.stat().st_mtime for p in (folder / n for n in STORE_FILES) if p.is_file()), default=0.0)


def _stamp(folder: Path) -> tuple[Any, ...]:
    out: list[Any] = []
    for name in (*STORE_FILES, JOB_FILE, "config.yaml"):
        try:
            st = (folder / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _cli_running(folder: Path) -> bool:
    """Whether an ``automc search`` outside the service holds this run (the pid in its lock
    file is alive on this host)."""
    try:
        holder = (folder / ".lock").read_text().split()
        pid, host = int(holder[1]), holder[3]
    except (OSError, ValueError, IndexError):
        return False
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summarize_report(report: dict[str, Any] | None) -> dict[str, Any]:
    """Progress and the best so far, from a run's report data."""
    if report is None:
        return {"progress": {"finished": 0, "failed": 0, "running": 0}, "best": None, "front_size": 0, "hypervolume": None}
    counts = report["run"]["counts"]
    done = [c for c in report["candidates"] if c["state"] == "complete" and c.get("reward") is not None]
    best = max(done, key=lambda c: c["reward"] if math.isfinite(c["reward"]) else -math.inf, default=None)
    budget = report["run"]["config"].get("budget", {})
    return {
        "progress": {"finished": counts.get("complete", 0), "failed": counts.get("failed", 0), "running": counts.get("running", 0), "budget": budget},
        "best": None if best is None else {"number": best["number"], "reward": best["reward"], "metrics": best["metrics"]},
        "front_size": len(report["front"]),
        "hypervolume": report["hypervolume"]["final_normalized"],
    }


class Views:
    """The views of every run folder under the queue's root, refreshed by :meth:`refresh`."""

    def __init__(self, queue: JobQueue, period_s: float = 1.0) -> None:
        self.queue = queue
        self.period_s = period_s
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None  # report builder (when started)
        self.views: dict[str, View] = {}
        self.lock = threading.Lock()
        self.generation = 0  # bumped whenever a view changes or goes
        self._listing: tuple[int, bytes, str] = (-1, b"", "")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Build reports in one child process (spawned: the server has threads) and watch."""
        from automc.service.worker import die_with_parent

        self.pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
        self.refresh()
        self._thread = threading.Thread(target=self._loop, name="automc-views", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - a bug here must not stop the watcher; it is logged
                traceback.print_exc()

    def get(self, job_id: str) -> View | None:
        with self.lock:
            return self.views.get(job_id)

    def listing(self) -> tuple[bytes, str]:
        """``GET /api/experiments`` as JSON bytes and their ETag, serialised once per change
        of any view (not once per request: hundreds of clients poll it)."""
        with self.lock:
            generation, body, etag = self._listing
            if generation != self.generation:
                ordered = sorted(self.views.values(), key=lambda v: (v.summary.get("seq") or math.inf, v.summary["id"]))
                body = json_bytes([v.summary for v in ordered])
                etag = '"%s"' % hashlib.blake2b(body, digest_size=12).hexdigest()
                self._listing = (self.generation, body, etag)
            return body, etag

    def detail(self, view: View) -> bytes:
        """``GET /api/experiments/{id}`` as JSON bytes, serialised once per update of the view."""
        with self.lock:
            if view.detail is None:
                report = view.report
                extra = {"config": report["run"]["config"], "base_metrics": report["run"]["base_metrics"], "objectives": report["objectives"]} if report else {"config": None, "base_metrics": {}, "objectives": []}
                view.detail = json_bytes({**view.summary, **extra})
            return view.detail

    def refresh(self) -> None:
        """Rebuild the view of every folder whose files changed; forget removed folders."""
        root = self.queue.root
        present = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and ((p / JOB_FILE).is_file() or (p / "config.yaml").is_file())}
        with self.lock:
            for gone in set(self.views) - present:
                del self.views[gone]
                self.generation += 1
        for job_id in sorted(present):
            self.refresh_one(job_id)

    def refresh_one(self, job_id: str, force: bool = False) -> View | None:
        """Rebuild one folder's view if its files changed (None: not a run, e.g. a submission
        still being dry-run)."""
        folder = self.queue.folder(job_id)
        if not (folder / JOB_FILE).is_file() and not (folder / "config.yaml").is_file():
            return None
        stamp = (*_stamp(folder), repr(self.queue.unsaved.get(job_id)))  # an end not on disk yet counts
        with self.lock:
            view = self.views.get(job_id)
        if view is not None and view.stamp == stamp and not force and view.summary["state"] != "running (cli)":
            return view
        job = self.queue.get(job_id)
        report = self.pool.submit(build_view_report, str(folder)).result() if self.pool is not None else build_view_report(str(folder))
        summary = {"id": job_id, **summarize_report(report)}
        if job is not None:
            summary.update({"source": "service", "state": job.state, "seq": job.seq, "submitted": job.submitted, "started": job.started, "ended": job.ended, "message": job.message, "runs": job.runs})
        else:
            stopped = report is not None and report["run"]["counts"].get("complete", 0) + report["run"]["counts"].get("failed", 0) < (report["run"]["config"].get("budget", {}).get("candidates") or math.inf)
            summary.update({"source": "cli", "state": "running (cli)" if _cli_running(folder) else ("stopped" if stopped else "finished")})
        summary["name"] = report["run"]["name"] if report else job_id
        summary["updated"] = time.time()
        with self.lock:
            existing = self.views.get(job_id)
            before = existing.summary["state"] if existing is not None else None
            view = existing or View(summary)
            view.summary, view.report, view.stamp, view.detail = summary, report, stamp, None
            self.generation += 1
            for c in (report or {}).get("candidates", []):
                if c["state"] in ("complete", "failed") and c["number"] not in view.seen:
                    view.seen.add(c["number"])
                    view.add_event({"type": "candidate", "candidate": {k: c.get(k) for k in ("number", "state", "reward", "metrics", "params", "feasible", "on_front", "duplicate_of", "error")}})
            if before != summary["state"]:
                view.add_event({"type": "state", "state": summary["state"], "message": summary.get("message")})
            view.add_event({"type": "progress", "front": (report or {}).get("front", []), **{k: summary[k] for k in ("progress", "best", "front_size", "hypervolume")}})
            self.views[job_id] = view
        return view


def json_bytes(value: Any) -> bytes:
    """Compact JSON with non-finite floats as null (JSON has no inf/NaN; a reward may be -inf)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), separators=(",", ":"), default=float).encode()


def build_view_report(folder_name: str) -> dict[str, Any] | None:
    """A run folder's report data, or None before the search recorded anything (module level:
    it runs in the builder process)."""
    folder = Path(folder_name)
    if not (folder / "config.yaml").is_file() or not (folder / "study.db").is_file():
        return None
    from automc.errors import UserError
    from automc.results.report import build_report

    try:
        return build_report(folder)
    except UserError:
        return None  # nothing recorded yet, or a run whose store is not there (yet)
