"""The experiment routes of ``automc serve`` (all behind the token; see :mod:`app`)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from automc.compress.int8 import INT8_SCHEMES
from automc.service.guard import Refused, check_id
from automc.service.jobs import JobQueue
from automc.service.records import EXPERIMENT_FILE
from automc.service.submit import (
    archive,
    dry_run,
    parse_body,
    run_automc,
    vet_experiment,
)
from automc.service.views import View, Views, store_mtime

TERMINAL = ("finished", "failed", "stopped")


class BudgetRaise(BaseModel):
    """``POST /api/experiments/{id}/budget``: the new totals (not increments)."""

    candidates: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)


class ExportRequest(BaseModel):
    candidate: int = Field(ge=0)
    int8: bool = False
    int8_scheme: Literal[INT8_SCHEMES] | None = None  # type: ignore[valid-type]
    recovered: bool = False


def experiment_routes(settings: Any, queue: JobQueue, views: Views) -> APIRouter:
    r = APIRouter()

    def view_of(job_id: str) -> View:
        check_id(job_id)
        view = views.get(job_id) or views.refresh_one(job_id) if (settings.root / job_id).is_dir() else None
        if view is None:
            raise Refused(404, f"no experiment {job_id!r} under this server's root")
        return view

    def job_of(job_id: str) -> Any:
        view_of(job_id)
        job = queue.get(job_id)
        if job is None:
            raise Refused(409, f"{job_id!r} was run by the command line, not this service: resume it with 'automc search' (or submit it anew)")
        return job

    @r.get("/plugins")
    def plugins() -> dict[str, dict[str, str]]:
        """Installed plugins by kind (name → where it comes from)."""
        from automc.registry import GROUPS, registry

        return {kind: registry(group).describe() for group, kind in GROUPS.items()}

    @r.post("/experiments", status_code=201)
    async def submit(request: Request) -> dict[str, Any]:
        """Submit an experiment (YAML or JSON body): vetted, dry-run, then queued."""
        document = parse_body(await request.body(), request.headers.get("content-type", ""))
        job_id, experiment = vet_experiment(settings, document)
        folder = settings.root / job_id
        try:
            folder.mkdir()
        except FileExistsError:
            raise Refused(409, f"an experiment named {job_id!r} exists: resume it, raise its budget, or submit under another name") from None
        try:  # staged in its folder (relative paths resolve as they will when it runs)
            (folder / EXPERIMENT_FILE).write_text(yaml.safe_dump(experiment, sort_keys=False))
            await asyncio.to_thread(dry_run, settings, folder)
            job = queue.submit(job_id, experiment)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        views.refresh_one(job_id, force=True)
        return {"id": job.id, "state": job.state, "seq": job.seq}

    async def view_soon(job_id: str) -> View:
        """:func:`view_of` for handlers on the event loop: a view not built yet is built in
        a thread, not on the loop."""
        check_id(job_id)
        return views.get(job_id) or await asyncio.to_thread(view_of, job_id)

    # The two endpoints every client polls: async (no thread hop), the body serialised once
    # per change, and a 304 for a client that sends back the ETag it holds.
    @r.get("/experiments", response_class=Response, responses={200: {"content": {"application/json": {}}}})
    async def list_experiments(request: Request) -> Response:
        """Every experiment: name, state, progress, best so far."""
        body, etag = views.listing()
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(body, media_type="application/json", headers={"ETag": etag, "Cache-Control": "no-cache"})

    @r.get("/experiments/{job_id}", response_class=Response, responses={200: {"content": {"application/json": {}}}})
    async def get_experiment(job_id: str) -> Response:
        """One experiment's summary with its config, base metrics and objectives."""
        return Response(views.detail(await view_soon(job_id)), media_type="application/json")

    @r.get("/experiments/{job_id}/candidates")
    def candidates(job_id: str, offset: int = 0, limit: int = 100, state: str | None = None, on_front: bool | None = None, feasible: bool | None = None, sort: str = "number") -> dict[str, Any]:
        """Candidates, paged; ``state``/``on_front``/``feasible`` filter, ``sort`` by
        ``number`` or ``-reward`` (best first) or any metric (``-accuracy``, ``macs``)."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise Refused(422, "limit must be 1..1000 and offset >= 0")
        rows = list((view_of(job_id).report or {}).get("candidates", []))
        rows = [c for c in rows if (state is None or c["state"] == state) and (on_front is None or c["on_front"] == on_front) and (feasible is None or c["feasible"] == feasible)]
        key, reverse = sort.lstrip("-"), sort.startswith("-")
        if key != "number":
            rows = [c for c in rows if (c.get(key) if key == "reward" else c["metrics"].get(key)) is not None]
            rows.sort(key=lambda c: c[key] if key == "reward" else c["metrics"][key], reverse=reverse)
        elif reverse:
            rows.reverse()
        return {"total": len(rows), "offset": offset, "items": rows[offset : offset + limit]}

    @r.get("/experiments/{job_id}/front")
    def front(job_id: str) -> dict[str, Any]:
        report = view_of(job_id).report or {"front": [], "candidates": [], "objectives": [], "hypervolume": {"history": []}, "target": []}
        members = set(report["front"])
        return {"objectives": report["objectives"], "target": report.get("target", []), "front": [c for c in report["candidates"] if c["number"] in members], "hypervolume": report["hypervolume"]}

    @r.get("/experiments/{job_id}/events")
    async def events(job_id: str, request: Request) -> EventSourceResponse:
        """Server-sent events: ``candidate``, ``progress`` and ``state`` (ids resume a
        dropped stream via ``Last-Event-ID``); ends when the job is no longer active."""
        await view_soon(job_id)
        last = int(request.headers.get("last-event-id", "-1") or -1)

        async def stream() -> AsyncIterator[dict[str, Any]]:
            nonlocal last
            while True:
                view = views.get(job_id)
                if view is None:
                    return
                for e in view.events_after(last):
                    last = e["id"]
                    yield {"event": e["type"], "id": str(e["id"]), "data": json.dumps({k: v for k, v in e.items() if k not in ("type", "id")}, default=float)}
                if view.summary["state"] in TERMINAL and not view.events_after(last) and request.query_params.get("follow") != "1":
                    return
                await asyncio.sleep(0.5)

        return EventSourceResponse(stream(), ping=15)

    @r.post("/experiments/{job_id}/stop")
    def stop(job_id: str) -> dict[str, Any]:
        job_of(job_id)
        return _state(queue.stop(job_id), views)

    @r.post("/experiments/{job_id}/resume")
    def resume(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        if job.state == "finished":
            raise Refused(409, f"{job_id!r} has finished its budget: raise it with POST /api/experiments/{job_id}/budget")
        return _state(queue.resume(job_id), views)

    @r.post("/experiments/{job_id}/budget")
    def budget(job_id: str, body: BudgetRaise) -> dict[str, Any]:
        job_of(job_id)
        current = (views.get(job_id).report or {}).get("run", {}).get("config", {}).get("budget", {}) if views.get(job_id) else {}
        new = body.model_dump(exclude_none=True)
        if not new:
            raise Refused(422, "budget: give 'candidates' and/or 'minutes' (the new totals)")
        for key, value in new.items():
            if current.get(key) is not None and value <= current[key]:
                raise Refused(422, f"budget.{key} must exceed the current {current[key]} (it is the new total, not an increment)")
        return _state(queue.raise_budget(job_id, new), views)

    @r.get("/experiments/{job_id}/report")
    async def report(job_id: str, format: str = "json") -> Any:
        """The report data (``format=json``) or the offline HTML page (``format=html``), written
        into ``RUN/report`` afresh when the run changed since."""
        view = view_of(job_id)
        if view.report is None:
            raise Refused(409, f"{job_id!r} has no finished candidate yet")
        if format == "json":
            return view.report
        if format != "html":
            raise Refused(422, "format must be 'json' or 'html'")
        page = await asyncio.to_thread(_html_report, settings.root / job_id, view)
        return FileResponse(page, media_type="text/html")

    @r.post("/experiments/{job_id}/export")
    async def export(job_id: str, body: ExportRequest) -> dict[str, Any]:
        """Rebuild, re-measure and write one candidate (ONNX + PyTorch + card; ``int8`` adds
        the QDQ model) in a child process; the files are then downloadable."""
        view_of(job_id)
        scheme = f"-{body.int8_scheme}" if body.int8 and body.int8_scheme else ""
        name = f"{body.candidate}{'-int8' if body.int8 else ''}{scheme}{'-recovered' if body.recovered else ''}"
        out = settings.root / job_id / "exports" / name
        card = await asyncio.to_thread(_export, settings, job_id, body, out)
        return {"export": name, "files": sorted(p.name for p in out.iterdir() if p.is_file()), "card": card}

    @r.get("/experiments/{job_id}/exports/{name}/{filename}")
    def download(job_id: str, name: str, filename: str) -> FileResponse:
        view_of(job_id)
        base = (settings.root / job_id / "exports").resolve()
        path = (base / check_id(name) / check_id(filename)).resolve()
        if base not in path.parents or not path.is_file():
            raise Refused(404, f"no exported file {name}/{filename}: export the candidate first (POST .../export)")
        return FileResponse(path, filename=filename)

    @r.delete("/experiments/{job_id}")
    def delete(job_id: str, confirm: str | None = None) -> dict[str, Any]:
        """Archive the run folder (moved to ``ROOT/_archive``); ``?confirm=<id>`` is required
        and a running experiment must be stopped first."""
        view = view_of(job_id)
        if confirm != job_id:
            raise Refused(409, f"archiving moves {job_id!r} out of the list: repeat with ?confirm={job_id}")
        if view.summary["state"] in ("running", "running (cli)", "queued"):
            raise Refused(409, f"{job_id!r} is {view.summary['state']}: stop it first")
        target = archive(settings, job_id)
        views.refresh()
        return {"archived": str(target.relative_to(settings.root))}

    return r


def _state(job: Any, views: Views) -> dict[str, Any]:
    views.refresh_one(job.id, force=True)
    return {"id": job.id, "state": job.state, "seq": job.seq}


def _html_report(folder: Path, view: View) -> Path:
    from automc.results.report import write_report

    out = folder / "report-live"  # not RUN/report, which the search itself writes at its end
    page = out / "report.html"
    if not page.is_file() or page.stat().st_mtime < store_mtime(folder):
        write_report(folder, out, png=False)
    return page


def _export(settings: Any, job_id: str, body: ExportRequest, out: Path) -> dict[str, Any]:
    args = ["export", ".", "--candidate", str(body.candidate), "--out", str(out), "--json"]
    args += ["--int8"] if body.int8 else []
    args += ["--int8-scheme", body.int8_scheme] if body.int8 and body.int8_scheme else []
    args += ["--recovered"] if body.recovered else []
    result: dict[str, Any] = json.loads(run_automc(settings, settings.root / job_id, args, what="export", failure_status=500))
    return result
