"""``automc serve``'s ASGI app: the HTTP API over the job queue and the run folders.

Every route under ``/api`` but ``/api/health`` wants the bearer token (:mod:`guard`); request
bodies are capped (413). Submissions are vetted by :mod:`submit`. Errors never carry a
traceback to the client: user mistakes are one line (as the CLI prints them), bugs are
logged on the server.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from automc.errors import UserError
from automc.service.guard import Refused, token_matches
from automc.service.jobs import JobQueue
from automc.service.views import Views

log = logging.getLogger("automc.service")
COOKIE = "automc_token"
STATIC = {"index.html": "text/html", "dashboard.js": "text/javascript", "dashboard.css": "text/css"}


class SessionRequest(BaseModel):
    token: str


@dataclass
class Settings:
    """What the operator chose (``automc serve`` options)."""

    root: Path
    token: str
    allow_modules: tuple[str, ...] = ()
    data_dir: Path | None = None
    max_concurrent: int = 1
    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 1 << 30  # PUT /api/weights/{name}
    nice: int = 10
    search_args: tuple[str, ...] = ()  # --workers N / --address RAY for every search
    check_timeout_s: float = 600.0
    env: dict[str, str] = field(default_factory=dict)

    def roots(self) -> list[Path]:
        """Folders a submitted experiment may name files in."""
        return [self.root] + ([self.data_dir] if self.data_dir is not None else [])


class _BodyLimit:
    """ASGI middleware: a request body over its limit is answered 413 (declared or not); weights
    uploads have their own, larger limit."""

    def __init__(self, app: Any, limit: int, upload_limit: int) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"].startswith("/api/weights/") else self.limit
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message: dict[str, Any] = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise Refused(413, f"request body over {limit} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(settings: Settings, *, start: bool = True) -> FastAPI:
    """The app over ``settings.root``; ``start=False`` leaves the scheduler and watcher off
    (tests drive :meth:`JobQueue.tick` and :meth:`Views.refresh` themselves)."""
    settings.root.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(settings.root, max_concurrent=settings.max_concurrent, nice=settings.nice, search_args=settings.search_args, env=settings.env or None)
    views = Views(queue)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if start:
            queue.start()
            views.start()
        try:
            yield
        finally:
            if start:
                views.close()
                queue.close()

    app = FastAPI(title="automc", summary="AutoML model-compression search service", lifespan=lifespan)
    app.state.settings, app.state.queue, app.state.views = settings, queue, views
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes)

    @app.exception_handler(Refused)
    async def _refused(_req: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(UserError)
    async def _user_error(_req: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "field": exc.field}, status_code=422)

    @app.exception_handler(OSError)
    async def _os_error(req: Request, exc: OSError) -> JSONResponse:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # not a bug: the operator frees space
            log.warning("%s %s: %s", req.method, req.url.path, exc)
            return JSONResponse({"detail": f"the server's disk is full ({exc.strerror}): retry once its operator freed space under the root"}, status_code=507)
        return await _bug(req, exc)

    @app.exception_handler(Exception)
    async def _bug(req: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", req.method, req.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error (the traceback is in the server's log)"}, status_code=500)

    async def authorized(request: Request) -> None:  # async: no thread hop on every request
        header = request.headers.get("authorization", "")
        presented = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        if not token_matches(settings.token, presented):
            raise Refused(401, "missing or wrong token: send 'Authorization: Bearer <token>' (the token is in the server root's .automc-token unless the operator set one)")

    static = Path(__file__).with_name("static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        """The dashboard page (it holds no data: it signs in, then calls the API)."""
        return FileResponse(static / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> FileResponse:
        if name == "plotly.min.js":  # the installed plotly's copy: the dashboard works offline
            import plotly

            return FileResponse(Path(plotly.__file__).parent / "package_data" / "plotly.min.js", media_type="text/javascript")
        if name not in STATIC:
            raise Refused(404, f"no static file {name!r}")
        return FileResponse(static / name, media_type=STATIC[name])

    @app.post("/api/session", status_code=204)
    def session(body: SessionRequest) -> Response:
        """Exchange the token for a session cookie (HttpOnly, SameSite=Strict): what the
        dashboard's fetches and event streams carry instead of a header."""
        if not token_matches(settings.token, body.token):
            raise Refused(401, "wrong token: it is in the server root's .automc-token unless the operator set one")
        response = Response(status_code=204)
        response.set_cookie(COOKIE, body.token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        import automc

        return {"ok": True, "version": automc.__version__}

    from automc.service.routes import experiment_routes
    from automc.service.uploads import weight_routes

    app.include_router(experiment_routes(settings, queue, views), prefix="/api", dependencies=[Depends(authorized)])
    app.include_router(weight_routes(settings), prefix="/api", dependencies=[Depends(authorized)])
    return app
