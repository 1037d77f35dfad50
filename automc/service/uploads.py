"""Weights uploads: ``PUT /api/weights/{name}`` and ``GET /api/weights``.

An experiment submitted to a server can only name files under the server's root or data
folder, so a team's own trained model reaches the server as an upload. The body streams to a
temporary file in ``ROOT/_weights`` (capped at ``--max-upload``), is checked in a child
process by ``automc weights`` — tensors only, read with ``weights_only=True`` or
safetensors, never unpickled; in the child, so a hostile file costs the server nothing —
and only then linked into place (atomically, never over an existing name). A name is
written once: the same bytes again answer 200, other bytes 409 (a running search must not
find its weights changed under it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response

from automc.hashing import file_digest
from automc.service.guard import Refused
from automc.service.submit import run_automc

WEIGHTS_DIR = "_weights"  # '_': not an experiment folder, so the views skip it
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.(pt|pth|safetensors)$")


def weight_routes(settings: Any) -> APIRouter:
    r = APIRouter()
    folder = settings.root / WEIGHTS_DIR

    @r.put("/weights/{name}", status_code=201)
    async def upload(name: str, request: Request, response: Response) -> dict[str, Any]:
        """Store a checkpoint; the answer's ``path`` is what an experiment's ``model.weights``
        names (relative to its run folder)."""
        if not _NAME.match(name) or ".." in name:
            raise Refused(422, f"weights name {name!r} must be a plain file name ending in .pt, .pth or .safetensors (letters, digits, '_', '.', '-')")
        folder.mkdir(exist_ok=True)
        staged = folder / f".upload-{uuid.uuid4().hex}{Path(name).suffix}"
        try:
            with staged.open("wb") as f:
                async for chunk in request.stream():
                    f.write(chunk)
                f.flush()
                await asyncio.to_thread(os.fsync, f.fileno())
            if staged.stat().st_size == 0:
                raise Refused(422, "the body is empty: send the checkpoint's bytes (curl --upload-file FILE)")
            info = json.loads(await asyncio.to_thread(run_automc, settings, folder, ["weights", staged.name, "--json"], what="weights check", failure_status=422))
            target = folder / name
            try:
                os.link(staged, target)  # atomic and never over an existing file (two uploads racing)
            except FileExistsError:
                held = file_digest(target)
                if held != info["sha256"]:
                    raise Refused(409, f"weights {name!r} exist with other contents (sha256 {held[:16]}…): upload under a new name") from None
                response.status_code = 200
        finally:
            staged.unlink(missing_ok=True)
        return {**_describe(target, info), "created": response.status_code != 200}

    @r.get("/weights")
    def listing() -> list[dict[str, Any]]:
        """Uploaded weights: name, size and the path an experiment names them by."""
        if not folder.is_dir():
            return []
        return [{"name": p.name, "bytes": p.stat().st_size, "path": f"../{WEIGHTS_DIR}/{p.name}"} for p in sorted(folder.iterdir()) if _NAME.match(p.name)]

    return r


def _describe(target: Path, info: dict[str, Any]) -> dict[str, Any]:
    return {"name": target.name, "path": f"../{WEIGHTS_DIR}/{target.name}", **{k: info[k] for k in ("bytes", "sha256", "tensors", "parameters", "dtypes")}}

