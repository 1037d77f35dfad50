"""``automc search CONFIG.yaml`` and ``automc status RUN_DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from automc.cli.common import (
    emit_json,
    non_negative_int,
    positive_int,
    print_locked,
    progress_enabled,
)
from automc.cli.remote import add_server_options
from automc.cli.search_progress import SearchProgress, metric_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run (or resume) a compression search from an experiment YAML")
    p.add_argument("config", metavar="CONFIG.yaml")
    p.add_argument("--run-dir", metavar="DIR", help="run directory (default: runs/<name>); running again resumes it")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="evaluate N candidates at once on a local Ray (default 1: in this process)")
    p.add_argument("--address", metavar="ADDR", help="join this Ray cluster instead (e.g. ray://head:10001)")
    p.add_argument("--no-report", action="store_true", help="skip writing RUN_DIR/report at the end ('automc report RUN_DIR' writes it later)")
    p.add_argument("--json", action="store_true", help="print the final summary as one JSON object")
    p.add_argument("--verbose", action="store_true", help="one line per candidate instead of the live progress bar")
    p.add_argument("--check", action="store_true", help="validate the experiment and dry-run it on the uncompressed model, print what the search will do, and stop (writes nothing)")
    add_server_options(p)
    p.set_defaults(func=run_search)

    s = sub.add_parser("status", help="finished / failed / running counts and the best candidates of a run")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--top", type=non_negative_int, default=5, metavar="N", help="how many of the best candidates to list (default 5)")
    s.add_argument("--json", action="store_true")
    add_server_options(s)
    s.set_defaults(func=run_status)


def run_search(args: argparse.Namespace) -> int:
    from automc.cli.recovery_view import RecoveryView
    from automc.config import load_config
    from automc.recover.driver import search_and_recover

    if args.server:  # queued on the server instead
        from automc.cli.remote import run_submit

        args.wait = False
        return run_submit(args)
    cfg = load_config(args.config)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / cfg.name
    if args.check:
        from automc.cli.check import print_check

        return print_check(cfg, run_dir, as_json=args.json, workers=args.workers)
    on_candidate = SearchProgress(cfg, bar=progress_enabled() and not args.verbose, quiet=args.json)

    import os
    import sys

    saved = None
    if args.json:  # stdout carries only the final JSON: Ray and libraries print to fd 1 too
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    view = RecoveryView(quiet=args.json)

    def on_finalist(number: int, index: int, count: int) -> None:
        if index == 0:
            on_candidate.stop()  # the search is over: the recovery shows its own progress
        view.on_finalist(number, index, count)

    try:
        summary = search_and_recover(cfg, run_dir, on_candidate=on_candidate, workers=args.workers, address=args.address, on_finalist=on_finalist, on_progress=view.on_progress)
    finally:
        on_candidate.stop()
        view.close()
        if saved is not None:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    paths = None
    if not args.no_report and summary["finished"]:
        from automc.results.report import write_report

        paths = write_report(run_dir)
        summary["report"] = str(paths["html"])
    if args.json:
        emit_json(summary)
        return 0
    _print_summary(summary, on_candidate.names)
    print_locked(summary.get("locked_groups", []))
    print(f"run directory: {run_dir} (resume with the same command; 'automc status {run_dir}')")
    if paths is not None:
        import json

        from automc.cli.report import print_report_summary

        print_report_summary(json.loads(paths["json"].read_text()), paths)
    return 0


def _print_summary(summary: dict[str, Any], names: list[str]) -> None:
    print(
        f"{summary['name']}: {summary['finished']} finished, {summary['failed']} failed, {summary['running']} running"
        + (f", {summary['interrupted']} interrupted earlier" if summary.get("interrupted") else "")
        + (f", {summary['duplicates']} duplicate proposals answered from the record" if summary.get("duplicates") else "")
    )
    base = summary.get("base_metrics", {})
    if base:
        print("uncompressed: " + metric_line({k.removeprefix("base_"): v for k, v in base.items()}, names))
    for c in summary["best"]:
        print(f"  #{c['number']:<4} reward {c['reward']:.4g}  {metric_line(c['metrics'], names)}")
    if summary.get("recovered"):
        print("recovered by fine-tuning (automc finetune RUN_DIR for more):")
        for r in summary["recovered"]:
            print(f"  #{r['number']:<4} accuracy {100 * r['accuracy_before']:.2f}% -> {100 * r['accuracy_after']:.2f}%  ({r['epochs']} epochs, {r['train_seconds']:.0f} s)")


def run_status(args: argparse.Namespace) -> int:
    if args.server:
        from automc.cli.remote import remote_status

        return remote_status(args)
    from automc.results.report import open_run
    from automc.search.summary import summarize

    rec = open_run(args.run_dir)
    cfg = rec.config
    summary = summarize(rec.store, top=args.top)
    if args.json:
        emit_json(summary)
    else:
        _print_summary(summary, [o["metric"] for o in cfg.get("objectives", [])])
    return 0
