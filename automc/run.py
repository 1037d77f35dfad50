"""The run directory: the one place that knows its layout and writes its files.

One search = one folder::

    RUN/
      config.yaml          the resolved experiment (written once validated; budget may change)
      versions.json        package versions and the seed of the first start
      study.db             the Optuna store (unless ``storage:`` names another database)
      base_model.pt        the trained base model, when the experiment trains one
      agent_state.pt       what replaying the history cannot rebuild (RL networks)
      measure_cache.jsonl  measurements of cacheable profiles, by model structure
      report/              report.json, candidates.csv, report.html, PNGs
      .lock                held by the one process that writes (``automc search``)

Every file is written to a temporary name and renamed (:mod:`automc.atomic`), so a kill never
leaves half a file. Readers (``status``, ``report``, ``export``) never take the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from automc.atomic import atomic_path, atomic_write_text
from automc.errors import UserError


class RunDir:
    """Paths and writers of one run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.versions_file = self.path / "versions.json"
        self.study_db = self.path / "study.db"
        self.base_model = self.path / "base_model.pt"
        self.agent_state = self.path / "agent_state.pt"
        self.measure_cache = self.path / "measure_cache.jsonl"
        self.report_dir = self.path / "report"
        self.lock_file = self.path / ".lock"

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------
    def storage_url(self, storage: str | None) -> str:
        """The Optuna storage of the run: ``storage`` when given, else SQLite in the folder."""
        return storage or f"sqlite:///{self.study_db.resolve()}"

    def read_config(self) -> dict[str, Any]:
        """The resolved config a search wrote (one line if this is not a run folder)."""
        if not self.config_file.is_file():
            raise UserError(f"{self.path} is not a run directory (no config.yaml): pass the --run-dir of an 'automc search'")
        data = yaml.safe_load(self.config_file.read_text())
        if not isinstance(data, dict):
            raise UserError(f"{self.config_file} is not a mapping: the run folder is damaged; start a new --run-dir")
        return data

    def read_versions(self) -> dict[str, Any]:
        return json.loads(self.versions_file.read_text()) if self.versions_file.is_file() else {}

    # -- writing --------------------------------------------------------------------------------
    def prepare(self, resolved: Mapping[str, Any], versions: Mapping[str, Any]) -> None:
        """Create the folder with ``resolved`` (the validated config) and ``versions``; refuse
        a folder that holds a run of a different config (that would mix two experiments in
        one record). Only the budget may change between starts."""
        self._check_not_a_file()
        self.path.mkdir(parents=True, exist_ok=True)
        resolved = dict(resolved)
        if self.config_file.exists():
            previous = self.read_config()
            changed = sorted(k for k in set(previous) | set(resolved) if previous.get(k) != resolved.get(k) and k != "budget")
            if changed:
                raise UserError(
                    f"{self.path} holds a run of a different config (changed: {', '.join(changed)}): "
                    "use a new --run-dir, or restore the original config to resume (only the budget may change)"
                )
            if previous.get("budget") != resolved.get("budget"):  # extending (or shrinking) a run is fine
                atomic_write_text(self.config_file, yaml.safe_dump(resolved, sort_keys=False))
            return
        atomic_write_text(self.versions_file, json.dumps(dict(versions), indent=2) + "\n")
        atomic_write_text(self.config_file, yaml.safe_dump(resolved, sort_keys=False))

    def save_tensors(self, path: Path, obj: Any) -> None:
        """``torch.save`` to ``path`` (one of this folder's files), atomically."""
        import torch

        with atomic_path(path) as tmp:
            torch.save(obj, tmp)

    def _check_not_a_file(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"run directory {self.path} is a file: pass another --run-dir", field="run_dir")

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Hold the folder's writer lock (an OS lock, released when the process ends however
        it ends); a second writer gets one line naming the holder."""
        self._check_not_a_file()
        self.path.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = open(self.lock_file, "a+")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise UserError(f"run directory {self.path} is in use by {holder}: wait for it to finish, or pass another --run-dir", field="run_dir") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
            handle.flush()
            yield
        finally:
            handle.close()
