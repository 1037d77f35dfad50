"""The run directory: the one place that knows its layout and writes its files.

One search = one folder::

    RUN/
      config.yaml          the resolved experiment (written once validated; budget and
                           finetune may change)
      versions.json        package versions and the seed of the first start
      study.db             the Optuna store (unless ``storage:`` names another database)
      base_model.pt        the trained base model, when the experiment trains one
      agent_state.pt       the agent's state after its last ``tell`` (see Agent.resume)
      agent_settings.json  every setting the agent started with, defaults included: a
                           resumed run keeps them (automc.search.agent_settings)
      widths.json          the channel widths a ``widths:`` setting named, frozen at the
                           first start (automc.search.run_widths)
      *.pt.meta.json       checksum (and recipe) of each .pt: a damaged one is rebuilt
      measure_cache.jsonl  measurements of cacheable profiles, by model structure
      proxy/KEY.pt         an architecture candidate trained on the proxy task (KEY: hash
                           of the architecture, the proxy recipe and what it learns from)
      recovery/N-KEY/      a finalist's recovery (KEY: hash of policy + recipe): checkpoint.pt
                           while it trains, then model.pt and result.json (see automc.recover)
      report/              report.json, candidates.csv, report.html, PNGs
      .lock                held by the one process that writes (``automc search``)

Every file is written to a temporary name and renamed (:mod:`automc.atomic`), so a kill never
leaves half a file; state files carry a SHA-256 in a sidecar, written after them, so a file
damaged any other way (disk full, copied half, edited) is detected, not loaded. Readers
(``status``, ``report``, ``export``) never take the lock and never write.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import yaml

from automc.atomic import atomic_path, atomic_write_text
from automc.errors import UserError, notice
from automc.hashing import read_digest

# the files of a recovery folder (RunDir.recovery)
RECOVERY_RESULT, RECOVERY_MODEL, RECOVERY_CHECKPOINT = "result.json", "model.pt", "checkpoint.pt"
MUTABLE = ("budget", "finetune")  # config sections a resumed run may change


class DamagedFile(UserError):
    """A state file whose checksum does not match (or that cannot be read)."""


class RunDir:
    """Paths and writers of one run folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.versions_file = self.path / "versions.json"
        self.study_db = self.path / "study.db"
        self.base_model = self.path / "base_model.pt"
        self.agent_state = self.path / "agent_state.pt"
        self.agent_settings = self.path / "agent_settings.json"
        self.widths_file = self.path / "widths.json"
        self.measure_cache = self.path / "measure_cache.jsonl"
        self.report_dir = self.path / "report"
        self.recovery_dir = self.path / "recovery"
        self.proxy_dir = self.path / "proxy"
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

    def recovery(self, number: int, key: str) -> Path:
        """The folder of candidate ``number``'s recovery by the recipe hashed as ``key``."""
        return self.recovery_dir / f"{number}-{key[:12]}"

    def proxy_model(self, key: str) -> Path:
        """Where the proxy-trained weights of the architecture hashed as ``key`` are kept."""
        return self.proxy_dir / f"{key[:24]}.pt"

    def recoveries(self) -> list[dict[str, Any]]:
        """Every finished recovery of the run (each ``recovery/*/result.json``), by candidate
        number then time; an unreadable one is skipped with a notice."""
        if not self.recovery_dir.is_dir():
            return []
        out = []
        for folder in sorted(self.recovery_dir.iterdir()):
            f = folder / RECOVERY_RESULT
            if f.is_file():
                try:
                    out.append(json.loads(f.read_text()))
                except ValueError:
                    notice(f"{f} is damaged: recover that candidate again with 'automc finetune'")
        return sorted(out, key=lambda r: (r["number"], r.get("finished_at", 0)))

    def recovered_state(self, number: int) -> tuple[dict[str, Any], Any]:
        """The latest finished recovery of candidate ``number`` and its checked ``state_dict``
        (one line when there is none: how to make one)."""
        mine = [r for r in self.recoveries() if r["number"] == number]
        if not mine:
            raise UserError(f"candidate {number} has not been recovered: run 'automc finetune {self.path} --candidate {number}' first", field="candidate")
        result = mine[-1]
        return result, self.load_tensors(self.recovery(number, str(result["key"])) / RECOVERY_MODEL)

    # -- writing --------------------------------------------------------------------------------
    def check_config(self, resolved: Mapping[str, Any], *, normalize: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None) -> bool:
        """Refuse a folder that holds a run of a different config (that would mix two
        experiments in one record); only the budget and the finetune section (recoveries are
        kept by recipe) may change. True when a run is there. ``normalize`` resolves the
        stored config as ``resolved`` was (so a setting added to automc since, at its
        default, is no change).

        Called before anything is spent; the config itself is written by :meth:`write_config`
        only once the experiment passed its dry run, so a mistake fixed and rerun just works.
        """
        self._check_not_a_file()
        if not self.config_file.exists():
            return False
        previous = dict(normalize(self.read_config()) if normalize is not None else self.read_config())
        changed = [k for k in dict.fromkeys([*previous, *resolved]) if previous.get(k) != resolved.get(k) and k not in MUTABLE]
        if changed:
            diffs = "; ".join(f"{k}: {_short(previous.get(k))} -> {_short(resolved.get(k))}" for k in changed)
            raise UserError(
                f"{self.path} holds a search of a different config ({diffs}): "
                "to start a new search pass another --run-dir (or a new 'name'); to resume this one restore its config (only 'budget' and 'finetune' may change)",
                field=changed[0],
            )
        return True

    def write_config(self, resolved: Mapping[str, Any], versions: Mapping[str, Any]) -> None:
        """Write the validated config (and, on the first start, the versions)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.versions_file.exists():
            atomic_write_text(self.versions_file, json.dumps(dict(versions), indent=2) + "\n")
        text = yaml.safe_dump(dict(resolved), sort_keys=False)
        if not self.config_file.exists() or self.config_file.read_text() != text:
            atomic_write_text(self.config_file, text)

    def read_agent_settings(self) -> dict[str, Any] | None:
        """The agent settings the run started with (None before its first start, or when the
        file is damaged: then said, and the agent built from today's defaults)."""
        if not self.agent_settings.is_file():
            return None
        try:
            data = json.loads(self.agent_settings.read_text())
        except ValueError:
            data = None
        if not isinstance(data, dict):
            notice(f"{self.agent_settings} is damaged: the agent is built from automc's current defaults and the file written again")
            return None
        return data

    def write_agent_settings(self, settings: Mapping[str, Any]) -> None:
        """Record the agent's settings (first start; see :mod:`automc.search.agent_settings`)."""
        atomic_write_text(self.agent_settings, json.dumps(dict(settings), indent=2, sort_keys=True) + "\n")

    def prepare(self, resolved: Mapping[str, Any], versions: Mapping[str, Any]) -> None:
        """:meth:`check_config`, then :meth:`write_config`."""
        self.check_config(resolved)
        self.write_config(resolved, versions)

    def save_tensors(self, path: Path, obj: Any, meta: Mapping[str, Any] | None = None) -> None:
        """``torch.save`` to ``path`` (one of this folder's files), atomically, then its
        sidecar with the file's SHA-256 and ``meta`` (e.g. the recipe that made it)."""
        import torch

        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
            digest = read_digest(tmp)
        atomic_write_text(_sidecar(path), json.dumps({"sha256": digest, **dict(meta or {})}, sort_keys=True) + "\n")

    def check_tensors(self, path: Path, meta: Mapping[str, Any] | None = None) -> str | None:
        """Why ``path`` cannot be used (missing, damaged, made by another recipe), or None."""
        if not path.is_file():
            return "missing"
        try:
            recorded = json.loads(_sidecar(path).read_text())
        except (OSError, ValueError):
            return f"{_sidecar(path).name} is missing or damaged"
        if not isinstance(recorded, dict) or recorded.get("sha256") != read_digest(path):
            return "its checksum does not match (truncated or changed)"
        for key, value in dict(meta or {}).items():
            if recorded.get(key) != value:
                return f"it was made with another {key}"
        return None

    def load_tensors(self, path: Path) -> Any:
        """The checked contents of ``path`` (``weights_only=True``); :class:`DamagedFile` when
        its checksum does not match or it cannot be read."""
        import torch

        why = self.check_tensors(path)
        if why is not None:
            raise DamagedFile(f"{path} cannot be used: {why}")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch/pickle errors vary
            raise DamagedFile(f"{path} cannot be read: {type(exc).__name__}") from None

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


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
