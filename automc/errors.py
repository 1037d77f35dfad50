"""Errors that are the user's to fix.

A :class:`UserError` carries a one-line message that names what was wrong and how to fix it.
The CLI prints it without a traceback and exits with status 2; library callers can catch it.
"""

from __future__ import annotations

import sys


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


def notice(message: str) -> None:
    """Tell the user, on one stderr line, something automc did on their behalf (a damaged
    state file rebuilt, a stale lock taken over) — not an error."""
    print(f"automc: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
