"""``automc serve``: the HTTP API, job queue and dashboard over a folder of runs."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from automc.cli.common import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API (docs at /docs) and job queue over a folder of runs")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--root", default="runs", metavar="DIR", help="folder of the run folders (default runs/); the CLI's runs there are listed too")
    p.add_argument("--max-concurrent", type=positive_int, default=1, metavar="N", help="searches running at once; the rest wait in submission order (default 1)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="Ray workers of each search (default 1: in its own process)")
    p.add_argument("--address", metavar="RAY", help="evaluate candidates on this Ray cluster (started with 'ray start')")
    p.add_argument("--token", help="bearer token clients must send (default: $AUTOMC_SERVICE_TOKEN, else one generated into ROOT/.automc-token, mode 0600)")
    p.add_argument("--allow-module", action="append", default=[], metavar="MODULE", help="a module (and its submodules) whose module:function references submitted experiments may use; repeatable (default: none)")
    p.add_argument("--data-dir", metavar="DIR", help="the datasets folder searches read (default $AUTOMC_DATA_DIR); submitted paths may point into it")
    p.add_argument("--max-body", type=positive_int, default=1 << 20, metavar="BYTES", help="largest request body accepted (default 1 MiB)")
    p.add_argument("--max-upload", type=positive_int, default=1 << 30, metavar="BYTES", help="largest weights upload, PUT /api/weights/NAME (default 1 GiB)")
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from automc.errors import UserError
    from automc.service.app import Settings, create_app
    from automc.service.guard import service_token

    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    data_dir = args.data_dir or os.environ.get("AUTOMC_DATA_DIR")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder", field="data_dir")
    token, source = service_token(root, args.token)
    env = dict(os.environ)
    if data_dir:
        env["AUTOMC_DATA_DIR"] = str(Path(data_dir).resolve())
    search_args: tuple[str, ...] = ("--workers", str(args.workers)) if args.workers > 1 else ()
    search_args += ("--address", args.address) if args.address else ()
    settings = Settings(root=root, token=token, allow_modules=tuple(args.allow_module), data_dir=Path(data_dir).resolve() if data_dir else None, max_concurrent=args.max_concurrent, max_body_bytes=args.max_body, max_upload_bytes=args.max_upload, search_args=search_args, env=env)
    if not _is_loopback(args.host):
        print(f"automc serve: warning: binding {args.host} serves the API beyond this machine without TLS; put it behind a TLS proxy")
    print(f"automc serve: http://{args.host}:{args.port} (API docs at /docs) over {root}; token from {source}; {args.max_concurrent} search(es) at once")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
