"""Latency you can bank on: latency-aware searches against a FLOPs-aware one, by measured latency.

Every arm searches ResNet-20's channels (all groups, pretrained, CIFAR-10; accuracy on 1,000
*training* images after BN recalibration) with NSGA-II for ``--candidates`` candidates and
measures every candidate on ``onnxruntime-cpu`` (batch 1; 1 intra-op thread, ``--device-threads``
for more):

- ``flops``: objectives accuracy and MACs, channels rounded to multiples of 8 (``round_to:
  8``, the README's advice for latency);
- ``latency``: objectives accuracy and measured latency, the same rounding;
- ``flops_steps``: objectives accuracy and MACs, channels rounded per group to multiples of
  the step ``automc profile widths --context step`` measured on this CPU (``widths:``);
- ``latency_steps``: objectives accuracy and measured latency, the same per-group steps.

The two ``_steps`` arms separate what the measured rounding buys from what the latency
objective buys. Two more arms, run only when ``--arms`` names them, search the ``elastic``
space instead — the same channels, and each residual stage may also drop its trailing blocks
(depth 1–3 per stage of ResNet-20):

- ``flops_depth``: objectives accuracy and MACs, channels ``round_to: 8``;
- ``latency_depth``: objectives accuracy and measured latency, the per-group steps.

Pruning channels leaves every operator's fixed cost (dispatch, thread synchronisation, memory
traffic) in place, so measured latency falls slower than MACs; dropping a block removes its
operators whole. Which of the two the search should spend accuracy on is what a latency
objective can see and a MACs objective cannot (whether that pays: README, AVX2 EPYC, *Dropping
blocks as well*). Each latency arm is also compared with the
FLOPs arm over the same space (``vs_flops_same_space``: ``latency_depth`` against
``flops_depth``), where the objective alone differs.

Latencies measured during a search drift with the machine's load, so once the searches are
done every candidate of every arm (and the uncompressed model) is measured again side by
side: ``--rounds`` interleaved rounds, the median per model. Each arm's front is then taken
in the (latency, accuracy) plane — the FLOPs arm's too, which favours it — and compared with
the FLOPs arm at equal accuracy: for accuracy levels over the range both fronts cover, the
fastest model of each arm reaching it (and over the more accurate half of that range, the
models one would ship). Also printed, per front model: measured speedup over
the uncompressed model divided by its FLOPs reduction (1.0: latency falls as fast as FLOPs).

Resumable (the widths file, the run folders and the re-measured latencies are kept under
``--out``; rerun to continue)::

    nohup .venv/bin/python benchmarks/latency_aware.py --data-dir ../shared/data > lat.log &

``--arms flops,latency_steps`` runs only those arms (``flops``, the reference, always among
them): the cheaper way to a longer search (``--candidates 300``), whose fronts have converged
further than at 100.

Writes ``OUT/latency_aware.json`` and
``benchmarks/results/latency_aware_resnet20_<cpu>[_t<threads>][_s<seed>][_c<candidates>][_<arms>][_paired].json``
(``xeon``, ``epyc`` (AVX2), ``epyc_avx512``: the steps and latencies are the CPU kind's; ``_t`` with
``--device-threads`` other than 1; ``_c`` when not 100
candidates; the arms, joined by ``-``, when not the four channel-only ones; ``_paired`` when an arm on the steps ran on
a step read by the paired-round rule of ``device_profiles/steps.py``, from 638711a on;
``_vsbase`` with ``--search-vs-base``).

``--search-vs-base`` has the latency arms' searches time each candidate next to the base
model, so a machine state lasting seconds does not steer them. Copying ``widths.json``,
``flops.yaml`` and ``flops/`` of an earlier ``--out`` of the same seed and threads into a new
one keeps the steps and the FLOPs arm (which this flag does not change) and runs only what
differs; the re-measurement is then done again, side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

import yaml
from latency_fronts import arm_result, compare
from recovery_headline import REPO, _cli, _cpu, _cpu_kind

from automc.atomic import atomic_write_text

ORT = "onnxruntime-cpu"


def ort(threads: int) -> dict[str, Any]:
    """The latency profile every arm searches and is re-measured on: onnxruntime, ``threads`` intra-op threads, batch 1."""
    return {"name": ORT, "config": {"threads": threads}}


ARMS = ("flops", "latency", "flops_steps", "latency_steps", "flops_depth", "latency_depth")
DEFAULT_ARMS = ARMS[:4]  # the channel-only arms; the depth arms run when asked for


def uses_steps(arm: str) -> bool:
    """Whether the arm rounds channels to the measured per-group steps (else ``round_to: 8``)."""
    return arm.endswith("_steps") or arm == "latency_depth"


def twin(arm: str) -> str | None:
    """The FLOPs-aware arm over the same space as latency arm ``arm`` (None for a FLOPs arm)."""
    return arm.replace("latency", "flops", 1) if arm.startswith("latency") else None


def config(arm: str, widths: Path, candidates: int, data_dir: str, seed: int, device_threads: int = 1, vs_base: bool = False) -> dict[str, Any]:
    """The experiment of one arm; ``vs_base``: a latency arm's search times each candidate
    next to the base model (``onnxruntime-cpu`` ``paired: true``). The FLOPs arms never: their
    searches do not steer by latency, and their experiment stays the one run without it."""
    profile = ort(device_threads)
    if vs_base and arm.startswith("latency"):
        profile = {**profile, "config": {**profile["config"], "paired": True}}
    width = {"mode": "all", "lbound": 0.2, **({"widths": str(widths)} if uses_steps(arm) else {"round_to": 8})}
    space = {"name": "channel_pruning", "config": width}
    if arm.endswith("_depth"):  # the same channels, and each stage may drop its trailing blocks
        space = {"name": "elastic", "config": {"depth": True, "kernel": False, "min_depth": 1, "width": width}}
    cost = "macs" if arm.startswith("flops") else "latency_ms"
    return {
        "name": f"latency_aware_{arm}",
        "seed": seed,
        "model": {"name": "resnet20", "weights": "pretrained"},
        "data": {"dataset": "cifar10", "data_dir": data_dir, "eval_split": "train-exact", "calibration_split": "train-exact", "validation": 1000, "calibration_batches": 8},
        "space": space,
        "profiles": [{"name": "flops"}, profile],
        "reward": {"name": "accuracy"},
        "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": cost, "direction": "minimize"}],
        "agent": {"name": "optuna-nsga2", "config": {"population_size": 20}},
        "budget": {"candidates": candidates},
    }


def remeasure(out: Path, runs: dict[str, Path], rounds: int, device_threads: int = 1) -> dict[str, dict[str, float]]:
    """Every complete candidate of every arm and the uncompressed model, measured again side
    by side: ``rounds`` interleaved rounds on one onnxruntime profile, the median per model
    (``arm`` → ``number`` (or ``base``) → ms). Kept in ``OUT/remeasured.json`` once complete, every
    round's value in ``OUT/remeasured_rounds.json``."""
    from automc.config import parse_config
    from automc.measure.profiles import build_profile
    from automc.results.report import build_report
    from automc.run import RunDir
    from automc.search.context import build_context

    path = out / "remeasured.json"
    if path.is_file():
        return json.loads(path.read_text())
    models, x = [], None
    for arm, run_dir in runs.items():
        ctx = build_context(parse_config(RunDir(run_dir).read_config()), run_dir, measure_base=False, cache=False, train=False)
        x = ctx.example_input
        if not models:
            models.append(("flops", "base", ctx.model))
        for c in build_report(run_dir)["candidates"]:
            if c["state"] == "complete":
                models.append((arm, str(c["number"]), ctx.space.apply(ctx.model, c["params"]).eval()))
    profile = build_profile(ORT, ort(device_threads)["config"])
    times: dict[tuple[str, str], list[float]] = {(a, n): [] for a, n, _ in models}
    for r in range(rounds):
        order = models[r % 2 :: 2] + models[1 - r % 2 :: 2]  # interleave the arms, alternate the order
        for arm, number, model in order:
            times[(arm, number)].append(profile.measure(model, x).values["latency_ms"])
        print(f"re-measured round {r + 1}/{rounds}: {len(models)} models", flush=True)
    result: dict[str, dict[str, float]] = {}
    each: dict[str, dict[str, list[float]]] = {}
    for (arm, number), ts in times.items():
        result.setdefault(arm, {})[number] = statistics.median(ts)
        each.setdefault(arm, {})[number] = ts
    atomic_write_text(out / "remeasured_rounds.json", json.dumps(each) + "\n")  # every round's value, to tell a slow model from a noisy one
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return result


