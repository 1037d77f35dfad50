from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from automc.compress.analysis import analyze
from automc.compress.quant import calibrate_activations, quant_layers, quantize_layer
from automc.datasets import get_dataset
from automc.errors import UserError
from automc.measure.evaluator import Evaluator, EvaluatorConfig, recalibrate_batchnorm
from automc.models import build_model
from automc.recipes import TrainConfig
from automc.train.distill import stage_points
from automc.train.training import train_classifier


@pytest.fixture(scope="module")
def digits():
    ds = get_dataset("digits")
    return ds.load("train"), ds.load("test")


@pytest.fixture(scope="module")
def trained(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, in_channels=1, kwargs={"width": 8})
    history = train_classifier(model, train, config=TrainConfig(epochs=6), seed=0, threads=1)
    return model, history


def test_training_learns_and_is_deterministic(digits, trained) -> None:
    train, test = digits
    model, history = trained
    assert history[-1] < history[0] / 3
    assert Evaluator(test)(model)["accuracy"] > 0.9
    torch.manual_seed(0)
    again = build_model("small_cnn", num_classes=10, in_channels=1, kwargs={"width": 8})
    assert train_classifier(again, train, config=TrainConfig(epochs=6), seed=0, threads=1) == history


def test_accuracy_and_loss_match_a_direct_computation(digits, trained) -> None:
    _, test = digits
    model, _ = trained
    idx = test.subsets({"val": 100}, seed=3)["val"]
    got = Evaluator(test, idx, config=EvaluatorConfig(batch_size=7))(model)
    x, y = test.tensors(idx)
    with torch.no_grad():
        logits = model(x)
    assert got["samples"] == 100
    assert got["accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert got["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)), rel=1e-5)


def test_evaluation_is_deterministic_for_fixed_threads(digits, trained) -> None:
    train, test = digits
    model, _ = trained
    cal = train.subsets({"calibration": 256}, seed=0)["calibration"]
    cfg = EvaluatorConfig(threads=1, bn_calibration_batches=4)
    a = Evaluator(test, calibration=(train, cal), config=cfg)(model)
    b = Evaluator(test, calibration=(train, cal), config=cfg)(model)
    assert a == b


def test_bn_recalibration_never_touches_the_input_model(digits, trained) -> None:
    train, test = digits
    model, _ = trained
    before = copy.deepcopy(model.state_dict())
    cal = train.subsets({"calibration": 128}, seed=0)["calibration"]
    ev = Evaluator(test, calibration=(train, cal), config=EvaluatorConfig(bn_calibration_batches=2))
    prepared = ev.prepare(model)
    ev(model)
    assert prepared is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    stats = [k for k in before if k.endswith("running_mean")]
    assert any(not torch.equal(prepared.state_dict()[k], before[k]) for k in stats)


def test_recalibration_restores_statistics_after_corruption(digits, trained) -> None:
    train, test = digits
    model, _ = trained
    broken = copy.deepcopy(model)
    for m in broken.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.add_(3.0)
            m.running_var.mul_(10.0)
    ev_plain = Evaluator(test)
    cal = train.subsets({"calibration": 512}, seed=0)["calibration"]
    ev_cal = Evaluator(test, calibration=(train, cal), config=EvaluatorConfig(bn_calibration_batches=8))
    assert ev_plain(broken)["accuracy"] < 0.5
    assert ev_cal(broken)["accuracy"] > ev_plain(model)["accuracy"] - 0.05


def test_recalibrate_keeps_dropout_off() -> None:
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.99))
    out = recalibrate_batchnorm(model, [torch.randn(8, 4)])
    assert not out[1].training and not out[0].training


def test_config_and_calibration_errors(digits) -> None:
    _, test = digits
    with pytest.raises(UserError, match="needs calibration data"):
        Evaluator(test, config=EvaluatorConfig(bn_calibration_batches=2))
    with pytest.raises(UserError, match="batch_size must be >= 1"):
        EvaluatorConfig(batch_size=0)
    with pytest.raises(UserError, match="validation subset is empty"):
        Evaluator(test, np.array([], dtype=int))


def test_channels_last_evaluation_agrees_and_leaves_the_callers_model_alone(digits, trained) -> None:
    """NHWC (oneDNN's faster layout) is used when the model accepts it: same accuracy and loss
    up to float rounding, and the caller's model keeps its NCHW weights."""
    _, test = digits
    model, _ = trained
    auto, nchw = Evaluator(test), Evaluator(test, config=EvaluatorConfig(channels_last=False))
    a, b = auto(model), nchw(model)
    assert auto._nhwc is True and nchw._nhwc is False
    assert abs(a["accuracy"] - b["accuracy"]) <= 1 / len(test) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())

    class UnfoldConv(torch.nn.Module):  # a hand-written convolution: weight.view() needs NCHW strides
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.weight = torch.nn.Parameter(torch.randn(4, 4, 3, 3) * 0.1)
            self.fc = torch.nn.Linear(4, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            cols = torch.nn.functional.unfold(h, 3, padding=1)  # (n, 4·9, 64)
            h = (self.weight.view(4, -1) @ cols).mean(-1)
            return self.fc(h)

    ev = Evaluator(test)
    assert 0.0 <= ev(UnfoldConv())["accuracy"] <= 1.0 and ev._nhwc is False  # fell back to NCHW

    class Flatten(torch.nn.Module):  # view(n, -1) over feature maps: fine in NCHW
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 8 * 8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).view(x.size(0), -1))

    # one-channel images come in canonical NCHW strides (once, they kept NHWC ones and this crashed)
    assert test.tensors()[0].stride() == (64, 64, 8, 1)
    ev = Evaluator(test)
    assert 0.0 <= ev(Flatten())["accuracy"] <= 1.0 and ev._nhwc is False



def test_measurements_keep_every_modules_training_flag(digits, trained) -> None:
    """A model in training whose BatchNorm layers the user froze (eval mode) comes back from
    evaluation, cost analysis, activation calibration and the distiller's stage probe with
    its BatchNorm layers still frozen and everything else still training."""
    _, test = digits
    model = copy.deepcopy(trained[0]).train()
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d))
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, quantize_layer(conv, 8, 8))
    frozen = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert frozen and quant_layers(model)
    for m in frozen:
        m.eval()
    modes = {n: m.training for n, m in model.named_modules()}
    assert any(modes.values()) and not all(modes.values())
    x, _ = test.tensors(np.arange(8))

    Evaluator(test)(model, prepared=True)
    analyze(model, x[:1])
    calibrate_activations(model, [x])
    stage_points(model, x[:1])
    assert {n: m.training for n, m in model.named_modules()} == modes
