"""Vetting a submitted experiment, in the order that keeps user code out of the server.

1. the body parses (JSON, or YAML with ``safe_load``: no object tags);
2. every ``module:function`` reference is on the operator's allow-list — checked on the raw
   document, before the schema is read or anything imported;
3. the name is a plain folder name and every file path stays under the root or data folder;
4. the schema (the CLI's one-line messages, answered 422);
5. the dry run (``automc search --check``) in a child process, where the allow-listed
   plugins are imported — never in the server.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from automc.service.guard import Refused, check_code_references, check_id, check_paths
from automc.service.records import EXPERIMENT_FILE

log = logging.getLogger("automc.service")


def parse_body(raw: bytes, content_type: str) -> Any:
    """A submitted experiment: JSON, or YAML (``yaml.safe_load``: no object tags)."""
    try:
        return json.loads(raw) if "json" in content_type else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise Refused(422, f"the body is not valid {'JSON' if 'json' in content_type else 'YAML'} ({str(exc).splitlines()[0]})") from None


def vet_experiment(settings: Any, document: Any) -> tuple[str, dict[str, Any]]:
    """Everything but the dry run, in the order that keeps user code out; (id, config)."""
    from automc.config import parse_config

    if not isinstance(document, dict):
        raise Refused(422, "the experiment must be a mapping (the same YAML as 'automc search' reads)")
    check_code_references(document, settings.allow_modules)
    name = check_id(str(document.get("name", "")))
    check_paths(document, settings.root / name, settings.roots())
    parse_config(document, "experiment")  # UserError → 422, the CLI's one-line message
    return name, document


def run_automc(settings: Any, folder: Path, args: list[str], *, what: str, failure_status: int, timeout: float | None = None) -> str:
    """``automc ARGS…`` in a child process in ``folder`` (niced, dies with the server: see
    :mod:`worker`); its stdout. A bad-input exit (2) becomes a 422 carrying the command's one
    line; any other failure is logged with its traceback and answered ``failure_status``
    without it."""
    cmd = [sys.executable, "-m", "automc.service.worker", str(settings.nice), *args]
    try:
        proc = subprocess.run(cmd, cwd=folder, env=settings.env or None, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Refused(422, f"the {what} did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        if proc.returncode == 2 and lines:
            raise Refused(422, lines[-1].removeprefix(f"automc {args[0]}: error: "))
        log.error("%s in %s failed with exit %s:\n%s", what, folder.name, proc.returncode, proc.stderr)
        raise Refused(failure_status, f"the {what} failed (exit {proc.returncode}): the server's log has the traceback")
    return proc.stdout


def dry_run(settings: Any, folder: Path) -> None:
    """``automc search --check`` on the staged experiment in a child process (imports the
    allow-listed plugins there, never in the server); its one-line error becomes a 422."""
    run_automc(settings, folder, ["search", EXPERIMENT_FILE, "--check", "--run-dir", ".", "--json"], what="dry run", failure_status=422, timeout=settings.check_timeout_s)


def archive(settings: Any, job_id: str) -> Path:
    """Move a run folder to ``ROOT/_archive/<id>-<time>`` (nothing is deleted)."""
    target = settings.root / "_archive" / f"{job_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(exist_ok=True)
    shutil.move(str(settings.root / job_id), target)
    return target
