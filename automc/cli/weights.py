"""``automc weights FILE``: check that a checkpoint is one automc can read — tensors only,
read without running code (``weights_only=True`` or safetensors) — and say what it holds.

The service runs it on every uploaded weights file (in a child process) before keeping it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from automc.cli.common import emit_json
from automc.errors import UserError
from automc.hashing import file_digest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="check a checkpoint is tensors only (never unpickled) and summarise it")
    p.add_argument("file", help="a .pt/.pth state dict (torch.save(model.state_dict(), path)) or a .safetensors file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_weights)


def run_weights(args: argparse.Namespace) -> int:
    from automc.models import read_state_dict

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist", field="file")
    state, meta = read_state_dict(path)
    summary = {
        "file": str(path),
        "bytes": path.stat().st_size,
        "sha256": file_digest(path),
        "tensors": len(state),
        "parameters": sum(t.numel() for t in state.values()),
        "dtypes": dict(Counter(str(t.dtype).removeprefix("torch.") for t in state.values())),
        "meta": sorted(meta),
    }
    if args.json:
        emit_json(summary)
    else:
        print(f"{path}: {summary['tensors']} tensors, {summary['parameters']:,} values ({', '.join(f'{n} {d}' for d, n in summary['dtypes'].items())}); sha256 {summary['sha256'][:16]}…")
    return 0
