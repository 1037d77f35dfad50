"""The command line against an ``automc serve``: ``automc submit`` and ``--server`` on
``search``, ``status``, ``report`` and ``export`` (the run is then the experiment's name)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from automc.cli.common import emit_json


def add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="URL", help="act on an 'automc serve' at URL (the run is then the experiment's name)")
    p.add_argument("--token", metavar="TOKEN", help="the server's token (default: $AUTOMC_SERVICE_TOKEN)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit an experiment YAML to an 'automc serve' (queued there; 'automc status NAME --server URL' follows it)")
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument("--server", required=True, metavar="URL")
    p.add_argument("--token", metavar="TOKEN", help="the server's token (default: $AUTOMC_SERVICE_TOKEN)")
    p.add_argument("--wait", action="store_true", help="follow its events until it ends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_submit)


def _client(args: argparse.Namespace) -> Any:
    from automc.client import Client

    return Client(args.server, args.token)


def _calling(fn: Any) -> Any:
    """The server's refusals and an unreachable server as one line (exit 2)."""
    import httpx

    from automc.client import ServiceError
    from automc.errors import UserError

    try:
        return fn()
    except ServiceError as exc:
        raise UserError(f"the server answered {exc.status}: {exc.detail}") from None
    except httpx.TransportError as exc:
        raise UserError(f"cannot reach the server ({exc.__class__.__name__}: {exc}): check --server and that 'automc serve' runs there") from None


def run_submit(args: argparse.Namespace) -> int:
    from automc.errors import UserError

    path = Path(args.config)
    if not path.is_file():
        raise UserError(f"{path} does not exist: pass an experiment YAML", field="config")
    with _client(args) as c:
        job = _calling(lambda: c.submit(path))
        if args.wait:
            for event in _calling(lambda: list(_follow(c, job["id"], quiet=args.json))):
                pass
            job = _calling(lambda: c.get(job["id"]))
    if args.json:
        emit_json(job)
    else:
        print(f"submitted {job['id']} ({job['state']}); follow it with: automc status {job['id']} --server {args.server}")
    return 0


def _follow(c: Any, job_id: str, quiet: bool) -> Any:
    for event in c.events(job_id):
        if not quiet and event["event"] == "progress":
            p, best = event["data"]["progress"], event["data"]["best"]
            budget = p.get("budget", {}).get("candidates")
            print(f"{job_id}: {p['finished']}/{budget or '?'} finished, {p['failed']} failed" + (f", best #{best['number']} reward {best['reward']:.4g}" if best else ""), flush=True)
        elif not quiet and event["event"] == "state":
            print(f"{job_id}: {event['data']['state']}" + (f" ({event['data']['message']})" if event["data"].get("message") else ""), flush=True)
        yield event


def remote_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        e = _calling(lambda: c.get(args.run_dir))
    if args.json:
        emit_json(e)
        return 0
    p = e["progress"]
    print(f"{e['id']}: {e['state']}, {p['finished']} finished, {p['failed']} failed, {p['running']} running" + (f" — {e['message']}" if e.get("message") else ""))
    if e.get("best"):
        b = e["best"]
        print(f"  best #{b['number']} reward {b['reward']:.4g}  " + "  ".join(f"{k} {v:.4g}" for k, v in b["metrics"].items() if isinstance(v, (int, float))))
    return 0


def remote_report(args: argparse.Namespace) -> int:
    out = Path(args.out or f"{args.run_dir}-report")
    with _client(args) as c:
        data = _calling(lambda: c.report(args.run_dir))
        html = _calling(lambda: c.report_html(args.run_dir))
    from automc.atomic import atomic_write_text

    atomic_write_text(out / "report.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(out / "report.html", html.decode())
    if args.json:
        emit_json({"json": str(out / "report.json"), "html": str(out / "report.html")})
    else:
        print(f"wrote {out}/report.json and report.html ({len(data['front'])} on the front)")
    return 0


def remote_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with _client(args) as c:
        result = _calling(lambda: c.export(args.run_dir, args.candidate, int8=args.int8, int8_scheme=args.int8_scheme, recovered=args.recovered))
        out.mkdir(parents=True, exist_ok=True)
        for name in result["files"]:
            _calling(lambda name=name: c.download(args.run_dir, result["export"], name, out / name))
    if args.json:
        emit_json(result["card"])
    else:
        print(f"exported candidate #{args.candidate} of {args.run_dir} on the server; downloaded {', '.join(result['files'])} into {out}")
    return 0
