"""Process-wide settings resolved from explicit arguments and environment variables."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "AUTOMC_DATA_DIR"


def default_data_dir() -> Path:
    """Where data lives when neither a config/CLI value nor ``AUTOMC_DATA_DIR`` says."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "automc" / "data"


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: explicit value, else ``$AUTOMC_DATA_DIR``, else the default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_dir()
