"""Exporting one candidate of a finished run as a deployable model.

The candidate is rebuilt from its stored params exactly as the search built it (same base
model, calibration images, seed and thread count: see :func:`automc.search.context.materialize`),
then measured again — accuracy on the run's validation subset and every profile of the run,
latency measured afresh (never read from the run's cache) — and written as

* ``model.onnx`` (and ``model.int8.onnx`` with ``int8``: onnxruntime QDQ, checked against
  the PyTorch model on the validation images),
* ``model.pt`` + ``compression.json`` (:mod:`automc.compress.saved`; rebuilt with
  :func:`automc.compress.saved.load_compressed`), the card holding the stored and re-measured
  figures side by side.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from automc.compress.saved import load_compressed, make_card, save_compressed, update_card
from automc.config import parse_config
from automc.datasets import get_dataset
from automc.errors import UserError
from automc.measure.evaluator import torch_threads
from automc.results.int8_onnx import export_int8_checked, model_int8_scheme
from automc.results.onnx import export_onnx
from automc.results.pareto import pareto_front, parse_objectives, run_constraints
from automc.results.report import open_run
from automc.run import RunDir
from automc.search.candidate import COMPLETE
from automc.search.context import base_recipe, build_context, materialize, weights_of


def export_candidate(run_dir: str | Path, number: int, out: str | Path, *, int8: bool = False, int8_scheme: str | None = None, recovered: bool = False) -> dict[str, Any]:
    """Rebuild candidate ``number`` of the run in ``run_dir``, re-measure it and write it to
    ``out``; returns the card (also saved as ``out/compression.json``). ``recovered`` exports
    its latest recovery (``automc finetune``): the policy's structure with the trained
    weights, compared with the figures the recovery recorded. ``int8_scheme`` overrides the
    int8 scheme (default: the model's own, else this CPU's; see :func:`model_int8_scheme`)."""
    rec = open_run(run_dir)
    run = RunDir(run_dir)
    cfg = parse_config(rec.config, str(run.config_file))
    cands = rec.store.candidates()
    by_number = {c.number: c for c in cands}
    front = pareto_front(cands, parse_objectives(rec.config.get("objectives", [])), run_constraints(rec.config, rec.store.meta()))
    members = [cands[i].number for i in front.front_indices()]
    hint = f"front members: {', '.join(map(str, members))}" if members else "the run has no feasible candidate yet"
    cand = by_number.get(number)
    if cand is None:
        raise UserError(f"--candidate {number}: the run has no candidate {number} (0..{max(by_number) if by_number else -1}); {hint}", field="candidate")
    if cand.state != COMPLETE:
        raise UserError(f"--candidate {number} did not finish ({cand.state}: {cand.error}); {hint}", field="candidate")

    if cfg.model.weights is None and cfg.model.train is not None:
        why = run.check_tensors(run.base_model, {"recipe": base_recipe(cfg)})
        if why is not None:
            raise UserError(f"the run's trained base model {run.base_model} cannot be used ({why}): run 'automc search' on this run once to rebuild it")
    ctx = build_context(cfg, run, measure_base=False, cache=False, train=False)  # fresh measurements: no cache; writes nothing
    threads = int(cand.timings.get("threads", torch.get_num_threads()))
    recovery = None
    stored_metrics = dict(cand.metrics)
    with torch_threads(threads):
        if recovered:
            recovery, state = run.recovered_state(number)
            threads = int(recovery.get("threads", threads))
            model = ctx.space.apply(ctx.model, cand.params)
            model.load_state_dict(state, strict=True)
            model.eval()
            stored_metrics = dict(recovery["after"])
        else:
            model = materialize(ctx, cand.params)
        if int8:
            model_int8_scheme(model, int8_scheme)  # a scheme the 8-bit layers cannot take is said before measuring
        now: dict[str, float] = dict(ctx.evaluator(model, prepared=True))
    for prof in ctx.profiles:
        now.update({k: float(v) for k, v in prof.measure(model, ctx.example_input).values.items()})
    comparison = {}
    for key, value in now.items():
        stored = stored_metrics.get(key)
        if stored is None:
            continue
        rel = (value - stored) / abs(stored) if stored else (0.0 if value == stored else math.inf)
        comparison[key] = {"stored": float(stored), "measured": float(value), "relative_difference": rel}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x = ctx.example_input
    files = {"onnx": export_onnx(model, x, out / "model.onnx").name}
    int8_info = None
    if int8:
        xv, yv = ctx.evaluator.data()
        int8_info = export_int8_checked(model, x, ctx.evaluator.calibration_batches(), out / "model.int8.onnx", xv, yv, scheme=int8_scheme)
        files["int8_onnx"] = int8_info["file"]
    ds = get_dataset(cfg.data.dataset, cfg.data.data_dir, verify=False)
    card = make_card(
        model={"name": cfg.model.name, "kwargs": dict(cfg.model.kwargs), "num_classes": ds.num_classes, "in_channels": ds.in_channels, "weights": weights_of(cfg, run)},
        input_shape=list(x.shape),
        dataset={"name": ds.name, "split": ctx.evaluator.split.name, "validation_images": ctx.evaluator.samples},
        space=ctx.space,
        space_name=cfg.space.name,
        params=cand.params,
        run={"run_dir": str(run.path.resolve()), "name": cfg.name, "candidate": number, "on_front": number in members, "reward": cand.reward, "threads": threads},
        stored_metrics=stored_metrics,
        measured_metrics=now,
        reproduction={"accuracy_exact": now.get("accuracy") == stored_metrics.get("accuracy"), **comparison},
        training=None if recovery is None else {k: recovery[k] for k in ("key", "recipe", "train", "history", "qat_layers", "adapters", "feature_points", "train_seconds", "device", "before")},
        int8=int8_info,
        files=files,
    )
    save_compressed(out, model, card)
    rebuilt = load_compressed(out)
    with torch.no_grad():
        xb = ctx.evaluator.data()[0][:64]
        card["reload_max_abs_diff"] = float((rebuilt(xb) - model.eval()(xb)).abs().max())
    update_card(out, reload_max_abs_diff=card["reload_max_abs_diff"])  # the check joins the written card
    return card
