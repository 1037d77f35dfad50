"""File checksums, computed once per (path, size, mtime) in a process."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from automc.errors import UserError


def read_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read now (no cache: for integrity checks of files that may have
    been damaged in place)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=256)
def _digest(path: str, algorithm: str, size: int, mtime_ns: int) -> str:
    return read_digest(path, algorithm)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file; repeated calls on an unchanged file are free."""
    p = Path(path)
    st = p.stat()
    return _digest(str(p.resolve()), algorithm, st.st_size, st.st_mtime_ns)


def verify_file(path: str | Path, *, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise :class:`UserError` if the file's checksum differs from the known value."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise UserError(
                f"{path} is corrupt or not the expected file ({algorithm} {actual[:12]}…, "
                f"expected {expected[:12]}…): replace it with the original file, or pass "
                "--no-verify / verify=False if you modified it on purpose"
            )
