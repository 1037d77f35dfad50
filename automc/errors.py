"""Errors that are the user's to fix.

A :class:`UserError` carries a one-line message that names what was wrong and how to fix it.
The CLI prints it without a traceback and exits with status 2; library callers can catch it.
"""

from __future__ import annotations

import sys
from pathlib import Path


class UserError(Exception):
    """A mistake in the user's input (config, file, name), explained in one line.

    ``field`` names the offending setting when there is one, so callers (CLI, config
    validation) can point at it.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        # Keep the message on one line: it is printed as-is by the CLI.
        message = " ".join(str(message).split())
        super().__init__(message)
        self.field = field

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_number(name: str, value: object, low: float | None = None, high: float | None = None, *, integer: bool = False, low_open: bool = False, field: str | None = None) -> None:
    """One line naming the setting unless ``value`` is a finite number (an integer with
    ``integer``) in [low, high] (``(low, high]`` with ``low_open``); plugins check their
    settings with it so ``lbound: "low"`` is a message, not a traceback."""
    import math

    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float)) and math.isfinite(value)  # type: ignore[arg-type]
    ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)  # type: ignore[operator]
    if not ok:
        bounds = ""
        if low is not None or high is not None:
            bounds = f" in {'(' if low_open else '['}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise UserError(f"{name} must be {'an integer' if integer else 'a number'}{bounds}, got {value!r}", field=field or name)


def user_code_error(what: str, exc: BaseException, *, field: str | None = None) -> UserError:
    """``exc``, raised by code the user named (a model factory, a reward, a module imported
    for them), as one line: what failed, the exception and where it was raised. The original
    stays chained (``AUTOMC_TRACEBACK=1`` prints it)."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    err = UserError(f"{what}: {type(exc).__name__}{': ' + text if text else ''}{where}", field=field)
    err.__cause__ = exc
    return err


def notice(message: str) -> None:
    """Tell the user, on one stderr line, something automc did on their behalf (a damaged
    state file rebuilt, a stale lock taken over) — not an error."""
    print(f"automc: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
