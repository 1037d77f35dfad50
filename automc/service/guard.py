"""What keeps strangers and their code out of ``automc serve``.

- **Token**: every endpoint but the health check wants ``Authorization: Bearer <token>`` (or
  the dashboard's session cookie holding it). The token is the operator's (``--token`` or
  ``AUTOMC_SERVICE_TOKEN``) or one generated on first start into ``ROOT/.automc-token``,
  readable by its owner only (mode 0600).
- **No user code over HTTP**: a ``module:function`` reference anywhere in a submitted
  experiment (a reward, model, agent, space, profile, dataset) is refused *before anything is
  imported* unless its module is in or under a module the operator allow-listed
  (``--allow-module mypkg.rewards``). Installed plugins (entry points) are the operator's and
  are referred to by plain names.
- **Paths stay in their roots**: every string of a submitted experiment that names a file
  (contains a path separator, starts with ``.`` or ``~``, or is an ``sqlite:///`` URL) must,
  resolved with symlinks followed, lie under the service root or the operator's data folder.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

TOKEN_FILE = ".automc-token"
TOKEN_ENV = "AUTOMC_SERVICE_TOKEN"
# module.path:attr.path, as automc.registry.load_object reads it
_REFERENCE = re.compile(r"^\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*:\s*[A-Za-z_][\w.]*\s*$")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


class Refused(Exception):
    """A request the service will not run; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def service_token(root: Path, given: str | None = None) -> tuple[str, str]:
    """The bearer token and where it came from: ``given`` (``--token``), the environment, or
    ``ROOT/.automc-token`` (generated on first start, mode 0600)."""
    if given:
        return given, "--token"
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV], TOKEN_ENV
    path = root / TOKEN_FILE
    if path.is_file():
        return path.read_text().strip(), str(path)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, str(path)


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison (no timing oracle on the token)."""
    return presented is not None and secrets.compare_digest(expected.encode(), presented.encode())


def check_id(identifier: str) -> str:
    """An experiment id is a folder name under the root: no separators, no ``..``."""
    if not _ID.match(identifier) or identifier in (".", ".."):
        raise Refused(422, f"experiment name {identifier!r} must be 1-100 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'")
    return identifier


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """(dotted location, string) of every string in a parsed YAML/JSON document."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def check_code_references(document: Any, allowed: Sequence[str]) -> None:
    """Refuse (403) a ``module:function`` reference whose module is not allow-listed."""
    for where, text in _strings(document, ""):
        if "://" in text:
            continue
        m = _REFERENCE.match(text)
        if m is None:
            continue
        module = m.group(1)
        if not any(module == a or module.startswith(a + ".") for a in allowed):
            hint = f"allow-listed: {', '.join(allowed)}" if allowed else "none is allow-listed"
            raise Refused(403, f"{where}: {text.strip()!r} is user code; the server runs user code only from modules its operator allow-listed (automc serve --allow-module {module}; {hint})")


def _is_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith((".", "~"))


def check_paths(document: Any, base: Path, roots: Sequence[Path]) -> None:
    """Refuse (422) a file path outside ``roots``; relative paths resolve from ``base``."""
    resolved_roots = [r.resolve() for r in roots]
    for where, text in _strings(document, ""):
        if text.startswith("sqlite:///"):
            path_text = text[len("sqlite:///") :]
        elif "://" in text or _REFERENCE.match(text):
            continue
        elif _is_path(text):
            path_text = text
        else:
            continue
        path = (base / os.path.expanduser(path_text)).resolve()
        if not any(path == r or r in path.parents for r in resolved_roots):
            raise Refused(422, f"{where}: {text!r} is outside the folders this server reads ({', '.join(map(str, resolved_roots))}): name a file under them")
