"""PQK on CIFAR-10 ResNet-32 in the PQK paper's table shape: quantised only; quantised +
pruned; quantised + pruned + KD — accuracy and size reduction, for the searched mixed 4/8-bit
policy and for the same pruning at 8 bits everywhere.

Steps, each resumable (rerun the same command after any interruption: finished rows are read
back, a recovery continues from its last epoch):

1. ``automc search experiments/pqk_resnet32_cifar10.yaml``: NSGA-II over channel ratios and
   4/8 bits under 10% of the float size, then its ``finetune:`` section recovers the best
   candidate with response KD + QAT (row "quantised + pruned + KD", mixed);
2. the other rows are variants of that policy — every ratio at 1.0 (quantised only), every
   bit-width at 8 — evaluated as a candidate is and recovered with the same recipe (with or
   without KD) in ``RUN/pqk/<row>/``, outside the run's record;
3. every model is evaluated on ``test-exact`` (1,000 pixel-exact images) and ``test-jpeg``
   (10,000, lossy).

Prints the table and writes ``benchmarks/results/pqk_resnet32.json``::

    nohup .venv/bin/python benchmarks/pqk.py --data-dir ../shared/data > pqk.log &
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

from recovery_headline import REPO, TESTS, _cli, _cpu

EXPERIMENT = REPO / "experiments" / "pqk_resnet32_cifar10.yaml"
STAGES = ("quantised only", "quantised + pruned", "quantised + pruned + KD")


def variant(params: dict[str, Any], *, pruned: bool, eight_bit: bool) -> dict[str, Any]:
    """The best policy with its ratios kept (``pruned``) or all 1.0, and its bit-widths kept or
    all 8."""
    out = {}
    for k, v in params.items():
        if k.endswith(":ratio"):
            out[k] = v if pruned else 1.0
        else:
            out[k] = 8 if eight_bit else v
    return out


def _test_accuracy(ctx: Any, params: dict[str, Any], state: dict[str, Any] | None, data_dir: str, keep: Path) -> dict[str, float]:
    """Accuracy on the test splits: the float model (``params`` empty), or the compressed one
    with the recovered ``state`` loaded; kept in ``keep`` so that a rerun reads it back."""
    from automc.atomic import atomic_write_text
    from automc.build import open_data

    if keep.exists():
        return dict(json.loads(keep.read_text()))
    model = ctx.model if not params else ctx.space.apply(ctx.model, params)
    if state is not None:
        model.load_state_dict(state)
    out = {}
    for split in TESTS:
        data = open_data("cifar10", data_dir, split=split, calibration_images=0)
        out[split] = data.evaluator(bn_calibration_batches=0)(model.eval(), prepared=True)["accuracy"]
    keep.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(keep, json.dumps(out, indent=2) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pqk_resnet32", help="run folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--experiment", type=Path, default=EXPERIMENT, help="a variant of the PQK experiment (a smaller budget for a smoke run)")
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir  # the recoveries below run in this process
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    search = _cli("search", str(args.experiment), "--run-dir", str(args.out), "--no-report", env=env)

    import torch

    from automc.config import parse_config
    from automc.measure.evaluator import torch_threads
    from automc.recover.finalists import recover_candidate
    from automc.run import RECOVERY_MODEL, RunDir
    from automc.search.context import build_context, evaluate_candidate
    from automc.search.snapshot import open_store
    from automc.search.training_data import teacher_of

    torch.set_num_threads(args.threads)
    rd = RunDir(args.out)
    cfg = parse_config(rd.read_config())
    assert cfg.finetune is not None
    kd_brief = search["recovered"][0]
    number = int(kd_brief["number"])
    best = next(c for c in open_store(rd.storage_url(cfg.storage), cfg.name).candidates() if c.number == number)
    ctx = build_context(cfg, rd, cache=False, train=False)
    ce = cfg.finetune.model_copy(update={"distill": None})
    rows: list[dict[str, Any]] = [{"precision": "float", "stage": "unpruned", "size_bytes": ctx.base_metrics["base_size_bytes"], "test": _test_accuracy(ctx, {}, None, args.data_dir, rd.path / "pqk" / "test" / "float.json")}]
    for precision, eight in (("mixed 4/8 (searched)", False), ("8-bit", True)):
        for stage in STAGES:
            params = variant(best.params, pruned="pruned" in stage, eight_bit=eight)
            slug = re.sub(r"[^a-z0-9]+", "-", f"{precision} {stage}".lower()).strip("-")
            ft = cfg.finetune if stage.endswith("KD") else ce
            if params == best.params and ft == cfg.finetune:
                result = next(r for r in rd.recoveries() if r["key"] == kd_brief["key"])  # the run's own recovery
                state = rd.load_tensors(rd.recovery(number, result["key"]) / RECOVERY_MODEL)
            else:
                folder = rd.path / "pqk" / slug
                with torch_threads(args.threads):
                    cand = evaluate_candidate(ctx, number, params)  # as the search would have (PTQ)
                    result = recover_candidate(ctx, rd, cand, ft, teacher=teacher_of(ctx, ft), folder=folder)
                state = rd.load_tensors(folder / RECOVERY_MODEL)
            rows.append(
                {
                    "precision": precision,
                    "stage": stage,
                    "size_bytes": result["after"]["size_bytes"],
                    "macs": result["after"]["macs"],
                    "val_before": result["before"]["accuracy"],
                    "val_after": result["after"]["accuracy"],
                    "train_seconds": result["train_seconds"],
                    "test": _test_accuracy(ctx, params, state, args.data_dir, rd.path / "pqk" / "test" / f"{slug}.json"),
                }
            )
    base_size = rows[0]["size_bytes"]
    for r in rows:
        r["size_reduction"] = 1.0 - r["size_bytes"] / base_size
    summary = {"candidate": number, "search_candidates": search["finished"], "recipe": cfg.finetune.model_dump(mode="json"), "rows": rows, "cpu": _cpu(), "threads": args.threads}
    text = json.dumps(summary, indent=2) + "\n"
    (args.out / "pqk.json").write_text(text)
    if args.experiment == EXPERIMENT:
        (REPO / "benchmarks" / "results" / "pqk_resnet32.json").write_text(text)
    print(f"ResNet-32, candidate #{number} of {search['finished']}; recovery: {cfg.finetune.epochs} epochs on {cfg.finetune.train_split}")
    print(f"{'precision':22}{'stage':26}{'size':>10}{'smaller':>9}" + "".join(f"{s:>12}" for s in TESTS) + f"{'train':>9}")
    for r in rows:
        t = r.get("train_seconds")
        print(f"{r['precision']:22}{r['stage']:26}{r['size_bytes'] / 1e3:>8.0f}kB{100 * r['size_reduction']:>8.1f}%" + "".join(f"{100 * r['test'][s]:>11.2f}%" for s in TESTS) + (f"{t / 60:>7.1f}min" if t else ""))


if __name__ == "__main__":
    main()
