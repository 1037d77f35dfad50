"""A Python client for ``automc serve``.

::

    from automc.client import Client

    c = Client("http://127.0.0.1:8000")           # token: $AUTOMC_SERVICE_TOKEN, or token=
    job = c.submit("experiments/quickstart.yaml")  # a path, YAML text or a mapping
    for event in c.events(job["id"]):              # live: candidate / progress / state
        print(event["event"], event["data"])
    print(c.front(job["id"])["front"])
    card = c.export(job["id"], candidate=3, int8=True)
    c.download(job["id"], card["export"], "model.onnx", "model.onnx")

Every method raises :class:`ServiceError` with the server's one-line reason when it refuses.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

TOKEN_ENV = "AUTOMC_SERVICE_TOKEN"
ACTIVE = ("queued", "running", "running (cli)")


class ServiceError(Exception):
    """The server refused a request: ``status`` is the HTTP status, ``detail`` its reason."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


class Client:
    """Calls the API of an ``automc serve`` at ``url`` with its bearer ``token``."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0) -> None:
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        """The JSON answer (or the bytes, when ``raw`` or not JSON); a refusal raises."""
        r = self.http.request(method, path, **kwargs)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ServiceError(r.status_code, detail if isinstance(detail, str) else json.dumps(detail))
        return r.json() if not raw and r.headers.get("content-type", "").startswith("application/json") else r.content

    # -- weights --------------------------------------------------------------------------------
    def upload_weights(self, path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
        """Upload a checkpoint (``.pt``/``.pth`` state dict or ``.safetensors``), streamed;
        the answer's ``path`` is what an experiment's ``model.weights`` names."""
        p = Path(path)

        def chunks() -> Iterator[bytes]:
            with p.open("rb") as f:
                yield from iter(lambda: f.read(1 << 20), b"")

        return self._call("PUT", f"/api/weights/{name or p.name}", content=chunks(), headers={"content-type": "application/octet-stream", "content-length": str(p.stat().st_size)})  # type: ignore[no-any-return]

    def weights(self) -> list[dict[str, Any]]:
        """The weights uploaded to this server."""
        return self._call("GET", "/api/weights")  # type: ignore[no-any-return]

    # -- experiments ----------------------------------------------------------------------------
    def submit(self, experiment: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
        """Submit an experiment: a YAML file's path, YAML text, or a mapping."""
        if isinstance(experiment, Mapping):
            return self._call("POST", "/api/experiments", json=dict(experiment))  # type: ignore[no-any-return]
        text = str(experiment)
        if "\n" not in text and Path(text).is_file():
            text = Path(text).read_text()
        return self._call("POST", "/api/experiments", content=text.encode(), headers={"content-type": "application/yaml"})  # type: ignore[no-any-return]

    def list(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/experiments")  # type: ignore[no-any-return]

    def get(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/experiments/{job_id}")  # type: ignore[no-any-return]

    def candidates(self, job_id: str, **filters: Any) -> list[dict[str, Any]]:
        """Every candidate matching ``filters`` (``state``, ``on_front``, ``feasible``, ``sort``),
        fetched page by page."""
        out: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/api/experiments/{job_id}/candidates", params={**filters, "offset": len(out), "limit": 500})
            out.extend(page["items"])
            if len(out) >= page["total"] or not page["items"]:
                return out

    def front(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/experiments/{job_id}/front")  # type: ignore[no-any-return]

    def report(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/experiments/{job_id}/report")  # type: ignore[no-any-return]

    def report_html(self, job_id: str) -> bytes:
        """The offline HTML report page."""
        return self._call("GET", f"/api/experiments/{job_id}/report", raw=True, params={"format": "html"})  # type: ignore[no-any-return]

    def stop(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/experiments/{job_id}/stop")  # type: ignore[no-any-return]

    def resume(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/api/experiments/{job_id}/resume")  # type: ignore[no-any-return]

    def raise_budget(self, job_id: str, *, candidates: int | None = None, minutes: float | None = None) -> dict[str, Any]:
        """New totals (not increments); a finished or stopped experiment is queued again."""
        body = {k: v for k, v in (("candidates", candidates), ("minutes", minutes)) if v is not None}
        return self._call("POST", f"/api/experiments/{job_id}/budget", json=body)  # type: ignore[no-any-return]

    def archive(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/experiments/{job_id}", params={"confirm": job_id})  # type: ignore[no-any-return]

    def export(self, job_id: str, candidate: int, *, int8: bool = False, int8_scheme: str | None = None, recovered: bool = False) -> dict[str, Any]:
        body = {"candidate": candidate, "int8": int8, "int8_scheme": int8_scheme, "recovered": recovered}
        return self._call("POST", f"/api/experiments/{job_id}/export", json=body, timeout=None)  # type: ignore[no-any-return]

    def download(self, job_id: str, export: str, filename: str, dest: str | os.PathLike[str]) -> Path:
        """Save one exported file to ``dest`` (written beside it, then renamed)."""
        data = self._call("GET", f"/api/experiments/{job_id}/exports/{export}/{filename}", raw=True)
        dest = Path(dest)
        part = dest.with_name(f".{dest.name}.part")
        part.write_bytes(data)
        part.replace(dest)
        return dest

    # -- following ------------------------------------------------------------------------------
    def events(self, job_id: str, *, follow: bool = False, last_id: int = -1) -> Iterator[dict[str, Any]]:
        """The experiment's server-sent events as ``{"event", "id", "data"}``; ends when it is
        no longer active (``follow=True``: keeps listening, e.g. for a resume)."""
        params = {"follow": "1"} if follow else {}
        headers = {"Last-Event-ID": str(last_id)} if last_id >= 0 else {}
        with self.http.stream("GET", f"/api/experiments/{job_id}/events", params=params, headers=headers, timeout=None) as r:
            if r.status_code >= 400:
                r.read()
                raise ServiceError(r.status_code, r.json().get("detail", r.text))
            event: dict[str, Any] = {}
            for line in r.iter_lines():
                if not line:
                    if "data" in event:
                        yield {"event": event.get("event", "message"), "id": int(event.get("id", -1)), "data": json.loads(event["data"])}
                    event = {}
                elif not line.startswith(":"):
                    key, _, value = line.partition(":")
                    event[key] = value[1:] if value.startswith(" ") else value

    def wait(self, job_id: str, *, timeout: float | None = None, poll_s: float = 1.0) -> dict[str, Any]:
        """Poll until the experiment is no longer queued or running; its final view."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            e = self.get(job_id)
            if e["state"] not in ACTIVE:
                return e
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} is still {e['state']} after {timeout} s")
            time.sleep(poll_s)
