"""Process-wide settings resolved from explicit arguments and environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from automc.errors import UserError

if TYPE_CHECKING:
    import torch

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


def resolve_device(name: str, field: str = "device") -> torch.device:
    """Where tensors go for a ``device: auto | cpu | cuda`` setting: ``auto`` is CUDA when torch
    sees a GPU, else the CPU; ``cuda`` without a GPU is a user error naming ``field``."""
    import torch  # here, not at the top: the CLI's startup stays light

    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"{field}: unknown device {name!r}; use auto, cpu or cuda", field=field)
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{field}: cuda is not available here (no GPU visible to torch); use auto or cpu", field=field)
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")
