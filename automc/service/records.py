"""A service job's record and files: ``service.json`` (the :class:`Job`), ``experiment.yaml``
and ``service.log`` in its run folder, and the one line that says why a job failed."""

from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from automc.atomic import atomic_write_text

JOB_FILE = "service.json"
EXPERIMENT_FILE = "experiment.yaml"
LOG_FILE = "service.log"
STATES = ("queued", "running", "finished", "failed", "stopped")
LOW_DISK_BYTES = 4 << 20  # a failed search with less free than this failed for want of disk


@dataclass
class Job:
    """One experiment's job record (``service.json``)."""

    id: str
    state: str = "queued"
    seq: int = 0
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    returncode: int | None = None
    message: str | None = None
    stop_requested: bool = False
    requeue: bool = False  # the budget was raised while it ran: run it again when it ends
    runs: int = 0  # processes started (a restart or a resume adds one)

    def save(self, folder: Path) -> None:
        atomic_write_text(folder / JOB_FILE, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Job | None:
        path = folder / JOB_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _tail(path: Path, lines: int = 40) -> list[str]:
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 16384))
        return handle.read().decode(errors="replace").splitlines()[-lines:]


def failure_message(log_file: Path, returncode: int) -> str:
    """One line on why the process ended: a full disk (its own words may not have reached
    the log then), the search's own one-line error (exit 2), else the exit code or signal and
    where the traceback is."""
    free = shutil.disk_usage(log_file.parent).free
    if free < LOW_DISK_BYTES:
        return f"the search stopped: the disk holding {log_file.parent.parent} is full ({free >> 10} KiB free); free some space, then resume it to continue from its store"
    tail = [ln for ln in _tail(log_file) if ln.strip()]
    if returncode == 2 and tail:
        return tail[-1].strip()
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else str(-returncode)
        why = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"the search process was killed by {name}{why}; resume it to continue from its store"
    last = tail[-1].strip() if tail else "no output"
    return f"the search process exited with code {returncode} ({last[:200]}); the traceback is in {log_file.name}"
