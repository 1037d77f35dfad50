"""Read a run's store without writing to it: ``status``, ``report`` and ``export``.

Opening an SQLite study through Optuna may write (schema checks, a journal), which fails on a
read-only (archived) run and would race with a running search. Readers therefore take a
consistent snapshot with SQLite's online backup API from a read-only connection, and open
Optuna on that copy in a temporary folder. Other storages (PostgreSQL) are opened with
``load_study``, which creates nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import weakref
from pathlib import Path
from urllib.parse import quote

from automc.errors import UserError
from automc.search.store import Store

_SQLITE = "sqlite:///"


def open_store(url: str, study_name: str) -> Store:
    """The run's store for reading; a snapshot when it is an SQLite file."""
    if not url.startswith(_SQLITE):
        return Store(url, study_name, readonly=True)
    path = Path(url[len(_SQLITE) :])
    if not path.is_file():
        raise UserError(f"{path} does not exist: the search has not recorded anything yet (or the run folder is incomplete)")
    tmp = tempfile.TemporaryDirectory(prefix="automc-snapshot-")
    copy = Path(tmp.name) / "study.db"
    _backup(path, copy)
    store = Store(f"{_SQLITE}{copy}", study_name, readonly=True)
    weakref.finalize(store, tmp.cleanup)
    return store


def _backup(source: Path, target: Path) -> None:
    """Copy ``source`` consistently (SQLite backup API) without writing next to it: read-only
    mode, and, where even that cannot open it (a read-only folder holding a journal), as an
    immutable file — after copying it with its write-ahead log, when a stopped search left
    one (an immutable open would not read the log)."""
    last: Exception | None = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        try:
            wal = Path(f"{source}-wal")
            if "immutable" in flags and wal.is_file() and wal.stat().st_size:
                # nothing writes in a folder read-only connections cannot open: a plain copy is whole
                staged = target.with_name("staged.db")
                shutil.copyfile(source, staged)
                shutil.copyfile(wal, f"{staged}-wal")
                source, flags = staged, "mode=rw"
            src = sqlite3.connect(f"file:{quote(str(source.resolve()))}?{flags}", uri=True)
            try:
                dst = sqlite3.connect(target)
                try:
                    src.backup(dst)
                finally:
                    dst.close()
            finally:
                src.close()
            return
        except sqlite3.DatabaseError as exc:
            last = exc
    raise UserError(f"cannot read {source}: {last} (is it an automc study.db?)")
