"""Atomic file writes: write beside the destination, then rename over it.

A reader (or a rerun after ``kill -9``) sees either the old file or the complete new one,
never a truncated file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in ``dest``'s folder; on success it replaces ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging folder beside ``folder``; on success every file written there is
    renamed into ``folder`` (pages last: they link the others). A failure while writing
    (disk full) leaves ``folder`` as it was — the previous set of files, whole."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.staging-"))
    try:
        yield staging
        for path in sorted(staging.iterdir(), key=lambda p: (p.suffix == ".html", p.name)):
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
