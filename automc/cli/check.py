"""``automc search --check``: validate and dry-run an experiment, say what the search will do.

Nothing is written: no run folder, no store, no trained model (a base model the search would
train first is checked untrained here).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from automc.cli.common import emit_json
from automc.config import ExperimentConfig


def check_summary(cfg: ExperimentConfig, run_dir: Path, *, workers: int = 1) -> dict[str, Any]:
    """What ``automc search`` would do with ``cfg`` in ``run_dir``, after the dry run."""
    from automc.recover.driver import check_fidelity, check_finetune
    from automc.run import RunDir
    from automc.search.agent_settings import resolved_settings
    from automc.search.loop import check_run_config
    from automc.search.preflight import check_experiment, preflight, probe
    from automc.search.run_widths import describe_widths

    run = RunDir(run_dir)
    resuming = check_run_config(run, cfg.model_dump(mode="json"))
    ctx, agent, _ = check_experiment(cfg, run, train=False, checks=(check_finetune, check_fidelity), agent_settings=run.read_agent_settings())
    settings = resolved_settings(agent, cfg.agent.config)
    agent.close()
    reward = preflight(ctx)
    trial = probe(ctx)
    knobs = Counter(getattr(d, "knob", "") or "value" for d in ctx.space.dimensions.values())
    per = trial["seconds"]
    budget = cfg.budget.model_dump()
    total = None if cfg.budget.candidates is None else per * cfg.budget.candidates / max(1, workers)
    return {
        "name": cfg.name,
        "run_dir": str(run.path),
        "resumes": resuming,
        "model": cfg.model.name,
        "base_model": "given weights" if cfg.model.weights else ("trained" if ctx.base_trained else f"trained first ({cfg.model.train.epochs} epochs; checked untrained)" if cfg.model.train else "untrained"),
        "dataset": cfg.data.dataset,
        "validation_images": int(ctx.reference.get("samples", 0)),
        "space": cfg.space.name,
        "dimensions": len(ctx.space.dimensions),
        "widths": describe_widths(cfg, run),
        "knobs": dict(knobs),
        "agent": cfg.agent.name,
        "agent_config": dict(cfg.agent.config),
        "agent_settings": settings,
        "seed": cfg.seed,
        "budget": budget,
        "profiles": [p.name for p in cfg.profiles],
        "objectives": [f"{o.metric} ({o.direction})" for o in cfg.objectives],
        "constraints": [{"metric": k.metric, "min": k.min, "max": k.max} for k in cfg.constraints],
        "target": [{"metric": t["metric"], "max": t["max"], "spec": t["spec"], "fraction": t["fraction"]} for t in ctx.limits],
        "reward": {"name": cfg.reward.name, "kwargs": dict(cfg.reward.kwargs), "uncompressed": reward},
        "uncompressed": {k: v for k, v in ctx.reference.items() if not k.startswith("base_")},
        "probe": trial,
        "seconds_per_candidate": per,
        "estimated_minutes": None if total is None else total / 60,
    }


def print_check(cfg: ExperimentConfig, run_dir: Path, *, as_json: bool, workers: int = 1) -> int:
    s = check_summary(cfg, run_dir, workers=workers)
    if as_json:
        emit_json(s)
        return 0
    knobs = ", ".join(f"{k} ×{n}" for k, n in s["knobs"].items())
    budget = " and ".join(f"{v} {k}" for k, v in s["budget"].items() if v is not None)
    print(f"{s['name']}: OK — the dry run passed")
    print(f"  model      {s['model']} ({s['base_model']}) on {s['dataset']}, {s['validation_images']} validation images")
    print(f"  space      {s['space']}: {s['dimensions']} dimensions ({knobs})")
    if s["widths"]:
        print(f"  widths     {s['widths']}")
    print(f"  agent      {s['agent']} {s['agent_config'] or ''} seed {s['seed']}".rstrip())
    print(f"  settings   {', '.join(f'{k}={v}' for k, v in sorted(s['agent_settings'].items())) or '(none)'}")
    print(f"  budget     {budget}" + (f" on {workers} workers" if workers > 1 else ""))
    print(f"  profiles   {', '.join(s['profiles'])}")
    print(f"  objectives {', '.join(s['objectives'])}" + (f"; constraints {s['constraints']}" if s["constraints"] else ""))
    if s["target"]:
        print("  target     " + ", ".join(f"{t['metric']} <= {t['max']:.6g} ({t['spec']}: {t['fraction']:.1%} of the uncompressed)" for t in s["target"]))
    print(f"  reward     {s['reward']['name']} {s['reward']['kwargs'] or ''} = {s['reward']['uncompressed']:.6g} on the uncompressed model")
    print("  uncompressed " + ", ".join(f"{k} {v:.6g}" for k, v in s["uncompressed"].items()))
    t = s["probe"]["timings"]
    parts = ", ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in t.items() if k.endswith("_s"))
    print(f"  one candidate ~{s['seconds_per_candidate']:.2f}s ({parts})" + (f"; the budget ~{s['estimated_minutes']:.1f} min" if s["estimated_minutes"] is not None else ""))
    if s["probe"]["error"]:
        print(f"  note: the probe policy failed ({s['probe']['error']}); the search records such candidates as failed")
    print(f"  run dir    {s['run_dir']} ({'resumes the search there' if s['resumes'] else 'new'})")
    return 0
