"""Every agent on AMC's task, 3 seeds: which search uses its 100 candidates best?

**ResNet-20 at ≤ 50% of the MACs** (pretrained, CIFAR-10): channel pruning (all groups unless
the row says inner-only, ``round_to: 8``), ``target: {macs: 0.5}`` (RL agents clamp each
step against it; the others' proposals are projected onto it), reward = accuracy on 1,000
*training* images (BN-recalibrated, no fine-tuning), 100 candidates per run. Per agent, mean ±
sd over the seeds: the best in-target validation accuracy, the hypervolume (accuracy vs MACs,
reference point (0, the uncompressed MACs), normalised) after 25/50/100 candidates, the
fraction of candidates within the target, seconds per candidate, the learning curve (mean
and best reward per 10 candidates); and each run's best policy on ``test-exact`` (1,000) and
``test-jpeg`` (10,000), which no search step saw. NSGA-II runs twice: with the target's
default projection (``boundary``: every proposal spends the budget, as every other agent's)
and with ``feasible`` (proposals over the target are lowered onto it, the others kept — a
front under it).

**Quickstart** (digits, small CNN, accuracy vs MACs, 40 candidates, no target): the
hypervolume after 40 for ``random``, ``optuna-tpe`` and ``optuna-nsga2``, 3 seeds.

Resumable: every run is a run folder under ``--out`` (rerun the command after any
interruption; finished runs are read back, an unfinished one continues). Heavy: about an hour
on 2 cores. Writes ``OUT/agents.json`` and ``benchmarks/results/agents_resnet20.json``::

    nohup .venv/bin/python benchmarks/agents_resnet20.py --data-dir ../shared/data > agents.log &
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import yaml
from recovery_headline import REPO, TESTS, _cli, _cpu, _evaluate

# (label, agent, agent config, space mode, the target's projection)
AGENTS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("random", "random", {}, "all", "auto"),
    ("optuna-tpe", "optuna-tpe", {}, "all", "auto"),
    ("optuna-nsga2", "optuna-nsga2", {}, "all", "auto"),  # auto: boundary, every proposal spends the budget
    ("optuna-nsga2 (feasible)", "optuna-nsga2", {}, "all", "feasible"),  # a front under the target
    ("ddpg (inner-only)", "ddpg", {"warmup_episodes": 20}, "inner_only", "auto"),
    ("ddpg", "ddpg", {"warmup_episodes": 20}, "all", "auto"),
    ("ppo", "ppo", {}, "all", "auto"),
    ("mnas-controller", "mnas-controller", {}, "all", "auto"),
]
QUICKSTART_AGENTS = ("random", "optuna-tpe", "optuna-nsga2")


def resnet_config(label: str, agent: str, agent_config: dict[str, Any], mode: str, seed: int, candidates: int, data_dir: str, projection: str = "auto") -> dict[str, Any]:
    """The ResNet-20 task for one agent and seed."""
    slug = label.replace(" ", "").replace("(", "_").replace(")", "")
    return {
        "name": f"agents_{slug}_s{seed}",
        "seed": seed,
        "model": {"name": "resnet20", "weights": "pretrained"},
        "data": {"dataset": "cifar10", "data_dir": data_dir, "eval_split": "train-exact", "calibration_split": "train-exact", "validation": 1000, "calibration_batches": 8},
        "space": {"name": "channel_pruning", "config": {"mode": mode, "lbound": 0.2, "round_to": 8, "reconstruct": True}},
        "profiles": [{"name": "flops"}],
        "reward": {"name": "accuracy"},
        "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "macs", "direction": "minimize"}],
        "target": {"macs": 0.5, **({"projection": projection} if projection != "auto" else {})},
        "agent": {"name": agent, "config": agent_config},
        "budget": {"candidates": candidates},
    }


def quickstart_config(agent: str, seed: int) -> dict[str, Any]:
    """The README's quickstart search (its recovery left out) for one agent and seed."""
    cfg = yaml.safe_load((REPO / "experiments" / "quickstart.yaml").read_text())
    cfg.pop("finetune", None)
    cfg.update({"name": f"quickstart_{agent}_s{seed}", "seed": seed, "agent": {"name": agent, "config": {"population_size": 10} if agent == "optuna-nsga2" else {}}})
    return cfg


def run(cfg: dict[str, Any], out: Path, env: dict[str, str]) -> Path:
    """``automc search`` of ``cfg`` in ``out/<name>`` (resumes; a finished run is read back)."""
    exp = out / f"{cfg['name']}.yaml"
    exp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_dir = out / cfg["name"]
    _cli("search", str(exp), "--run-dir", str(run_dir), "--no-report", env=env)
    return run_dir


def measure(run_dir: Path, checkpoints: tuple[int, ...]) -> dict[str, Any]:
    """Best feasible accuracy, hypervolume after ``checkpoints`` candidates (reference: zero
    accuracy, the uncompressed MACs), fraction within the target, seconds per candidate."""
    from automc.results.report import build_report

    report = build_report(run_dir, reference={"accuracy": 0.0, "macs": _base_macs(run_dir)})
    done = [c for c in report["candidates"] if c["state"] == "complete"]
    feasible = [c for c in done if c["feasible"]]
    best = max(feasible, key=lambda c: c["metrics"]["accuracy"]) if feasible else None
    history = report["hypervolume"]["history"]
    hv = {}
    for k in checkpoints:
        upto = [h["normalized"] for h in history if h["evaluations"] <= k]
        hv[str(k)] = upto[-1] if upto else 0.0
    base = report["run"]["base_metrics"]
    # learning curve: mean and best reward of each block of 10 candidates (in number order)
    rewards = [c["reward"] for c in sorted(done, key=lambda c: c["number"]) if c["reward"] is not None]
    curve = [{"candidates": i + len(rewards[i : i + 10]), "mean": statistics.fmean(rewards[i : i + 10]), "best": max(rewards[i : i + 10])} for i in range(0, len(rewards), 10)]
    return {
        "curve": curve,
        "finished": len(done),
        "best": None if best is None else {"number": best["number"], "accuracy": best["metrics"]["accuracy"], "macs_ratio": best["metrics"]["macs"] / base["base_macs"]},
        "hypervolume": hv,
        "in_target": len(feasible) / max(1, len(done)),
        "seconds_per_candidate": report["run"]["elapsed_s"] / max(1, len(done)),
    }


