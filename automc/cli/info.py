"""``automc models``, ``automc datasets``, ``automc plugins``, ``automc cpu``: what is installed,
and how this CPU runs int8."""

from __future__ import annotations

import argparse

from automc.cli.common import add_data_options, emit_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo (and which models have pretrained weights)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_models)

    p = sub.add_parser("datasets", help="list datasets, their splits and whether their files are present")
    add_data_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_datasets)

    p = sub.add_parser("plugins", help="list every registered plugin by entry-point group")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_plugins)

    p = sub.add_parser("cpu", help="this CPU's int8 features, the int8 scheme 'auto' picks, and a live saturation probe of every scheme")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_cpu)


def run_models(args: argparse.Namespace) -> int:
    from automc.models import MODELS
    from automc.models.pretrained import PRETRAINED

    rows = []
    for name, ref in MODELS.describe().items():
        doc = (getattr(MODELS.get(name), "__doc__", None) or "").strip().splitlines()
        pre = PRETRAINED.get(name)
        rows.append(
            {
                "name": name,
                "factory": ref,
                "summary": doc[0] if doc else "",
                "pretrained": f"{pre.dataset} top-1 {pre.reported_top1}%" if pre else None,
            }
        )
    if args.json:
        emit_json(rows)
        return 0
    for r in rows:
        pre = f"  [pretrained: {r['pretrained']}]" if r["pretrained"] else ""
        print(f"{r['name']:<12} {r['summary']}{pre}")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    from automc.datasets import DATASETS, get_dataset
    from automc.errors import UserError

    out = []
    for name in DATASETS.names():
        ds = get_dataset(name, args.data_dir, verify=False)
        splits = {}
        for split, desc in ds.splits.items():
            try:
                ds.load(split) if name == "digits" else _probe(ds, split)
                present = True
            except UserError:
                present = False
            splits[split] = {"description": desc, "present": present}
        out.append({"name": name, "data_dir": str(ds.data_dir), "splits": splits})
    if args.json:
        emit_json(out)
        return 0
    for d in out:
        print(f"{d['name']}  ({d['data_dir']})")
        for split, info in d["splits"].items():
            mark = "ok     " if info["present"] else "missing"
            print(f"  {mark} {split:<12} {info['description']}")
    return 0


def _probe(ds, split: str) -> None:  # type: ignore[no-untyped-def]
    """Raise UserError if the split's files are absent, without reading them."""
    from automc.datasets.cifar10 import BATCH_MD5, NPZ_FILES, CIFAR10
    from automc.datasets.idx import _FILES, _IdxDataset

    if isinstance(ds, CIFAR10):
        if split in NPZ_FILES:
            ds.require(ds.data_dir / "cifar10" / NPZ_FILES[split][0], split)
        else:
            names = ["test_batch"] if split == "test" else [n for n in BATCH_MD5 if n.startswith("data")]
            for n in names:
                ds.require(ds._batches_dir() / n, split)
    elif isinstance(ds, _IdxDataset):
        for stem in _FILES[split]:
            ds._find(stem, split)
    else:
        ds.load(split)


def run_plugins(args: argparse.Namespace) -> int:
    from automc.registry import GROUPS, registry

    table = {group: registry(group).describe() for group in GROUPS}
    if args.json:
        emit_json(table)
        return 0
    for group, entries in table.items():
        print(f"{group}:")
        if not entries:
            print("  (none installed)")
        for name, ref in entries.items():
            print(f"  {name:<16} {ref}")
    return 0


def run_cpu(args: argparse.Namespace) -> int:
    from automc.compress.int8 import SCHEMES, cpu_features, recommended_scheme, saturation_probe

    features = cpu_features()
    auto = recommended_scheme(features)
    probes = {name: saturation_probe(scheme) for name, scheme in SCHEMES.items()}
    result = {**features.summary(), "auto_scheme": auto.name, "why": auto.why, "probe_error_steps": probes}
    if args.json:
        emit_json(result)
        return 0
    flags = ", ".join(result["int8_flags"]) or "none"
    print(f"CPU: {features.model} ({features.arch}); int8-relevant flags: {flags}; VNNI: {'yes' if features.vnni else 'no'}")
    print(f"int8_scheme auto -> {auto.name}: {auto.why}")
    print("saturation probe (adversarial int8 conv in onnxruntime; error in output steps, <= 1 is exact):")
    for name, err in probes.items():
        verdict = "exact" if err <= 1 else "SATURATES on this CPU"
        print(f"  {name:<14} {err:10.2f}  {verdict}{'  <- auto' if name == auto.name else ''}")
    return 0
