"""The ``device: auto | cpu | cuda`` setting: where evaluation, BN recalibration and recovery
run. The CPU is the tested default; a missing GPU is a one-line error before anything runs;
on a machine with a GPU the CUDA path must give the CPU's figures (the GPU tests run there)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from automc.config import parse_config
from automc.search.context import build_context, materialize
from automc.train.recovery import recover
from tests.conftest import assert_user_error, run_cli
from tests.search_support import TINY

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU visible to torch")


@pytest.mark.one_pass
def test_recovery_runs_where_the_experiment_runs_unless_its_section_says() -> None:
    inherit = parse_config({**TINY, "device": "auto", "finetune": {"epochs": 1}})
    assert inherit.device == "auto" and inherit.finetune is not None and inherit.finetune.device == "auto"
    own = parse_config({**TINY, "device": "auto", "finetune": {"epochs": 1, "device": "cpu"}})
    assert own.finetune is not None and own.finetune.device == "cpu"
    assert parse_config(TINY).device == "cpu"


@pytest.mark.one_pass
def test_an_unknown_device_is_one_line_naming_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY, "device": "gpu"}))
    assert_user_error(run_cli("search", str(path), "--run-dir", str(tmp_path / "run")), "device", "cuda")


@pytest.mark.one_pass
@NO_GPU
def test_cuda_without_a_gpu_is_one_line_before_the_search(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY, "device": "cuda"}))
    assert_user_error(run_cli("search", str(path), "--run-dir", str(tmp_path / "run")), "device: cuda is not available here")
    assert not (tmp_path / "run" / "study.db").exists()
    out = run_cli("evaluate", "--model", "small_cnn", "--dataset", "digits", "--device", "cuda")
    assert_user_error(out, "--device: cuda is not available here")


@GPU
def test_cuda_evaluation_and_recovery_give_the_cpu_figures(tmp_path: Path) -> None:
    exp = {**TINY, "model": {**TINY["model"], "kwargs": {"width": 8}}, "space": {"name": "joint", "config": {"precision": {"bits": [4, 8]}}}}
    cpu = build_context(parse_config(exp), tmp_path / "cpu")
    gpu = build_context(parse_config({**exp, "device": "cuda"}), tmp_path / "gpu")
    params = {k: (0.5 if k.endswith(":ratio") else 4) for k in cpu.space.dimensions}
    assert any(k.endswith(":w_bits") for k in params)
    a, b = materialize(cpu, params), materialize(gpu, params)
    assert next(b.parameters()).device.type == "cpu"  # models leave the evaluator on the CPU
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-5 * float(x.abs().max()) + 1e-8), name
    ra, rb = cpu.evaluator(a, prepared=True), gpu.evaluator(b, prepared=True)
    # a flipped argmax on a near-tie is the only difference float rounding may make
    assert abs(ra["accuracy"] - rb["accuracy"]) * ra["samples"] <= 2 and abs(ra["loss"] - rb["loss"]) < 1e-3 * max(1.0, ra["loss"])
    ft = parse_config({**exp, "device": "cuda", "finetune": {"epochs": 1, "batch_size": 64}}).finetune
    assert ft is not None
    ds = gpu.evaluator.split
    idx = np.setdiff1d(np.arange(len(ds)), gpu.evaluator.indices)
    done = recover(copy.deepcopy(b), copy.deepcopy(gpu.model), ds, idx, cfg=ft, example_input=gpu.example_input, seed=0)
    assert next(done.model.parameters()).device.type == "cpu" and done.qat_layers
    assert gpu.evaluator(done.model, prepared=True)["accuracy"] > 0.1
