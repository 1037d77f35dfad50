"""The ``automc`` command line.

Every sub-command lives in its own module exposing ``register(subparsers)``; ``main`` turns
user mistakes (:class:`~automc.errors.UserError`, bad arguments) into one line on stderr and
exit status 2, with no traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from automc import __version__
from automc.errors import UserError

EXIT_USAGE = 2
# the machine's state, not a bug: one line with the fix (files are written atomically, so
# nothing already recorded was damaged; rerun the same command once fixed)
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free some space, or pass another --run-dir / --out, then rerun to continue",
    errno.EDQUOT: "free some quota, or pass another --run-dir / --out, then rerun to continue",
    errno.EROFS: "the file system is read-only: pass a writable --run-dir / --out",
    errno.EACCES: "no permission: pass a writable --run-dir / --out",
    errno.EPERM: "not permitted: pass a writable --run-dir / --out",
}


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line naming the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    from automc.cli import (
        apply,
        evaluate,
        finetune,
        info,
        profile,
        remote,
        report,
        search,
        serve,
        train,
        weights,
    )

    parser = Parser(
        prog="automc",
        description="AutoML model compression: search per-layer pruning ratios, sparsity and bit-widths "
        "against measured or modelled device budgets; resumable, pluggable; ends in a Pareto report.",
    )
    parser.add_argument("--version", action="version", version=f"automc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in (search, finetune, report, evaluate, train, apply, profile, info, weights, serve, remote):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``automc`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if os.environ.get("AUTOMC_TRACEBACK"):  # for debugging the user's own code behind the line
            traceback.print_exception(exc)
        print(f"automc {args.command}: error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"automc {args.command}: error: {exc.strerror}:{where} ({_ENVIRONMENT_ERRNOS[exc.errno]})", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"automc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
