"""The service's job queue: one search process per experiment, state kept in the run folders.

An experiment submitted to ``automc serve`` is a run folder ``ROOT/<name>`` like any
``automc search`` run, plus two files the service owns:

- ``experiment.yaml``: the submitted experiment (a raised budget rewrites it);
- ``service.json``: the job — ``state`` (queued / running / finished / failed / stopped),
  its place in the queue (``seq``), times, the process id, its exit code and a one-line
  ``message`` when it failed. Written atomically.

Each running experiment is its own ``automc search`` process (``--verbose``, output in
``service.log``), started at a lower CPU priority than the server, so a crash or an OOM of
one never takes down the server or another experiment. At most ``max_concurrent`` run at
once; the others wait in submission order. The processes die with the server (Linux
``PR_SET_PDEATHSIG``) and a search is safe to kill anywhere, so a restarted server finds
every job the way the folders say: ``running`` ones are queued again at their old place and
resume where their stores stand, queued ones stay queued, finished ones stay finished.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from automc.atomic import atomic_write_text
from automc.service.records import EXPERIMENT_FILE, LOG_FILE, Job, failure_message

log = logging.getLogger("automc.service")

STOP_GRACE_S = 10.0


class JobQueue:
    """Starts, watches and stops the search processes of the experiments under ``root``."""

    def __init__(self, root: Path, *, max_concurrent: int = 1, nice: int = 10, search_args: tuple[str, ...] = (), env: Mapping[str, str] | None = None, poll_s: float = 0.5) -> None:
        self.root = root
        self.max_concurrent = max_concurrent
        self.nice = nice
        self.search_args = search_args
        self.env = dict(env or os.environ)
        self.poll_s = poll_s
        self.lock = threading.RLock()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.unsaved: dict[str, Job] = {}  # ended jobs whose record a full disk refused, retried each tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the folders ----------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        return self.root / job_id

    def jobs(self) -> list[Job]:
        """Every service job under the root, in queue order."""
        out = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
            job = self.unsaved.get(folder.name) or Job.load(folder)
            if job is not None:
                out.append(job)
        return sorted(out, key=lambda j: j.seq)

    def get(self, job_id: str) -> Job | None:
        """The job as the folder says — or as it ended, where a full disk kept that off it."""
        return self.unsaved.get(job_id) or Job.load(self.folder(job_id))

    def _save(self, job: Job) -> None:
        """Write a job's record; once written, the folder is the truth again."""
        job.save(self.folder(job.id))
        self.unsaved.pop(job.id, None)

    def _next_seq(self) -> int:
        return max((j.seq for j in self.jobs()), default=0) + 1

    def submit(self, job_id: str, experiment: Mapping[str, Any]) -> Job:
        """Queue a new experiment in ``ROOT/<job_id>`` (made, or staged there by the caller)."""
        with self.lock:
            folder = self.folder(job_id)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / EXPERIMENT_FILE, yaml.safe_dump(dict(experiment), sort_keys=False))
            job = Job(job_id, seq=self._next_seq())
            self._save(job)
            return job

    # -- state changes asked for over HTTP --------------------------------------------------------
    def stop(self, job_id: str) -> Job:
        """A queued job leaves the queue; a running one is signalled (it stops at once: every
        finished candidate is in its store, the one in flight is evaluated again on resume)."""
        with self.lock:
            job = self._require(job_id)
            if job.state == "queued":
                job.state, job.ended = "stopped", time.time()
            elif job.state == "running":
                job.stop_requested = True
            self._save(job)  # before the signal: a write that fails changes nothing
            proc = self.procs.get(job_id)
            if job.stop_requested and proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            return job

    def resume(self, job_id: str) -> Job:
        """A stopped or failed job joins the end of the queue."""
        with self.lock:
            job = self._require(job_id)
            if job.state in ("stopped", "failed"):
                job.state, job.seq, job.message, job.stop_requested = "queued", self._next_seq(), None, False
                self._save(job)
            return job

    def raise_budget(self, job_id: str, budget: Mapping[str, Any]) -> Job:
        """Rewrite the experiment's budget; a finished or stopped job is queued to spend it,
        a running one runs again when its process ends."""
        with self.lock:
            job = self._require(job_id)
            path = self.folder(job_id) / EXPERIMENT_FILE
            experiment = yaml.safe_load(path.read_text())
            experiment["budget"] = {**experiment.get("budget", {}), **dict(budget)}
            atomic_write_text(path, yaml.safe_dump(experiment, sort_keys=False))
            if job.state in ("finished", "stopped", "failed"):
                job.state, job.seq, job.message, job.stop_requested = "queued", self._next_seq(), None, False
            elif job.state == "running":
                job.requeue = True
            self._save(job)
            return job

    def _require(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    # -- the scheduler ----------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt the folders (a job a dead server left running is queued at its old place) and
        start scheduling."""
        with self.lock:
            for job in self.jobs():
                if job.state == "running" and job.id not in self.procs:
                    _kill_leftover(job)
                    job.state, job.pid, job.stop_requested = ("stopped" if job.stop_requested else "queued"), None, False
                    self._save(job)
        self._thread = threading.Thread(target=self._loop, name="automc-jobs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop scheduling and end the running processes; their jobs stay ``running`` on disk,
        so the next start queues them again at their place."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self.lock:
            for proc in self.procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            for proc in self.procs.values():
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def _loop(self) -> None:
        said = ""
        while not self._stop.is_set():
            try:
                self.tick()
                said = ""
            except OSError as exc:  # a full disk, say: keep scheduling; the next tick retries
                if str(exc) != said:
                    log.warning("the job queue cannot write its state (%s); retrying every %.1f s", exc, self.poll_s)
                    said = str(exc)
            except Exception:  # noqa: BLE001 - a bug must not silently stop every job; it is logged
                log.exception("the job queue's tick failed; retrying")
            self._stop.wait(self.poll_s)

    def tick(self) -> None:
        """Reap ended processes, then start queued jobs while slots are free. A job is marked
        running on disk before its process starts (a write that fails starts nothing); an
        end a full disk keeps off the folder is held in ``unsaved`` — shown by :meth:`get` —
        and written once the disk has room."""
        with self.lock:
            refused: list[OSError] = []
            for job in list(self.unsaved.values()):
                try:
                    self._save(job)
                except OSError as exc:
                    refused.append(exc)
            for job_id, proc in list(self.procs.items()):
                if proc.poll() is not None:
                    del self.procs[job_id]
                    try:
                        self._ended(job_id, proc.returncode)
                    except OSError as exc:
                        refused.append(exc)
            if refused:  # the disk is full: start nothing more until it has room
                raise refused[0]
            jobs = self.jobs()
            for job in jobs:  # running on disk with no process: its start failed half-way
                if job.state == "running" and job.id not in self.procs:
                    job.state, job.pid, job.runs = "queued", None, max(0, job.runs - 1)
                    self._save(job)
            for job in jobs:
                if len(self.procs) >= self.max_concurrent:
                    break
                if job.state == "queued":
                    self._launch(job)

    def _launch(self, job: Job) -> None:
        # only ever called from the scheduler thread: the kernel's parent-death signal follows
        # the thread that forked the child, and this one lives as long as the server
        folder = self.folder(job.id)
        cmd = [sys.executable, "-m", "automc.service.worker", str(self.nice), "search", EXPERIMENT_FILE, "--run-dir", ".", "--verbose", *self.search_args]
        job.state, job.pid, job.started, job.ended, job.returncode, job.runs = "running", None, time.time(), None, None, job.runs + 1
        self._save(job)  # first: if it cannot be written, nothing was started
        with open(folder / LOG_FILE, "ab") as out:
            out.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} automc search (run {job.runs})\n".encode())
            out.flush()
            proc = subprocess.Popen(cmd, cwd=folder, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[job.id] = proc
        job.pid = proc.pid
        try:
            self._save(job)
        except OSError:
            log.warning("job %s runs as pid %s but its pid could not be recorded", job.id, proc.pid)

    def _ended(self, job_id: str, returncode: int) -> None:
        job = self.get(job_id)
        if job is None:  # archived while it ran
            return
        job.pid, job.returncode, job.ended = None, returncode, time.time()
        if job.stop_requested:
            job.state, job.stop_requested = "stopped", False
        elif returncode == 0:
            job.state = "queued" if job.requeue else "finished"
            if job.requeue:
                job.seq = self._next_seq()
        else:
            job.state, job.message = "failed", failure_message(self.folder(job_id) / LOG_FILE, returncode)
        job.requeue = False
        try:
            self._save(job)
        except OSError:
            self.unsaved[job_id] = job
            raise


def _kill_leftover(job: Job) -> None:
    """End a search process a dead server left behind (none on Linux: they die with it)."""
    if job.pid is None:
        return
    try:
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes()
    except OSError:
        return
    try:
        same_folder = Path(f"/proc/{job.pid}/cwd").resolve().name == job.id
    except OSError:
        same_folder = False
    if b"-m\0automc\0" in cmdline and same_folder:
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(100):
            if not Path(f"/proc/{job.pid}").exists():
                return
            time.sleep(0.05)
