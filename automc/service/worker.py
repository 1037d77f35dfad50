"""The process a service job runs: ``python -m automc.service.worker NICE ARGS…``.

It lowers its own CPU priority by ``NICE`` (the server stays responsive while searches use
every core) and, on Linux, asks the kernel to kill it when the server dies
(``PR_SET_PDEATHSIG``; both survive ``exec``), then becomes ``python -m automc ARGS``. A
search is safe to kill anywhere: a restarted server resumes it rather than finding a second
writer on the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux only; elsewhere a restarted server kills what a dead one left (``_kill_leftover``)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # the server died before the request took effect
        os._exit(1)


def main(argv: list[str]) -> None:
    die_with_parent()
    os.nice(int(argv[0]))
    os.execv(sys.executable, [sys.executable, "-m", "automc", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
