"""The ``architecture`` space (MNasNet's factorized form): its networks, their analytic cost,
the conformance suites, the controller's tokens, and searches that train every candidate on
the proxy task — cached by architecture, resumable, exported exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from automc.compress.analysis import analyze
from automc.compress.spaces import build_space
from automc.config import Objective, parse_config
from automc.errors import UserError
from automc.models.mobilenetv2 import mobilenetv2
from automc.models.small_cnn import small_cnn
from automc.run import RunDir
from automc.search.agent import build_agent
from automc.search.context import build_context, materialize
from automc.search.gym_env import CompressionEnv
from automc.search.store import Store
from automc.testing import check_agent, check_search_space
from tests.conftest import assert_user_error, run_cli
from tests.search_support import write_config

CIFAR = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
DIGITS = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
OBJECTIVES = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]

ARCH = {
    "name": "arch",
    "seed": 0,
    "model": {"name": "small_cnn", "kwargs": {"width": 4}, "train": {"epochs": 2}},
    "data": {"dataset": "digits", "calibration_batches": 2, "validation": 200},
    "space": {"name": "architecture", "config": {"width": 0.5, "choices": {"width": [0.5, 1.0], "layers": [-1, 0]}}},
    "proxy": {"epochs": 3, "train_images": 600, "batch_size": 64},
    "profiles": [{"name": "flops"}],
    "reward": {"name": "accuracy"},
    "agent": {"name": "random"},
    "budget": {"candidates": 3},
}


def _space(width: float = 1.0, **config):  # noqa: ANN001, ANN202
    return build_space("architecture", mobilenetv2(width_mult=width or 1.0), CIFAR[:1], config={"width": width, **config})


@pytest.mark.parametrize("width", [1.0, 0.5])
def test_the_default_policy_is_mobilenetv2_and_the_cost_is_analytic(width: float) -> None:
    base = mobilenetv2(width_mult=width).eval()
    sp = _space(width)
    net = sp.apply(base, sp.default_params())
    built, ref = analyze(net, CIFAR[:1]), analyze(base, CIFAR[:1])
    assert (built.macs, built.params) == (ref.macs, ref.params)
    assert [type(m).__name__ for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)].count("Conv2d") == sum(isinstance(m, torch.nn.Conv2d) for m in base.modules())
    rng = np.random.default_rng(1)
    for _ in range(6):  # every op, kernel, SE ratio, width and depth: the estimate is exact
        p = sp.sample(rng)
        stats = analyze(sp.apply(base, p), CIFAR[:1])
        assert sp.analytic_cost(p, "macs") == stats.macs and sp.analytic_cost(p, "params") == stats.params


def test_the_space_passes_the_conformance_suite_on_cifar_and_digits_inputs() -> None:
    check_search_space(_space(0.5), mobilenetv2(width_mult=0.5), CIFAR)
    digits = small_cnn(num_classes=10, in_channels=1).train()
    sp = build_space("architecture", digits, DIGITS[:1])
    assert digits.training  # building the space left the reference model's mode alone
    assert sp.backbone == "small" and sp.config()["backbone"] == "small"
    check_search_space(sp, digits, DIGITS)


def test_policies_that_build_the_same_network_are_one_architecture() -> None:
    sp = _space(0.5)
    default = sp.default_params()
    # group 0 has one layer from 16 to 8 channels: no skip possible, no layer to drop
    assert sp.canonical({**default, "stages.0:skip": "none"}) == sp.canonical(default)
    assert sp.canonical({**default, "stages.0:layers": -1}) == sp.canonical(default)
    assert sp.canonical({**default, "stages.1:skip": "none"}) != sp.canonical(default)  # its second layer had one
    assert sp.canonical({**default, "stages.1:kernel": 5}) != sp.canonical(default)


@pytest.mark.one_pass
@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"choices": {"op": ["conv", "mbconv9"]}}, "choices.op has 'mbconv9': allowed are one of conv"),
        ({"choices": {"kernels": [3]}}, "choices has unknown knob 'kernels'"),
        ({"choices": {"kernel": [3, 3]}}, "choices.kernel repeats a value"),
        ({"backbone": "resnet"}, "backbone must be one of auto, mobilenetv2, small"),
        ({"width": 0}, "width must be a multiplier in (0, 4]"),
        ({"dropout": "0.2"}, "dropout must be a probability in [0, 1)"),
    ],
)
def test_bad_settings_are_one_line_naming_the_setting(config: dict, needle: str) -> None:
    with pytest.raises(UserError) as info:
        _space(**config)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_the_controller_emits_one_token_per_decision_each_value_equally_likely() -> None:
    sp = _space(0.5)
    env = CompressionEnv(sp, tokens=11)
    sizes = [len(d.values) for d in sp.dimensions.values()]
    assert env.action_space.n == math.lcm(*sizes) == 30  # 5 ops, 3 kernels, 2 SE, 2 skips, 5 widths, 3 depths
    env.reset()
    for name in env.names:  # each value is named by the same number of tokens
        d = sp.dimensions[name]
        counts = {v: 0 for v in d.values}
        for token in range(env.action_space.n):
            counts[d.from_unit(env.token_unit(token))] += 1
        assert set(counts.values()) == {env.action_space.n // len(d.values)}, name
        env.step(0)


@pytest.mark.one_pass
def test_a_gaussian_token_prior_is_refused_for_choices() -> None:
    """The middle token of an operation or kernel choice is no better a start than any other."""
    with pytest.raises(UserError, match="token_prior 'gaussian' favours the middle token"):
        build_agent("mnas-controller", _space(0.5), OBJECTIVES, seed=0, config={"token_prior": "gaussian"})
    controller = build_agent("mnas-controller", _space(0.5), OBJECTIVES, seed=0)
    try:  # by default: uniform, as MNasNet's
        assert controller.prior() == "uniform" and not controller.model.policy.action_net.bias.any()
    finally:
        controller.close()


@pytest.mark.parametrize("name", ["random", "optuna-tpe", "mnas-controller", "ddpg"])
def test_agents_pass_the_agent_suite_on_the_architecture_space(name: str) -> None:
    sp = _space(0.5)
    config = {"mnas-controller": {"episodes_per_update": 2}, "ddpg": {"warmup_episodes": 3}}.get(name)
    check_agent(lambda: build_agent(name, sp, OBJECTIVES, seed=3, config=config), sp, candidates=8)


def test_a_search_trains_each_architecture_once_and_export_reproduces_it(tmp_path: Path) -> None:
    """Every candidate is trained on the proxy task before it is scored (3× the 10% of
    chance, which untrained networks score; measured 45-75%); the weights are kept by architecture, so rebuilding a candidate
    (export, a rerun) loads them instead of training, and export reproduces its accuracy."""
    cfg_path = write_config(tmp_path, ARCH)
    run = tmp_path / "run"
    proc = run_cli("search", str(cfg_path), "--run-dir", str(run), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert len(list((run / "proxy").glob("*.pt"))) == 3
    cands = [c for c in Store(RunDir(run).storage_url(None), "arch").candidates() if c.ok]
    assert len(cands) == 3 and all(c.metrics["accuracy"] > 0.3 and c.timings["proxy_s"] > 0 for c in cands)
    ctx = build_context(parse_config(yaml.safe_load(cfg_path.read_text())), run, cache=False, train=False)
    assert ctx.proxy is not None
    best = max(cands, key=lambda c: c.metrics["accuracy"])
    assert ctx.evaluator(materialize(ctx, best.params), prepared=True)["accuracy"] == best.metrics["accuracy"]
    assert ctx.proxy.trained == 0, "a stored architecture was trained again"
    out = tmp_path / "export"
    proc = run_cli("export", str(run), "--candidate", str(best.number), "--out", str(out))
    assert proc.returncode == 0 and "accuracy reproduced exactly" in proc.stdout, proc.stdout + proc.stderr


def test_a_damaged_proxy_file_is_trained_again_and_the_recipe_is_in_the_key(tmp_path: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    cfg = parse_config(ARCH)
    ctx = build_context(cfg, tmp_path / "run")
    assert ctx.proxy is not None
    params = ctx.space.sample(np.random.default_rng(0))
    first = materialize(ctx, params)
    assert ctx.proxy.trained == 1
    path = next((tmp_path / "run" / "proxy").glob("*.pt"))
    path.write_bytes(path.read_bytes()[:-10])
    again = materialize(ctx, params)
    assert ctx.proxy.trained == 2 and "training that architecture again" in capfd.readouterr().err
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b), "proxy training is not deterministic for a seed"
    other = parse_config({**ARCH, "proxy": {**ARCH["proxy"], "epochs": 1}})
    assert build_context(other, tmp_path / "run", measure_base=False).proxy.key(params) != ctx.proxy.key(params)
    distilled = parse_config({**ARCH, "proxy": {**ARCH["proxy"], "distill": {"kinds": ["response"]}}})
    assert build_context(distilled, tmp_path / "run", measure_base=False).proxy.key(params) != ctx.proxy.key(params)


def test_a_macs_target_holds_for_every_architecture(tmp_path: Path) -> None:
    """The target is relative to the base model; one no architecture can reach is one line
    before any candidate (the 4-wide CNN is smaller than the cheapest network)."""
    cfg = {**ARCH, "target": {"macs": 0.5}, "proxy": {"epochs": 1, "train_images": 128, "batch_size": 64}, "budget": {"candidates": 4}}
    assert_user_error(run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(tmp_path / "small")), "target macs 0.5", "is below what the space reaches")
    cfg["model"] = {"name": "small_cnn", "train": {"epochs": 2}}
    run = tmp_path / "run"
    assert run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run), "--no-report").returncode == 0
    cands = [c for c in Store(RunDir(run).storage_url(None), "arch").candidates() if c.ok]
    # relative to the base model (a 4-wide CNN), not to the space's default network
    assert len(cands) == 4 and all(c.metrics["macs"] <= 0.5 * c.metrics["base_macs"] for c in cands)


@pytest.mark.one_pass
def test_apply_refuses_a_space_of_untrained_networks(tmp_path: Path) -> None:
    proc = run_cli("apply", "--model", "small_cnn", "--space", "architecture", "--uniform", "0.5", "--out", str(tmp_path / "out"))
    assert_user_error(proc, "space 'architecture' builds new, untrained networks")