def _step_rule(measured_on: dict) -> str:
    """Which rule read the step: files from before 638711a lack ``rounds_asked`` and were read
    from each probe's median alone; later ones pair every probe with its twin per round."""
    return "paired rounds" if "rounds_asked" in measured_on else "medians"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("AUTOMC_DATA_DIR", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "latency_aware")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the side-by-side re-measurement")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the searches (the latency profile's: --device-threads)")
    ap.add_argument("--device-threads", type=int, default=1, help="onnxruntime intra-op threads of the latency profile (searched, step-measured and re-measured on)")
    ap.add_argument("--search-vs-base", action="store_true", help="the latency arms' searches time each candidate next to the base model (onnxruntime-cpu paired: true); the re-measurement is the same either way")
    ap.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"comma-separated arms to run, 'flops' among them: {', '.join(ARMS)} (default: {', '.join(DEFAULT_ARMS)})")
    args = ap.parse_args()
    asked = {a.strip() for a in args.arms.split(",") if a.strip()}
    if "flops" not in asked or not asked <= set(ARMS):
        ap.error(f"--arms: a comma-separated subset of {', '.join(ARMS)} that includes 'flops' (the reference), got {args.arms!r}")
    chosen = [a for a in ARMS if a in asked]  # in ARMS's order, each once
    if args.device_threads < 1:
        ap.error(f"--device-threads: onnxruntime intra-op threads, an integer >= 1, got {args.device_threads}")
    os.environ["AUTOMC_DATA_DIR"] = args.data_dir
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    args.out.mkdir(parents=True, exist_ok=True)
    widths = args.out / "widths.json"
    if widths.is_file() and (measured := json.loads(widths.read_text())["measured_on"]["threads"]) != args.device_threads:
        ap.error(f"--device-threads {args.device_threads}: {args.out} holds steps measured on {measured} thread(s); use another --out")
    if not widths.is_file():  # written atomically: present means complete
        _cli("profile", "widths", "--model", "resnet20", "--weights", "pretrained", "--space", "channel_pruning", "--space-arg", "mode=all", "--space-arg", "lbound=0.2", "--device", ORT, "--device-arg", f"threads={args.device_threads}", "--context", "step", "--out", str(widths), env=env)
    runs = {}
    for arm in chosen:
        cfg = config(arm, widths, args.candidates, args.data_dir, args.seed, args.device_threads, args.search_vs_base)
        exp = args.out / f"{arm}.yaml"
        exp.write_text(yaml.safe_dump(cfg, sort_keys=False))
        runs[arm] = args.out / arm
        _cli("search", str(exp), "--run-dir", str(runs[arm]), "--no-report", env=env)  # a finished run returns at once
    latency = remeasure(args.out, runs, args.rounds, args.device_threads)
    arms = {arm: arm_result(run_dir, latency[arm], latency["flops"]["base"]) for arm, run_dir in runs.items()}
    widths_data = json.loads(widths.read_text())
    summary = {
        "task": f"resnet20, channel pruning (all groups; the _depth arms also drop trailing blocks per stage), NSGA-II, 1,000 validation images (train-exact), onnxruntime-cpu {args.device_threads} thread(s) batch 1",
        "candidates": args.candidates,
        "remeasured": f"every candidate and the base model, {args.rounds} interleaved rounds side by side, median",
        "search_latency": "latency arms: each candidate timed next to the base model (paired)" if args.search_vs_base else "each candidate timed alone",
        "widths": {"context": widths_data["context"], "tolerance": widths_data["tolerance"], "step": widths_data["measured_on"]["step"], "step_rule": _step_rule(widths_data["measured_on"]), "rounds": widths_data["measured_on"].get("rounds"), "probes": widths_data["measured_on"]["probes"], "groups": {g: e["widths"] for g, e in widths_data["groups"].items()}},
        "arms": arms,
        "vs_flops_aware": {arm: compare(arms["flops"], arms[arm]) for arm in arms if arm != "flops"},
        # each latency arm against the FLOPs arm searching the same space (the objective alone differs)
        "vs_flops_same_space": {arm: compare(arms[t], arms[arm]) for arm in arms if (t := twin(arm)) not in (None, "flops") and t in arms},
        "cpu": _cpu(),
    }
    text = json.dumps(summary, indent=2) + "\n"
    atomic_write_text(args.out / "latency_aware.json", text)
    if args.candidates >= 100:  # one result per CPU kind: steps and latencies are the CPU's
        kind = _cpu_kind(summary["cpu"])  # the file is named by the CPU it records
        seed = "" if args.seed == 0 else f"_s{args.seed}"
        size = "" if args.candidates == 100 else f"_c{args.candidates}"
        threads = "" if args.device_threads == 1 else f"_t{args.device_threads}"
        part = "" if tuple(chosen) == DEFAULT_ARMS else "_" + "-".join(chosen)  # never over a full result
        if summary["widths"]["step_rule"] == "paired rounds" and any(uses_steps(a) for a in chosen):
            part += "_paired"  # never over a result whose step the medians rule read
        part += "_vsbase" if args.search_vs_base else ""
        atomic_write_text(REPO / "benchmarks" / "results" / f"latency_aware_resnet20_{kind}{threads}{seed}{size}{part}.json", text)
    print(f"ResNet-20, {args.candidates} NSGA-II candidates per arm, re-measured side by side on onnxruntime-cpu ({args.device_threads} thread(s)); base {latency['flops']['base']:.3f} ms")
    for arm, a in arms.items():
        ratios = [r["speedup_per_flops_reduction"] for r in a["front"]]
        print(f"{arm:>15}: {a['candidates']} candidates, front of {len(a['front'])}; speedup / FLOPs reduction on the front: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
        fit, agree = a["latency_fit"], a["search_vs_remeasured"]
        print(f"{'':>15}  latency the search recorded / re-measured: median {agree['p50']:.2f} (p10 {agree['p10']:.2f}, p90 {agree['p90']:.2f}); {100 * agree['share_over_1.2']:.0f}% of candidates over 1.2, {100 * agree['share_under_0.8']:.0f}% under 0.8")
        print(f"{'':>15}  latency / base = {fit['fixed']:.2f} + {fit['per_macs']:.2f} x MACs / base (R^2 {fit['r2']:.2f}, all candidates): a model at half the MACs runs at speedup / FLOPs reduction ~{fit['ratio_cap_at_half_macs']:.2f}")
    for (arm, ref), cmp_ in [((a, "flops"), c) for a, c in summary["vs_flops_aware"].items()] + [((a, twin(a)), c) for a, c in summary["vs_flops_same_space"].items()]:
        print(f"{arm:>15} vs {ref} at equal accuracy ({100 * cmp_['accuracy_range'][0]:.1f}-{100 * cmp_['accuracy_range'][1]:.1f}%): latency {100 * cmp_['latency_reduction_median']:.1f}% lower (median over {cmp_['levels']} levels; min {100 * cmp_['latency_reduction_min']:.1f}%, max {100 * cmp_['latency_reduction_max']:.1f}%); more accurate half: {100 * cmp_['latency_reduction_median_upper_half']:.1f}% lower (min {100 * cmp_['latency_reduction_min_upper_half']:.1f}%)")


if __name__ == "__main__":
    main()
