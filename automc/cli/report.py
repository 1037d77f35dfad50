"""``automc report``, ``automc compare`` and ``automc export``: consuming a run's Pareto front."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from automc.cli.common import add_int8_scheme_option, check_int8_scheme_option, emit_json, non_negative_int, parse_kv
from automc.cli.remote import add_server_options


def _add_objective_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--objective",
        action="append",
        default=[],
        metavar="METRIC:max|min",
        help="objective of the front (repeatable; default: the experiment's), e.g. --objective accuracy:max --objective size_bytes:min",
    )
    p.add_argument("--reference", action="append", default=[], metavar="METRIC=VALUE", help="hypervolume reference value for an objective (default: see docs/reports.md)")
    p.add_argument("--no-png", action="store_true", help="skip the PNG plots (HTML, JSON and CSV only)")
    p.add_argument("--json", action="store_true", help="print the written paths and headline figures as one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="write a run's Pareto report: report.json, candidates.csv, report.html (offline) and PNGs")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--out", metavar="DIR", help="report folder (default: RUN_DIR/report)")
    _add_objective_options(r)
    add_server_options(r)
    r.set_defaults(func=run_report)

    c = sub.add_parser("compare", help="overlay the fronts and hypervolume curves of several runs in one report")
    c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    c.add_argument("--out", required=True, metavar="DIR", help="folder for compare.json, compare.html and PNGs")
    _add_objective_options(c)
    c.set_defaults(func=run_compare)

    e = sub.add_parser("export", help="rebuild one candidate of a run, re-measure it and write ONNX + PyTorch with a JSON card")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--candidate", type=non_negative_int, required=True, metavar="N", help="candidate number (see 'automc report' or 'automc status')")
    e.add_argument("--int8", action="store_true", help="also write model.int8.onnx (onnxruntime QDQ) checked against the PyTorch model")
    add_int8_scheme_option(e)
    e.add_argument("--recovered", action="store_true", help="export the candidate's fine-tuned weights ('automc finetune') instead of its search-time ones")
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--json", action="store_true", help="print the card as one JSON object")
    add_server_options(e)
    e.set_defaults(func=run_export)


def _references(args: argparse.Namespace) -> dict[str, float]:
    from automc.errors import UserError

    refs = parse_kv(args.reference, "--reference")
    for k, v in refs.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise UserError(f"--reference {k}: expected a number, got {v!r}", field="reference")
    return {k: float(v) for k, v in refs.items()}


def run_report(args: argparse.Namespace) -> int:
    if args.server:
        from automc.cli.remote import remote_report

        return remote_report(args)
    import json

    from automc.results.report import parse_objective_args, write_report

    paths = write_report(args.run_dir, args.out, objectives=parse_objective_args(args.objective) or None, reference=_references(args), png=not args.no_png)
    data = json.loads(paths["json"].read_text())
    if args.json:
        emit_json({"paths": {k: str(v) for k, v in paths.items()}, "front": data["front"], "hypervolume": data["hypervolume"]["final_normalized"]})
    else:
        print_report_summary(data, paths)
    return 0


def print_report_summary(data: dict[str, Any], paths: dict[str, Path]) -> None:
    """The front as a small table, then where the report is."""
    objs = [o["metric"] for o in data["objectives"]]
    by_number = {c["number"]: c for c in data["candidates"]}
    print(f"Pareto front of {data['run']['name']}: {len(data['front'])} of {data['run']['counts']['complete']} finished candidates (normalised hypervolume {data['hypervolume']['final_normalized']:.4f})")
    print("  " + f"{'#':>5}" + "".join(f"{m:>16}" for m in objs) + f"{'reward':>10}")
    for n in data["front"]:
        c = by_number[n]
        print("  " + f"{n:>5}" + "".join(f"{c['metrics'][m]:>16.6g}" for m in objs) + f"{c['reward']:>10.4g}")
    print(f"report: {paths['html']} (also {paths['json'].name}, {paths['csv'].name}" + (", PNGs" if "pareto_png" in paths else "") + ")")


def run_compare(args: argparse.Namespace) -> int:
    import json

    from automc.results.compare import write_comparison
    from automc.results.report import parse_objective_args

    paths = write_comparison(args.run_dirs, args.out, objectives=parse_objective_args(args.objective) or None, reference=_references(args), png=not args.no_png)
    data = json.loads(paths["json"].read_text())
    if args.json:
        emit_json({"paths": {k: str(v) for k, v in paths.items()}, "summary": data["summary"]})
        return 0
    print(f"{'run':32}{'agent':>16}{'finished':>10}{'front':>7}{'hypervolume':>13}{'minutes':>9}")
    for s in data["summary"]:
        print(f"{s['label'][:31]:32}{s['agent']:>16}{s['finished']:>10}{s['front']:>7}{s['hypervolume_normalized']:>13.4f}{s['minutes']:>9.1f}")
    print(f"comparison: {paths['html']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    check_int8_scheme_option(args)
    if args.server:
        from automc.cli.remote import remote_export

        return remote_export(args)
    from automc.results.export import export_candidate
    from automc.results.int8_onnx import agreement_text

    card = export_candidate(args.run_dir, args.candidate, args.out, int8=args.int8, int8_scheme=args.int8_scheme, recovered=args.recovered)
    if args.json:
        emit_json(card)
        return 0
    print(f"candidate #{args.candidate} of {card['run']['name']}" + (" (on the front)" if card["run"]["on_front"] else " (not on the front)") + (f", recovered: {card['training']['recipe']['epochs']} epochs of fine-tuning" if card.get("training") else ""))
    print(f"{'metric':24}{'stored':>14}{'measured now':>14}{'difference':>12}")
    for key, v in card["reproduction"].items():
        if key in ("accuracy_exact", "samples"):
            continue
        print(f"{key:24}{v['stored']:>14.6g}{v['measured']:>14.6g}{100 * v['relative_difference']:>11.2f}%")
    print("accuracy reproduced exactly" if card["reproduction"]["accuracy_exact"] else "accuracy DIFFERS from the stored value (different thread count or library versions?)")
    if card["int8"]:
        i = card["int8"]
        print(f"int8 ONNX: {agreement_text(i)}")
    print(f"wrote {args.out}: {', '.join(card['files'].values())}, compression.json")
    return 0
