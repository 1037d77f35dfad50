"""Does multi-fidelity ranking find a better policy for the same search time? Two searches of
AMC's ResNet-20 setting (``experiments/amc_resnet20_recovery.yaml``: inner-block channels,
validation on 1,000 training images) with the same agent, seed and wall-time budget
(``--minutes``): one ranks candidates by the BN-recalibrated score, the other with a
``fidelity:`` section (successive halving into short KD fine-tunes). Each run's best candidate
is then recovered with the experiment's ``finetune`` recipe (``--epochs``) and measured on
``test-exact`` and ``test-jpeg``, which no search step saw.

The agent is ``random`` with ``target: {macs: 0.5}`` (every proposal projected onto half the
MACs), not the experiment's DDPG: the same proposals in the same order in both arms, so the
ranking alone differs, and neither arm can stop early — a first attempt with DDPG (noise decay
0.95) converged to one policy after 66 s of its 20 minutes (200 repeated proposals in a row).

The search time counts everything the loop does — the rungs' training included — and survives
a restart (the store keeps the elapsed time), so both arms get the same minutes. Resumable:
rerun the same command after any interruption (finished searches are read back, a recovery
continues from its last epoch)::

    nohup .venv/bin/python benchmarks/fidelity_walltime.py --data-dir ../shared/data > wall.log &

Writes ``OUT/walltime.json`` and ``benchmarks/results/fidelity_walltime_resnet20.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml
from recovery_headline import REPO, TESTS, _cli, _cpu, _evaluate

EXPERIMENT = REPO / "experiments" / "amc_resnet20_recovery.yaml"


def arm_config(base: dict[str, Any], *, minutes: float, epochs: int, train_images: int | None, fidelity: dict[str, Any] | None) -> dict[str, Any]:
    """The experiment with a wall-time budget only, the recovery's epochs (and images, for a
    smoke run), and the fidelity section (or none)."""
    cfg = {**base, "name": f"{base['name']}_{'fidelity' if fidelity else 'bn'}", "budget": {"minutes": minutes}}
    cfg["agent"] = {"name": "random"}
    cfg["target"] = {"macs": 0.5}
    cfg["finetune"] = {**base["finetune"], "epochs": epochs}
    if train_images:
        cfg["finetune"]["train_images"] = train_images
    cfg.pop("fidelity", None)
    if fidelity:
        cfg["fidelity"] = fidelity
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> None:
    """Writes ``cfg`` once; a rerun with other arguments than the stored run's is refused
    (by ``automc search``, which compares a run's config with the one it is given)."""
    from automc.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fidelity_walltime", help="folder of both runs")
    ap.add_argument("--minutes", type=float, default=20.0, help="search wall time of each arm")
    ap.add_argument("--epochs", type=int, default=8, help="recovery epochs of each arm's best policy")
    ap.add_argument("--train-images", type=int, help="recover on this many training images (a smoke run; default: all)")
    ap.add_argument("--steps", default="100,300", help="the fidelity arm's rungs (training steps, comma-separated)")
    ap.add_argument("--reduction-factor", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir  # the evaluation below runs in this process
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    base = yaml.safe_load(EXPERIMENT.read_text())
    fidelity = {"steps": [int(s) for s in args.steps.split(",")], "reduction_factor": args.reduction_factor}
    args.out.mkdir(parents=True, exist_ok=True)

    arms: dict[str, dict[str, Any]] = {}
    for arm, fid in (("bn", None), ("fidelity", fidelity)):
        exp = args.out / f"{arm}.yaml"
        write_config(exp, arm_config(base, minutes=args.minutes, epochs=args.epochs, train_images=args.train_images, fidelity=fid))
        run = args.out / arm
        search = _cli("search", str(exp), "--run-dir", str(run), "--no-report", env=env)
        brief = search["recovered"][0]
        number = int(brief["number"])
        from automc.run import RunDir

        rec = next(r for r in RunDir(run).recoveries() if r["key"] == brief["key"])
        arms[arm] = {
            "candidates": search["finished"],
            "search_elapsed_s": search.get("elapsed_s"),
            "best": number,
            "macs_ratio": rec["before"]["macs"] / rec["before"]["base_macs"],
            "val_ranked_by": rec["before"]["accuracy"],  # the last rung's score in the fidelity arm
            "val_bn": rec["before"].get("accuracy_bn", rec["before"]["accuracy"]),
            "fidelity_steps": rec["before"].get("fidelity_steps", 0.0),
            "val_after_recovery": rec["after"]["accuracy"],
            "train_seconds": rec["train_seconds"],
            "bn_test": _evaluate(run, number, args.data_dir, None, args.threads),
            "recovered_test": _evaluate(run, number, args.data_dir, brief["key"], args.threads),
        }
    summary = {
        "minutes": args.minutes,
        "epochs": args.epochs,
        "fidelity": fidelity,
        "agent": "random, target macs 0.5",
        "arms": arms,
        "fidelity_minus_bn": {s: arms["fidelity"]["recovered_test"][s] - arms["bn"]["recovered_test"][s] for s in TESTS},
        "cpu": _cpu(),
        "threads": args.threads,
    }
    text = json.dumps(summary, indent=2) + "\n"
    (args.out / "walltime.json").write_text(text)
    if not args.train_images:
        (REPO / "benchmarks" / "results" / "fidelity_walltime_resnet20.json").write_text(text)
    print(f"ResNet-20 @ <= 50% MACs, {args.minutes:g} min of search each, best recovered {args.epochs} epochs")
    print(f"{'arm':10}{'cands':>7}{'best':>6}{'MACs':>7}{'ranked':>9}" + "".join(f"{s:>12}" for s in TESTS))
    for arm, a in arms.items():
        print(f"{arm:10}{a['candidates']:>7}{a['best']:>6}{100 * a['macs_ratio']:>6.1f}%{100 * a['val_ranked_by']:>8.2f}%" + "".join(f"{100 * a['recovered_test'][s]:>11.2f}%" for s in TESTS))
    print("fidelity - bn: " + ", ".join(f"{s} {100 * v:+.2f} points" for s, v in summary["fidelity_minus_bn"].items()))


if __name__ == "__main__":
    main()
