"""The ``elastic`` space (OFA's elastic depth, kernel and width over a pretrained network) and
``joint`` with ``elastic:``: which blocks qualify, what dropping and shrinking compute, exact
analytic cost, one candidate per distinct model, and a resumable search."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.compress.quant import QuantConv2d
from automc.compress.spaces import build_space
from automc.errors import UserError
from automc.models import build_model
from automc.search.cost_model import CostModel
from automc.search_spaces.blocks import residual_form, shrink_kernel
from automc.testing import check_search_space
from tests.conftest import run_cli
from tests.search_support import TINY, write_config
from tests.user_models import residual_cnn

CIFAR = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
DIGITS = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def _resnet20() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    with torch.no_grad():  # non-trivial BN statistics, as in a trained model
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_resnet_stages_and_mobilenet_groups_are_recognised() -> None:
    sp = build_space("elastic", _resnet20(), CIFAR[:1])
    depth = {k: (d.low, d.high) for k, d in sp.dimensions.items() if k.endswith(":depth")}
    assert depth == {"layer1:depth": (1, 3), "layer2:depth": (1, 3), "layer3:depth": (1, 3)}
    assert sp.dimensions["layer2:depth"].info["block_names"] == ["layer2.0", "layer2.1", "layer2.2"]
    mb = build_space("elastic", build_model("mobilenetv2", kwargs={"width_mult": 0.5}).eval(), CIFAR[:1], config={"width": False})
    # the first block of each MobileNetV2 group changes shape (not droppable) and starts a stage
    assert {k: (d.low, d.high) for k, d in mb.dimensions.items()} == {
        "features.2:depth": (1, 2), "features.4:depth": (1, 3), "features.7:depth": (1, 4),
        "features.11:depth": (1, 3), "features.14:depth": (1, 3),
    }


def test_dropping_a_block_is_the_block_without_its_branch() -> None:
    model = _resnet20()
    sp = build_space("elastic", model, CIFAR[:1], config={"width": False})
    params = {**sp.default_params(), "layer1:depth": 1, "layer3:depth": 2}
    dropped = sp.apply(model, params)
    assert isinstance(dropped.layer1[1], nn.Identity) and isinstance(dropped.layer3[2], nn.Identity)
    assert not isinstance(dropped.layer3[1], nn.Identity) and not isinstance(model.layer1[1], nn.Identity)
    silenced = build_model("resnet20").eval()
    silenced.load_state_dict(model.state_dict())
    with torch.no_grad():  # zero the residual branch of exactly those blocks
        for block in (silenced.layer1[1], silenced.layer1[2], silenced.layer3[2]):
            block.bn2.weight.zero_()
            block.bn2.bias.zero_()
        torch.testing.assert_close(dropped(CIFAR), silenced(CIFAR), rtol=1e-5, atol=1e-5 * float(silenced(CIFAR).abs().max()))
        torch.testing.assert_close(sp.apply(model, sp.default_params())(CIFAR), model(CIFAR), rtol=0, atol=0)


def test_user_blocks_follow_the_documented_rules() -> None:
    model = residual_cnn().eval()
    sp = build_space("elastic", model, DIGITS[:1], config={"width": False})
    dims = {k: d for k, d in sp.dimensions.items()}
    assert (dims["stage1:depth"].low, dims["stage1:depth"].high) == (1, 3)  # empty-Sequential shortcuts: identity
    # the projected block starts a stage; the untraceable one stays (and starts its own)
    assert dims["stage2.0:depth"].info["block_names"] == ["stage2.0", "stage2.1", "stage2.2"]
    assert [n for n in sp.locked_notes()] == ["stage2.3: not recognised as a residual block (torch.fx cannot trace it (TypeError)); it stays"]
    assert {k for k in dims if k.endswith(":kernel")} == {"stem.0:kernel", "stage1.0.dw:kernel", "stage1.1.dw:kernel", "stage1.2.dw:kernel", "stage2.1.dw:kernel", "stage2.2.dw:kernel"}
    assert residual_form(model.stage2[0]) == "its shortcut is not the identity"
    assert residual_form(nn.Sequential(nn.Conv2d(3, 3, 1))) == "its output is not a sum of its input and a branch"


def test_a_shrunk_kernel_is_the_centre_of_the_big_one() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 5, stride=2, padding=2, bias=True)
    with torch.no_grad():  # nothing outside the centred 3×3: the shrunk conv computes the same
        ring = torch.ones(5, 5, dtype=torch.bool)
        ring[1:4, 1:4] = False
        conv.weight[:, :, ring] = 0
    x = torch.randn(2, 4, 9, 9)
    small = shrink_kernel(conv, 3)
    assert small.kernel_size == (3, 3) and small.padding == (1, 1) and small.stride == (2, 2)
    torch.testing.assert_close(small(x), conv(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "residual_cnn"])
def test_the_analytic_cost_is_exact(name: str) -> None:
    model = {"resnet20": _resnet20, "mobilenetv2": lambda: build_model("mobilenetv2", kwargs={"width_mult": 0.5}).eval(), "residual_cnn": lambda: residual_cnn().eval()}[name]()
    x = DIGITS[:1] if name == "residual_cnn" else CIFAR[:1]
    sp = build_space("elastic", model, x)
    rng = np.random.default_rng(3)

    def layers(net: nn.Module, metric: str) -> float:  # the cost model's scope: conv and linear layers
        return float(sum(getattr(layer, metric) for layer in analyze(net, x).layers))

    # MACs exactly; parameters up to the biases, which the cost model scales like the weights
    biases = sum(m.bias.numel() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None)
    for metric in ("macs", "params"):
        cost = CostModel(sp, metric)
        slack = 1e-9 if metric == "macs" else biases / layers(model, metric)
        for _ in range(4):
            params = sp.sample(rng)
            assert cost(params) == pytest.approx(layers(sp.apply(model, params), metric) / layers(model, metric), abs=slack, rel=1e-9)


def test_knobs_inside_a_dropped_block_do_not_make_a_new_candidate() -> None:
    model = _resnet20()
    sp = build_space("elastic", model, CIFAR[:1])
    short = {**sp.default_params(), "layer2:depth": 1}
    inner = {**short, "layer2.2.conv1:ratio": 0.5}  # a group inside the dropped layer2.2
    assert sp.canonical(inner) == sp.canonical(short)
    assert sp.canonical({**short, "layer2.0.conv1:ratio": 0.5}) != sp.canonical(short)
    assert sp.canonical({**sp.default_params(), "layer2.2.conv1:ratio": 0.5}) != sp.canonical(sp.default_params())


def test_joint_composes_pruning_depth_and_precision() -> None:
    model = _resnet20()
    sp = build_space("joint", model, CIFAR[:1], calibration=[CIFAR], config={"elastic": {"kernel": False}})
    assert {"layer1:depth", "layer1.0.conv1:ratio", "layer1.2.conv2:w_bits"} <= set(sp.dimensions)
    params = {**sp.uniform("0.6,6"), "layer1:depth": 2}
    out = sp.apply(model, params)
    assert isinstance(out.layer1[2], nn.Identity) and isinstance(out.layer1[1].conv1, QuantConv2d)
    assert out.layer1[1].conv1.w_bits == 6 and out(CIFAR).shape == (2, 10)
    assert build_space("joint", model, CIFAR[:1]).config() == {"pruning": sp.pruning.config(), "precision": sp.precision.config()}
    check_search_space(sp, model, CIFAR)


@pytest.mark.parametrize("model_name", ["resnet20", "residual_cnn"])
def test_elastic_with_precision_passes_the_conformance_suite(model_name: str) -> None:
    model, x = (_resnet20(), CIFAR) if model_name == "resnet20" else (residual_cnn().eval(), DIGITS)
    check_search_space(build_space("elastic", model, x[:1], calibration=[x], config={"precision": True}), model, x)


@pytest.mark.one_pass
def test_bad_settings_are_one_line_naming_the_field() -> None:
    model = _resnet20()
    for config, field in (({"depth": "yes"}, "depth"), ({"min_depth": -1}, "min_depth"), ({"width": 3}, "width")):
        with pytest.raises(UserError) as exc:
            build_space("elastic", model, CIFAR[:1], config=config)
        assert exc.value.field == field
    with pytest.raises(UserError, match="found nothing to change"):
        build_space("elastic", build_model("small_cnn", kwargs={"width": 4}), DIGITS[:1], config={"width": False})
    with pytest.raises(UserError, match="all off"):
        build_space("joint", model, CIFAR[:1], config={"pruning": False, "precision": False})


@pytest.mark.one_pass
def test_an_elastic_search_runs_and_resumes(tmp_path) -> None:  # noqa: ANN001
    cfg = {
        **TINY,
        "name": "elastic",
        "model": {"name": "tests.user_models:residual_cnn", "train": {"epochs": 2}},
        "space": {"name": "elastic"},
        "reward": {"name": "accuracy"},
        "budget": {"candidates": 4},
    }
    path, run = write_config(tmp_path, cfg), tmp_path / "run"
    first = run_cli("search", str(path), "--run-dir", str(run), "--json", "--no-report")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["finished"] == 4
    again = json.loads(run_cli("search", str(path), "--run-dir", str(run), "--json", "--no-report").stdout)
    assert again["finished"] == 4 and again["evaluated_now"] == 0