def _base_macs(run_dir: Path) -> float:
    from automc.results.report import open_run

    return float(open_run(run_dir).store.meta()["base_metrics"]["base_macs"])


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def plot_curves(resnet: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Mean (solid) and best (dashed) reward per 10 candidates, one line per seed and agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(resnet), figsize=(3.2 * len(resnet), 3.2), sharey=True, squeeze=False)
    for ax, (label, runs) in zip(axes[0], resnet.items()):
        for seed, r in enumerate(runs):
            x = [p["candidates"] for p in r["curve"]]
            line = ax.plot(x, [p["mean"] for p in r["curve"]], label=f"seed {seed} mean")[0]
            ax.plot(x, [p["best"] for p in r["curve"]], "--", color=line.get_color(), label=f"seed {seed} best")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("candidates")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("reward (validation accuracy)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "agents", help="folder of every run")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--agents", help="comma-separated labels (default: all)")
    ap.add_argument("--skip-quickstart", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = [a for a in AGENTS if not args.agents or a[0] in args.agents.split(",")]
    checkpoints = tuple(k for k in (25, 50, 100) if k <= args.candidates) or (args.candidates,)
    results: dict[str, Any] = {"resnet20": {}, "quickstart": {}}
    for label, agent, agent_config, mode, projection in chosen:
        runs = []
        for seed in range(args.seeds):
            run_dir = run(resnet_config(label, agent, agent_config, mode, seed, args.candidates, args.data_dir, projection), args.out, env)
            m = measure(run_dir, checkpoints)
            tests_file = run_dir / "best_test.json"  # the best policy's test accuracy, kept: never computed twice
            if m["best"] is not None:
                if tests_file.is_file() and json.loads(tests_file.read_text()).get("number") == m["best"]["number"]:
                    m["test"] = json.loads(tests_file.read_text())["test"]
                else:
                    m["test"] = {s: v for s, v in _evaluate(run_dir, m["best"]["number"], args.data_dir, None, args.threads).items() if s in TESTS}
                    tests_file.write_text(json.dumps({"number": m["best"]["number"], "test": m["test"]}))
            runs.append(m)
            print(f"{label} seed {seed}: best {m['best']}, test {m.get('test')}", flush=True)
        results["resnet20"][label] = runs
    if not args.skip_quickstart:
        for agent in QUICKSTART_AGENTS:
            results["quickstart"][agent] = [measure(run(quickstart_config(agent, seed), args.out, env), (40,)) for seed in range(args.seeds)]
    results.update({"cpu": _cpu(), "threads": args.threads, "seeds": args.seeds, "candidates": args.candidates})
    text = json.dumps(results, indent=2) + "\n"
    (args.out / "agents.json").write_text(text)
    if not args.agents and args.seeds >= 3 and args.candidates >= 100:
        (REPO / "benchmarks" / "results" / "agents_resnet20.json").write_text(text)
    print(f"\nResNet-20, target macs 0.5, {args.candidates} candidates, {args.seeds} seeds (mean ± sd)")
    print(f"{'agent':20}{'best val':>14}" + "".join(f"{'HV@' + str(k):>14}" for k in checkpoints) + f"{'in target':>11}{'s/cand':>8}" + "".join(f"{s:>16}" for s in TESTS))
    for label, runs in results["resnet20"].items():
        ok = [r for r in runs if r["best"] is not None]
        cells = [_mean_sd([100 * r["best"]["accuracy"] for r in ok]) if ok else (float("nan"), 0.0)]
        cells += [_mean_sd([r["hypervolume"][str(k)] for r in runs]) for k in checkpoints]
        row = f"{label:20}{cells[0][0]:>8.2f}±{cells[0][1]:<5.2f}" + "".join(f"{m:>8.4f}±{sd:<5.3f}" for m, sd in cells[1:])
        row += f"{100 * statistics.fmean(r['in_target'] for r in runs):>10.0f}%{statistics.fmean(r['seconds_per_candidate'] for r in runs):>8.2f}"
        for s in TESTS:
            m, sd = _mean_sd([100 * r["test"][s] for r in ok if "test" in r]) if ok else (float("nan"), 0.0)
            row += f"{m:>10.2f}±{sd:<5.2f}"
        print(row)
    print("\nLearning curves: mean reward per 10 candidates (best in brackets), mean over seeds")
    for label, runs in results["resnet20"].items():
        blocks = min(len(r["curve"]) for r in runs)
        cells = [f"{statistics.fmean(r['curve'][b]['mean'] for r in runs):.3f} ({statistics.fmean(r['curve'][b]['best'] for r in runs):.3f})" for b in range(blocks)]
        print(f"{label:20}" + "  ".join(cells))
    plot_curves(results["resnet20"], args.out / "learning_curves.png")
    if results["quickstart"]:
        print("\nQuickstart, 40 candidates: hypervolume (normalised) mean ± sd")
        for agent, runs in results["quickstart"].items():
            m, sd = _mean_sd([r["hypervolume"]["40"] for r in runs])
            print(f"{agent:20}{m:.4f} ± {sd:.4f}")


if __name__ == "__main__":
    main()
