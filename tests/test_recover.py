"""Recovery (automc.recover): KD fine-tuning beats BN recalibration, adapters for pruned
widths, QAT keeps the compression (bit-widths, grids, sparsity) and the int8 export still
agrees, a killed recovery resumes to the very same weights, and results join the run record."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from automc.compress.int8 import resolve_scheme
from automc.compress.quant import QuantMixin, linear_weight_scale, quant_layers
from automc.config import FinetuneConfig, parse_config
from automc.run import RunDir
from automc.search.context import build_context, materialize
from automc.train.distill import Distiller, stage_points
from automc.train.qat import finish_qat, prepare_qat
from automc.train.recovery import recover
from tests.conftest import REPO, assert_user_error, run_cli
from tests.search_support import TINY

# a model wide enough that pruning hurts and training can recover it
DIGITS = {**TINY, "name": "rec", "model": {"name": "small_cnn", "kwargs": {"width": 8}, "train": {"epochs": 6}}, "data": {"dataset": "digits", "calibration_batches": 2, "validation": 300}}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - a Context
    return build_context(parse_config(DIGITS), tmp_path_factory.mktemp("rec"))


def _train(ctx):  # noqa: ANN001, ANN202
    ds = ctx.evaluator.split  # digits: evaluation split; leave the validation images out
    idx = np.setdiff1d(np.arange(len(ds)), ctx.evaluator.indices)
    return ds, idx


def _recover(ctx, student, **ft):  # noqa: ANN001, ANN003, ANN202
    ds, idx = _train(ctx)
    cfg = FinetuneConfig(**{"epochs": 3, "lr": 0.02, "batch_size": 64, **ft})
    import copy

    return recover(student, copy.deepcopy(ctx.model), ds, idx, cfg=cfg, example_input=ctx.example_input, seed=0)


def test_kd_recovery_of_a_pruned_model_beats_bn_recalibration(ctx) -> None:  # noqa: ANN001
    params = {k: 0.3 for k in ctx.space.dimensions}  # keep 30% of the channels everywhere
    bn_only = ctx.evaluator(materialize(ctx, params), prepared=True)["accuracy"]
    done = _recover(ctx, materialize(ctx, params), distill={"kinds": ["response"]})
    after = ctx.evaluator(done.model, prepared=True)["accuracy"]
    base = ctx.reference["accuracy"]
    assert after > bn_only + 0.05, (bn_only, after, base)
    assert [int(h["epoch"]) for h in done.history] == [1, 2, 3]
    assert done.history[-1]["loss"] < done.history[0]["loss"]


def test_feature_adapters_match_the_pruned_widths(ctx) -> None:  # noqa: ANN001
    params = {k: 0.5 for k in ctx.space.dimensions}
    student = materialize(ctx, params)
    points = stage_points(ctx.model, ctx.example_input)
    assert points, "a CNN has stage outputs"
    d = Distiller(ctx.model, student, ctx.example_input, kinds=["feature", "relation"], temperature=4, alpha=0.5, feature_weight=1, relation_weight=10, relation="similarity", layers=None)
    shapes = d.adapter_shapes()
    assert shapes, "pruned stages get adapters"
    for point, (sc, tc) in shapes.items():
        assert sc < tc
        assert student.get_submodule(point) is not None
    x, y = ctx.evaluator.data()
    loss, terms = d(student, x[:32], y[:32])
    loss.backward()
    assert {"ce", "feature", "relation", "loss"} <= set(terms) and all(np.isfinite(list(terms.values())))
    assert all(a.weight.grad is not None for a in d.adapters.values())
    # unpruned widths need none
    same = Distiller(ctx.model, materialize(ctx, {k: 1.0 for k in ctx.space.dimensions}), ctx.example_input, kinds=["feature"], temperature=4, alpha=0.5, feature_weight=1, relation_weight=0, relation="similarity", layers=None)
    assert same.adapter_shapes() == {}


def _grid_ok(layer: QuantMixin) -> bool:
    w = layer.weight.detach()
    if layer.weight_quantizer == "kmeans":
        return int(torch.unique(w).numel()) <= 2**layer.w_bits
    if layer.w_bits >= 8:
        scale, _ = linear_weight_scale(w, layer.w_bits, resolve_scheme(layer.int8_scheme).weight_qmax)
        q = w / scale
        return bool(torch.allclose(q, q.round(), atol=1e-3))
    return all(int(torch.unique(w[c]).numel()) <= 2**layer.w_bits - 1 for c in range(w.shape[0]))


@pytest.mark.parametrize("quantizer", ["linear", "kmeans"])
def test_qat_keeps_bit_widths_and_grids(tmp_path: Path, quantizer: str) -> None:
    cfg = {**DIGITS, "space": {"name": "mixed_precision", "config": {"bits": [3, 4, 8], "weight_quantizer": quantizer}}}
    c = build_context(parse_config(cfg), tmp_path)
    dims = list(c.space.dimensions)
    params = {k: (3 if i % 2 else 4) if k.endswith(":w_bits") else 8 for i, k in enumerate(dims)}
    student = materialize(c, params)
    before = {n: (m.w_bits, m.a_bits, m.weight.detach().clone()) for n, m in quant_layers(student).items()}
    done = _recover(c, student, distill={"kinds": ["response"]})
    after = quant_layers(done.model)
    assert set(after) == set(before) and done.qat_layers
    for name, layer in after.items():
        assert (layer.w_bits, layer.a_bits) == before[name][:2]
        assert _grid_ok(layer), name
    assert any(not torch.equal(after[n].weight, before[n][2]) for n in after), "training changed the weights"


def test_qat_masks_keep_sparsity_and_int8_export_agrees(tmp_path: Path) -> None:
    from automc.results.int8_onnx import export_int8_checked

    sparse = build_context(parse_config({**DIGITS, "space": {"name": "sparsity"}}), tmp_path / "s")
    student = materialize(sparse, {k: 0.4 for k in sparse.space.dimensions})
    zeros = {n: (m.weight == 0) for n, m in student.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    done = _recover(sparse, student)
    for n, m in done.model.named_modules():
        if n in zeros:
            assert torch.equal(m.weight == 0, zeros[n]), n  # the same weights stay pruned, no more
    eight = build_context(parse_config({**DIGITS, "space": {"name": "mixed_precision", "config": {"bits": [8]}}}), tmp_path / "q")
    done = _recover(eight, materialize(eight, {k: 8 for k in eight.space.dimensions}))
    from automc.compress.quant import calibrate_activations

    calibrate_activations(done.model, eight.evaluator.calibration_batches())
    x, y = eight.evaluator.data()
    info = export_int8_checked(done.model, eight.example_input, eight.evaluator.calibration_batches(), tmp_path / "m.int8.onnx", x, y)
    assert info["top1_agreement_with_pytorch"] >= 0.99, info


def test_prepare_and_finish_qat_is_the_identity_on_untrained_weights(ctx) -> None:  # noqa: ANN001
    student = materialize(ctx, {k: 0.5 for k in ctx.space.dimensions})
    x = ctx.evaluator.data()[0][:16]
    with torch.no_grad():
        ref = student(x)
    prepare_qat(student)
    finish_qat(student)
    with torch.no_grad():
        assert torch.equal(student(x), ref)


def _finished_run(tmp_path: Path, finetune: dict | None = None) -> tuple[Path, Path]:
    cfg = {**DIGITS, "budget": {"candidates": 4}}
    if finetune is not None:
        cfg["finetune"] = finetune
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    out = run_cli("search", str(path), "--run-dir", str(run), "--json", "--no-report")
    assert out.returncode == 0, out.stderr
    return path, run


def test_search_recovers_its_finalists_and_a_rerun_reads_them_back(tmp_path: Path) -> None:
    path, run = _finished_run(tmp_path, {"candidates": "best", "epochs": 2, "batch_size": 64})
    results = list((run / "recovery").glob("*/result.json"))
    assert len(results) == 1
    r = json.loads(results[0].read_text())
    assert len(r["history"]) == 2 and r["after"]["accuracy"] > 0 and r["train"]["images"] > 0
    stamp = results[0].stat().st_mtime_ns
    again = run_cli("search", str(path), "--run-dir", str(run), "--json", "--no-report")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["evaluated_now"] == 0 and summary["recovered"][0]["number"] == r["number"]
    assert results[0].stat().st_mtime_ns == stamp  # read back, not trained again
    # plain cross-entropy on the same candidate is another recipe: another folder
    ce = run_cli("finetune", str(run), "--candidate", str(r["number"]), "--epochs", "2", "--batch-size", "64", "--distill", "none", "--json")
    assert ce.returncode == 0, ce.stderr
    assert len(list((run / "recovery").glob("*/result.json"))) == 2
    # the report shows both recoveries, the export writes the latest one's weights
    rep = run_cli("report", str(run), "--json")
    assert rep.returncode == 0, rep.stderr
    report = json.loads((run / "report" / "report.json").read_text())
    assert [x["number"] for x in report["recovered"]] == [r["number"]] * 2
    assert {x["how"].split("KD ")[1] for x in report["recovered"]} == {"response", "none"}
    assert "Recovered finalists" in (run / "report" / "report.html").read_text()
    ex = run_cli("export", str(run), "--candidate", str(r["number"]), "--recovered", "--out", str(tmp_path / "ex"), "--json")
    assert ex.returncode == 0, ex.stderr
    card = json.loads(ex.stdout)
    assert card["reproduction"]["accuracy_exact"] and card["training"]["recipe"]["distill"] is None
    assert card["measured_metrics"]["accuracy"] == json.loads(ce.stdout)["recovered"][0]["after"]["accuracy"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_finetune_on_cuda_without_a_gpu_is_one_line_before_the_search(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**DIGITS, "finetune": {"device": "cuda"}}))
    out = run_cli("search", str(path), "--run-dir", str(tmp_path / "run"))
    assert_user_error(out, "finetune.device: cuda is not available here")
    assert not (tmp_path / "run" / "study.db").exists()


def test_a_killed_recovery_resumes_to_the_same_weights(tmp_path: Path) -> None:
    _, run = _finished_run(tmp_path)
    import shutil

    twin = tmp_path / "twin"
    shutil.copytree(run, twin)
    args = ["--best", "--epochs", "4", "--batch-size", "16", "--json"]
    ref = run_cli("finetune", str(twin), *args)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen([sys.executable, "-m", "automc", "finetune", str(run), *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(run.glob("recovery/*/checkpoint.pt.meta.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(run.glob("recovery/*/checkpoint.pt")) and not list(run.glob("recovery/*/result.json")), "killed mid-recovery"
    out = run_cli("finetune", str(run), *args)
    assert out.returncode == 0, out.stderr
    resumed, reference = json.loads(out.stdout)["recovered"][0], json.loads(ref.stdout)["recovered"][0]
    assert resumed["resumed_at_epoch"] >= 1
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in reference["history"]]
    assert resumed["after"]["accuracy"] == reference["after"]["accuracy"]
    a = RunDir(run).load_tensors(next(run.glob("recovery/*/model.pt")))
    b = RunDir(twin).load_tensors(next(twin.glob("recovery/*/model.pt")))
    assert all(torch.equal(a[k], b[k]) for k in b)
