"""Every zoo model, and models written without automc in mind, through every search space:
conformance, ONNX and int8 export — no crash, and locked groups reported instead."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest
import torch

from automc.errors import UserError
from automc.results.int8_onnx import export_int8
from automc.results.onnx import export_onnx, run_onnx
from automc.models import build_model, model_names
from automc.compress.spaces import build_space
from automc.testing import check_search_space, outputs_close
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from tests.conftest import run_cli
from tests.user_models import head_vit, shuffle_block_net, tiny_vit

# Cheaper settings for the conformance run (the architecture is the same family).
SMALL = {
    "mobilenetv1": {"width_mult": 0.25},
    "mobilenetv2": {"width_mult": 0.35},
    "squeezenet": {"width_mult": 0.5},
    "ghostnet": {"width_mult": 0.5},
    "densenet_bc": {"depth": 22},
    "resnet110": None,  # resnet20's family; skipped for time
    "resnet44": None,
    "resnet56": None,
}
SPACES = ("channel_pruning", "sparsity", "mixed_precision", "joint", "elastic")


def _model(name: str) -> tuple[torch.nn.Module, torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    channels, size = (1, 8) if name == "small_cnn" else (3, 32)
    model = build_model(name, num_classes=10, in_channels=channels, kwargs=SMALL.get(name) or {}).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics, as in a trained model
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    x = torch.randn(3, channels, size, size, generator=gen)
    return model, x, [torch.randn(8, channels, size, size, generator=gen)]


ZOO = [n for n in sorted(model_names()) if SMALL.get(n, {}) is not None]


def test_the_lightweight_families_are_in_the_zoo() -> None:
    assert {"mobilenetv1", "squeezenet", "shufflenetv2", "ghostnet", "densenet_bc"} <= set(model_names())


@pytest.mark.parametrize("name", ["mobilenetv1", "squeezenet", "shufflenetv2", "ghostnet", "densenet_bc"])
@pytest.mark.parametrize(("channels", "size"), [(3, 32), (1, 28), (1, 8)])
def test_lightweight_families_run_on_cifar_mnist_and_digits_inputs(name: str, channels: int, size: int) -> None:
    model = build_model(name, num_classes=7, in_channels=channels).eval()
    with torch.no_grad():
        assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_passes_every_space(name: str, space: str) -> None:
    model, x, calib = _model(name)
    check_search_space(build_space(space, model, x[:1], calibration=calib), model, x)


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_exports_quietly_to_onnx_and_int8(name: str, tmp_path: Path) -> None:
    model, x, calib = _model(name)
    pruning = build_space("channel_pruning", model, x[:1], calibration=calib)
    pruned = pruning.apply(model, pruning.sample(np.random.default_rng(0)))
    joint = build_space("joint", model, x[:1], calibration=calib)
    params = joint.sample(np.random.default_rng(0))
    params.update({k: 8 for k in params if k.endswith("_bits")})
    quantised = joint.apply(model, params)
    err = io.StringIO()
    with redirect_stderr(err):
        path = export_onnx(pruned, x[:1], tmp_path / "m.onnx")
        info = export_int8(quantised, x[:1], calib, tmp_path / "m.int8.onnx")
    assert err.getvalue() == ""
    with torch.no_grad():  # float graph = PyTorch up to float rounding
        assert outputs_close(torch.from_numpy(run_onnx(path, x)), pruned(x))
    assert info["quantized_nodes"] > 0
    assert run_onnx(tmp_path / "m.int8.onnx", x).shape == (3, 10)


@pytest.mark.parametrize("factory", [shuffle_block_net, tiny_vit, head_vit])
def test_shuffle_block_and_transformer_prune_with_random_policies(factory, capfd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The issue's must-show: split + shuffle and multi-head attention; random policies give a
    running model of the right shape, and the groups that cannot be pruned are reported."""
    torch.manual_seed(0)
    model, x = factory().eval(), torch.randn(4, 3, 16, 16)
    sp = ChannelPruningSpace(model, x[:1])
    assert sp.dimensions and sp.locked, "expected some prunable and some locked groups"
    notes = sp.locked_notes()
    assert len(notes) == len(sp.locked) and all("\n" not in n for n in notes)
    for seed in range(3):
        pruned = sp.apply(model, sp.sample(np.random.default_rng(seed)))
        with torch.no_grad():
            y = pruned(x)
        assert y.shape == (4, 10) and torch.isfinite(y).all()
    check_search_space(sp, model, x)
    capfd.readouterr()
    export_onnx(sp.apply(model, sp.uniform(0.5)), x[:1], tmp_path / "m.onnx")
    out, err = capfd.readouterr()
    assert out == "" and err == "", "ONNX export printed something"


def test_the_zoo_shufflenet_locks_its_shuffled_groups_and_prunes_its_branches() -> None:
    model, x, _ = _model("shufflenetv2")
    sp = ChannelPruningSpace(model, x[:1])
    dims = {d.split(":")[0] for d in sp.dimensions}
    # free: the stem (feeds a stride-2 unit, no split), each branch's inner 1×1 → depthwise
    # group, and the last conv (feeds only the classifier)
    assert {"stem.0", "conv_last.0", "stages.1.branch2.0"} <= dims
    # locked: branch outputs, which the concat + shuffle interleave into the next split
    locked = {g["group"] for g in sp.locked}
    assert "stages.1.branch2.5" in locked and not locked & dims
    y = sp.apply(model, sp.uniform(0.5))(x)
    assert y.shape == (3, 10)


@pytest.mark.one_pass
def test_a_failed_export_is_one_line_naming_the_op(tmp_path: Path) -> None:
    class Svd(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.svd(x.flatten(1)).S

    with pytest.raises(UserError, match="aten::linalg_svd") as info:
        export_onnx(Svd(), torch.randn(1, 3, 4, 4), tmp_path / "svd.onnx")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)


@pytest.mark.one_pass
def test_apply_prints_how_many_groups_were_locked_and_why(tmp_path: Path) -> None:
    proc = run_cli(
        "apply", "--model", "tests.user_models:shuffle_block_net", "--dataset", "digits", "--model-arg", "in_channels=1",
        "--space", "channel_pruning", "--uniform", "0.5", "--out", str(tmp_path), "--bn-calibration", "2", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["locked_groups"] and all("stem" in n or "branch" in n for n in r["locked_groups"])
    card = json.loads((tmp_path / "compression.json").read_text())
    assert card["space"]["locked_groups"] == r["locked_groups"]
