"""The bad-input suite: every user mistake is one stderr line naming the field, exit 2, no
traceback — and nothing is written or spent. Table-driven, in-process (``automc.cli.main``),
with a sample of cases also through a real subprocess.

Each case: an id, the command line (config cases go through ``search --check``, which runs the
validation and the dry run), and words the line must contain (the field and what is wrong).
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import os
import pickle
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from automc.cli import main
from tests.conftest import assert_user_error, run_cli
from tests.search_support import TINY

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it

USER_CODE = textwrap.dedent(
    """
    import torch

    def not_a_module(num_classes=10, in_channels=1):
        return "a string"

    def as_string(metrics):
        return "0.5"

    def as_nan(metrics):
        return float("nan")

    def raising(metrics):
        raise RuntimeError("boom")

    def three_classes(num_classes=10, in_channels=1):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * in_channels, 3))
    """
)


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - would run a command if unpickled
        return (os.system, ("echo pwned > /tmp/automc-pwned",))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files the cases point at: user modules, bad weights, a finished run."""
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "bi_user.py").write_text(USER_CODE)
    (root / "bi_raising.py").write_text("raise RuntimeError('needs a GPU')\n")
    (root / "bi_missing_dep.py").write_text("import a_package_that_is_not_installed\n")
    (root / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with open(root / "evil.pt", "wb") as f:
        pickle.dump(_Evil(), f)
    torch.save({"conv.weight": torch.zeros(3)}, root / "other_arch.pt")
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {}}, root / "objects.pt")
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    (root / "broken.yaml").write_text("name: x\nmodel: [unclosed\n")
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "empty.yaml").write_text("")
    (root / "a_file").write_text("x")
    (root / "adir.yaml").mkdir()
    run = root / "run"
    from automc.config import parse_config
    from automc.search.loop import run_experiment

    run_experiment(parse_config({**TINY, "budget": {"candidates": 4}}), run)
    (root / "run_report_file").mkdir()
    return root


def _cfg(world: Path, change: Callable[[dict[str, Any]], None]) -> list[str]:
    cfg = copy.deepcopy(TINY)
    change(cfg)
    path = world / f"cfg_{abs(hash(yaml.safe_dump(cfg))) % 10**10}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return ["search", str(path), "--check", "--run-dir", str(world / "check-run")]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(cfg: dict[str, Any]) -> None:
        keys = path.split(".")
        node = cfg
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(cfg: dict[str, Any]) -> None:
        keys = path.split(".")
        node = cfg
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return change


# (id, config change, words the line must contain)
CONFIG_CASES: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    ("unknown-top-key", _set("agnet", {}), ("unknown key 'agnet'",)),
    ("missing-name", _drop("name"), ("name is required",)),
    ("name-dotdot", _set("name", ".."), ("name '..'", "plain file name")),
    ("name-dot", _set("name", "."), ("name '.'", "plain file name")),
    ("name-slash", _set("name", "a/b"), ("name 'a/b'", "plain file name")),
    ("name-empty", _set("name", ""), ("name ''", "plain file name")),
    ("name-dash", _set("name", "-x"), ("name '-x'", "plain file name")),
    ("name-long", _set("name", "n" * 101), ("name",)),
    ("name-number", _set("name", 5), ("name",)),
    ("seed-text", _set("seed", "x"), ("seed",)),
    ("model-missing", _drop("model"), ("model is required",)),
    ("model-name-missing", _drop("model.name"), ("model.name is required",)),
    ("model-unknown", _set("model.name", "resnet21"), ("model 'resnet21'",)),
    ("model-module-missing", _set("model.name", "bi_nowhere:f"), ("cannot import module 'bi_nowhere'",)),
    ("model-module-raises", _set("model.name", "bi_raising:f"), ("importing module 'bi_raising'", "RuntimeError: needs a GPU", "bi_raising.py:1")),
    ("model-module-dependency", _set("model.name", "bi_missing_dep:f"), ("'a_package_that_is_not_installed', which is not installed",)),
    ("model-attr-missing", _set("model.name", "bi_user:nope"), ("no attribute 'nope'",)),
    ("model-not-a-module", _set("model", {"name": "bi_user:not_a_module"}), ("must return a torch.nn.Module",)),
    ("model-width-0", _set("model.kwargs", {"width": 0}), ("model 'small_cnn' with kwargs {'width': 0} cannot be built",)),
    ("model-width-text", _set("model.kwargs", {"width": "wide"}), ("model 'small_cnn'", "cannot be built")),
    ("model-kwarg-unknown", _set("model.kwargs", {"depth": 3}), ("depth",)),
    ("model-kwargs-list", _set("model.kwargs", [1]), ("model.kwargs",)),
    ("weights-missing", _set("model.weights", "/nonexistent/w.pt"), ("weights file /nonexistent/w.pt does not exist",)),
    ("weights-garbage", lambda c: None, ()),  # filled in below (needs the world path)
    ("train-epochs-0", _set("model.train.epochs", 0), ("model.train.epochs",)),
    ("train-lr-negative", _set("model.train.lr", -1), ("model.train.lr",)),
    ("train-lr-nan", _set("model.train.lr", float("nan")), ("model.train.lr",)),
    ("train-unknown", _set("model.train.epochz", 1), ("unknown key 'epochz'",)),
    ("train-batch-0", _set("model.train.batch_size", 0), ("model.train.batch_size",)),
    ("data-missing", _drop("data"), ("data is required",)),
    ("dataset-unknown", _set("data.dataset", "imagenet"), ("dataset 'imagenet'",)),
    ("dataset-missing", _drop("data.dataset"), ("data.dataset is required",)),
    ("validation-0", _set("data.validation", 0), ("data.validation",)),
    ("validation-text", _set("data.validation", "all"), ("data.validation",)),
    ("calibration-0", _set("data.calibration_batches", 0), ("data.calibration_batches",)),
    ("eval-split-unknown", _set("data.eval_split", "nosplit"), ("nosplit",)),
    ("calibration-split-unknown", _set("data.calibration_split", "nosplit"), ("nosplit",)),
    ("data-unknown-key", _set("data.augment", True), ("unknown key 'augment'",)),
    ("space-missing", _drop("space"), ("space is required",)),
    ("space-unknown", _set("space.name", "pruning"), ("search space 'pruning'",)),
    ("space-setting-unknown", _set("space.config", {"ratio": 0.5}), ("ratio",)),
    ("space-lbound-text", _set("space.config", {"lbound": "low"}), ("lbound must be a number in (0, 1], got 'low'",)),
    ("space-lbound-0", _set("space.config", {"lbound": 0}), ("lbound must be a number in (0, 1]",)),
    ("space-lbound-2", _set("space.config", {"lbound": 2}), ("lbound must be a number in (0, 1]",)),
    ("space-round-to-0", _set("space.config", {"round_to": 0}), ("round_to must be an integer in [1, inf]",)),
    ("space-criterion", _set("space.config", {"criterion": "l3"}), ("criterion 'l3'",)),
    ("space-mode", _set("space.config", {"mode": "some"}), ("mode 'some'",)),
    ("space-keep-layers", _set("space.config", {"keep_layers": ["nope"]}), ("nope",)),
    ("sparsity-lbound", _set("space", {"name": "sparsity", "config": {"lbound": 1.5}}), ("lbound must be a number in (0, 1]",)),
    ("precision-bits", _set("space", {"name": "mixed_precision", "config": {"bits": [0]}}), ("bits must hold bit-widths between 1 and 16",)),
    ("space-min-channels-0", _set("space.config", {"min_channels": 0}), ("min_channels must be an integer in [1, inf]",)),
    ("profile-unknown", _set("profiles", [{"name": "tpu"}]), ("device profile 'tpu'",)),
    ("profile-setting-unknown", _set("profiles", [{"name": "flops", "config": {"speed": 1}}]), ("speed",)),
    ("profiles-none", _set("profiles", []), ("objectives[1].metric 'macs' is measured by no profile",)),
    ("profiles-not-list", _set("profiles", "flops"), ("profiles",)),
    ("profiles-same-metric", _set("profiles", [{"name": "flops"}, {"name": "accelerator"}, {"name": "onnxruntime-cpu"}]), ("profiles[2] 'onnxruntime-cpu' reports 'latency_ms', which profiles[1] 'accelerator' reports too", "drop one")),
    ("reward-unknown", _set("reward.name", "amc2"), ("reward 'amc2'",)),
    ("reward-kwarg-unknown", _set("reward.kwargs", {"flops": "macs"}), ("flops",)),
    ("reward-mnas-target-negative", _set("reward", {"name": "mnas", "kwargs": {"target": -1, "metric": "macs"}}), ("reward 'mnas'", "target must be > 0")),
    ("reward-mnas-target-missing", _set("reward", {"name": "mnas"}), ("target",)),
    ("reward-mnas-mode", _set("reward", {"name": "mnas", "kwargs": {"target": 1e5, "metric": "macs", "mode": "medium"}}), ("mode must be 'soft' or 'hard'",)),
    ("reward-mnas-metric", _set("reward", {"name": "mnas", "kwargs": {"target": 1.0}}), ("latency_ms",)),
    ("reward-weighted-empty", _set("reward", {"name": "weighted", "kwargs": {"weights": {}}}), ("weighted reward needs weights",)),
    ("reward-weighted-metric", _set("reward", {"name": "weighted", "kwargs": {"weights": {"energy_mj": -1}}}), ("energy_mj",)),
    ("reward-budget-metric", _set("reward", {"name": "accuracy", "kwargs": {"budget": {"latency_ms": 2}}}), ("latency_ms",)),
    ("reward-returns-string", _set("reward.name", "bi_user:as_string"), ("returned str '0.5'", "real number")),
    ("reward-returns-nan", _set("reward.name", "bi_user:as_nan"), ("reward 'bi_user:as_nan' is nan", "finite")),
    ("reward-raises", _set("reward.name", "bi_user:raising"), ("fails on the uncompressed model: RuntimeError: boom", "bi_user.py:")),
    ("reward-kwargs-list", _set("reward.kwargs", [1]), ("reward.kwargs",)),
    ("objective-direction", _set("objectives", [{"metric": "accuracy", "direction": "up"}, {"metric": "macs", "direction": "minimize"}]), ("objectives.0.direction",)),
    ("objective-metric-unmeasured", _set("objectives", [{"metric": "accuracy", "direction": "maximize"}, {"metric": "latency_ms", "direction": "minimize"}]), ("objectives[1].metric 'latency_ms'",)),
    ("objective-no-metric", _set("objectives", [{"direction": "maximize"}]), ("objectives.0.metric is required",)),
    ("objective-unknown-key", _set("objectives", [{"metric": "accuracy", "direction": "maximize", "weight": 2}]), ("unknown key 'weight'",)),
    ("constraint-unmeasured", _set("constraints", [{"metric": "energy_mj", "max": 1000}]), ("constraints[0].metric 'energy_mj'",)),
    ("constraint-no-bound", _set("constraints", [{"metric": "macs"}]), ("constraints.0", "max or min")),
    ("constraint-max-text", _set("constraints", [{"metric": "macs", "max": "small"}]), ("constraints.0.max",)),
    ("agent-unknown", _set("agent.name", "ddpgg"), ("unknown agent 'ddpgg'",)),
    ("agent-setting-unknown", _set("agent.config", {"n_startup": 3}), ("sampler",)),
    ("nsga2-population-1", _set("agent", {"name": "optuna-nsga2", "config": {"population_size": 1}}), ("population_size must be an integer in [2, inf], got 1",)),
    ("nsga2-population-text", _set("agent", {"name": "optuna-nsga2", "config": {"population_size": "big"}}), ("population_size",)),
    ("tpe-startup-negative", _set("agent", {"name": "optuna-tpe", "config": {"n_startup_trials": -1}}), ("n_startup_trials must be an integer in [0, inf], got -1",)),
    ("ddpg-budget-0", _set("agent", {"name": "ddpg", "config": {"budget": 0}}), ("budget must be a number in (0, 1]",)),
    ("ddpg-budget-2", _set("agent", {"name": "ddpg", "config": {"budget": 2}}), ("budget must be a number in (0, 1]",)),
    ("ddpg-warmup-negative", _set("agent", {"name": "ddpg", "config": {"warmup_episodes": -1}}), ("warmup_episodes",)),
    ("ddpg-noise-decay-0", _set("agent", {"name": "ddpg", "config": {"noise_decay": 0}}), ("noise_decay",)),
    ("ddpg-net-arch-text", _set("agent", {"name": "ddpg", "config": {"net_arch": "64"}}), ("net_arch",)),
    ("ddpg-net-arch-zero", _set("agent", {"name": "ddpg", "config": {"net_arch": [0]}}), ("net_arch",)),
    ("ddpg-lr-0", _set("agent", {"name": "ddpg", "config": {"learning_rate": 0}}), ("learning_rate",)),
    ("ddpg-unknown", _set("agent", {"name": "ddpg", "config": {"gamma_": 0.9}}), ("gamma_",)),
    ("ppo-episodes-0", _set("agent", {"name": "ppo", "config": {"episodes_per_update": 0}}), ("episodes_per_update",)),
    ("random-sampler", _set("agent.config", {"sampler": "sobol"}), ("sampler must be 'iid' or 'budgets'",)),
    ("agent-constraints-setting", _set("agent", {"name": "optuna-nsga2", "config": {"constraints": []}}), ("constraints is set by automc",)),
    ("budget-missing", _drop("budget"), ("budget is required",)),
    ("budget-empty", _set("budget", {}), ("budget", "candidates and/or minutes")),
    ("budget-zero", _set("budget", {"candidates": 0}), ("budget.candidates",)),
    ("budget-negative", _set("budget", {"candidates": -5}), ("budget.candidates",)),
    ("budget-text", _set("budget", {"candidates": "ten"}), ("budget.candidates",)),
    ("budget-minutes-0", _set("budget", {"minutes": 0}), ("budget.minutes",)),
    ("storage-bad-url", _set("storage", "not a url"), ("storage 'not a url' is not a database URL",)),
    ("storage-unknown-kind", _set("storage", "notadb://x"), ("'notadb' is not a database kind",)),
    ("finetune-unknown-key", _set("finetune", {"epoch": 3}), ("unknown key 'epoch' in finetune",)),
    ("finetune-epochs-0", _set("finetune", {"epochs": 0}), ("finetune.epochs",)),
    ("finetune-lr-0", _set("finetune", {"lr": 0}), ("finetune.lr",)),
    ("finetune-candidates", _set("finetune", {"candidates": "all"}), ("finetune.candidates is 'all'", "'front'")),
    ("finetune-kind-unknown", _set("finetune", {"distill": {"kinds": ["logits"]}}), ("finetune.distill.kinds.0 is 'logits'", "'response'")),
    ("finetune-temperature-0", _set("finetune", {"distill": {"temperature": 0}}), ("finetune.distill.temperature", "greater than 0")),
    ("finetune-temperature-negative", _set("finetune", {"distill": {"temperature": -2}}), ("finetune.distill.temperature",)),
    ("finetune-alpha-above-1", _set("finetune", {"distill": {"alpha": 1.5}}), ("finetune.distill.alpha", "less than or equal to 1")),
    ("finetune-alpha-negative", _set("finetune", {"distill": {"alpha": -0.1}}), ("finetune.distill.alpha",)),
    ("finetune-relation-method", _set("finetune", {"distill": {"relation": "angle"}}), ("finetune.distill.relation is 'angle'",)),
    ("finetune-layer-missing", _set("finetune", {"distill": {"kinds": ["feature"], "layers": ["features.9"]}}), ("finetune.distill.layers: 'features.9' is not a module of the model",)),
    ("finetune-teacher-classes", _set("finetune", {"teacher": {"name": "bi_user:three_classes"}}), ("finetune.distill: the teacher predicts 3 classes but the student 10",)),
    ("finetune-split-unknown", _set("finetune", {"train_split": "holdout"}), ("finetune.train_split 'holdout' is not a split of digits",)),
    ("finetune-too-many-images", _set("finetune", {"train_images": 10**6}), ("finetune.train_images is 1000000",)),
]


def _weights_cases(world: Path) -> dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]]:
    return {
        "weights-garbage": (_set("model.weights", str(world / "garbage.pt")), ("cannot read weights file", "damaged or not a PyTorch tensor checkpoint")),
        "weights-malicious": (_set("model.weights", str(world / "evil.pt")), ("cannot read weights file", "not a PyTorch tensor checkpoint")),
        "weights-objects": (_set("model.weights", str(world / "objects.pt")), ("cannot read weights file", "pickled Python objects besides tensors")),
        "weights-other-architecture": (_set("model.weights", str(world / "other_arch.pt")), ("does not fit model 'small_cnn'",)),
    }


def _cli_cases(world: Path) -> list[tuple[str, list[str], tuple[str, ...]]]:
    run, tiny = str(world / "run"), str(world / "tiny.yaml")
    if world.is_dir():
        (world / "tiny.yaml").write_text(yaml.safe_dump(TINY))
        (world / "changed.yaml").write_text(yaml.safe_dump({**TINY, "budget": {"candidates": 4}, "seed": 9}))
    return [
        ("config-missing", ["search", str(world / "nope.yaml")], ("does not exist",)),
        ("config-is-dir", ["search", str(world / "adir.yaml")], ("does not exist",)),
        ("config-bad-yaml", ["search", str(world / "broken.yaml")], ("not valid YAML at line 3, column 1: expected ',' or ']'",)),
        ("config-list", ["search", str(world / "list.yaml")], ("must be a YAML mapping",)),
        ("config-empty", ["search", str(world / "empty.yaml")], ("must be a YAML mapping",)),
        ("config-binary", ["search", str(world / "binary.yaml")], ("not a text (UTF-8) YAML file",)),
        ("workers-0", ["search", tiny, "--workers", "0"], ("--workers", "integer >= 1")),
        ("workers-negative", ["search", tiny, "--workers", "-3"], ("--workers", "integer >= 1")),
        ("workers-text", ["search", tiny, "--workers", "x"], ("--workers",)),
        ("run-dir-file", ["search", tiny, "--run-dir", str(world / "a_file")], ("run directory", "is a file")),
        ("run-dir-changed", ["search", str(world / "changed.yaml"), "--run-dir", run], ("different config (seed: 0 -> 9)", "another --run-dir")),
        ("check-run-dir-changed", ["search", str(world / "changed.yaml"), "--run-dir", run, "--check"], ("different config (seed: 0 -> 9)",)),
        ("status-top-negative", ["status", run, "--top", "-1"], ("--top", "integer >= 0")),
        ("status-not-a-run", ["status", str(world)], ("is not a run directory",)),
        ("status-missing", ["status", str(world / "nope")], ("is not a run directory",)),
        ("report-not-a-run", ["report", str(world)], ("is not a run directory",)),
        ("report-objective", ["report", run, "--objective", "accuracy"], ("--objective expects METRIC:max",)),
        ("report-objective-unknown", ["report", run, "--objective", "accuracy:max", "--objective", "latency:min"], ("objective metric latency was not measured",)),
        ("report-reference", ["report", run, "--reference", "macs=abc"], ("--reference macs: expected a number",)),
        ("report-reference-form", ["report", run, "--reference", "macs"], ("--reference expects KEY=VALUE",)),
        ("report-out-file", ["report", run, "--out", str(world / "a_file")], ("report folder", "is a file")),
        ("compare-one", ["compare", run, "--out", str(world / "cmp")], ("compare needs at least two run directories",)),
        ("export-candidate-negative", ["export", run, "--candidate", "-1", "--out", str(world / "x")], ("--candidate", "integer >= 0")),
        ("export-candidate-missing", ["export", run, "--candidate", "999", "--out", str(world / "x")], ("--candidate 999: the run has no candidate 999",)),
        ("export-no-out", ["export", run, "--candidate", "0"], ("--out",)),
        ("finetune-not-a-run", ["finetune", str(world)], ("is not a run directory",)),
        ("finetune-candidate-missing", ["finetune", run, "--candidate", "999"], ("--candidate 999 does not exist",)),
        ("finetune-distill-kind", ["finetune", run, "--distill", "logits"], ("--distill", "unknown distillation kind logits")),
        ("finetune-epochs-0", ["finetune", run, "--epochs", "0"], ("--epochs", "integer >= 1")),
        ("finetune-lr-negative", ["finetune", run, "--lr", "-1"], ("finetune.lr",)),
        ("finetune-front-and-best", ["finetune", run, "--front", "--best"], ("not allowed with argument",)),
        ("unknown-command", ["serach", tiny], ("invalid choice: 'serach'",)),
        ("evaluate-limit-0", ["evaluate", "--model", "small_cnn", "--dataset", "digits", "--limit", "0"], ("--limit", "integer >= 1")),
        ("evaluate-batch-0", ["evaluate", "--model", "small_cnn", "--dataset", "digits", "--batch-size", "0"], ("--batch-size",)),
        ("evaluate-threads-0", ["evaluate", "--model", "small_cnn", "--dataset", "digits", "--threads", "0"], ("--threads",)),
        ("evaluate-model-unknown", ["evaluate", "--model", "resnet21", "--dataset", "digits"], ("model 'resnet21'",)),
        ("evaluate-dataset-unknown", ["evaluate", "--model", "small_cnn", "--dataset", "imagenet"], ("dataset 'imagenet'",)),
        ("evaluate-model-arg", ["evaluate", "--model", "small_cnn", "--dataset", "digits", "--model-arg", "width"], ("--model-arg expects KEY=VALUE",)),
        ("evaluate-weights-objects", ["evaluate", "--model", "small_cnn", "--dataset", "digits", "--weights", str(world / "objects.pt")], ("pickled Python objects",)),
        ("train-epochs-0", ["train", "--model", "small_cnn", "--dataset", "digits", "--epochs", "0", "--out", str(world / "t.pt")], ("--epochs", "integer >= 1")),
        ("apply-bn-negative", ["apply", "--model", "small_cnn", "--dataset", "digits", "--space", "channel_pruning", "--uniform", "0.5", "--bn-calibration", "-1", "--out", str(world / "ap")], ("--bn-calibration",)),
        ("apply-int8-scheme-unknown", ["apply", "--model", "small_cnn", "--dataset", "digits", "--space", "channel_pruning", "--uniform", "0.5", "--int8", "--int8-scheme", "u4s4", "--out", str(world / "ap")], ("--int8-scheme", "invalid choice")),
        ("apply-int8-scheme-without-int8", ["apply", "--model", "small_cnn", "--dataset", "digits", "--space", "channel_pruning", "--uniform", "0.5", "--int8-scheme", "s8s8", "--out", str(world / "ap")], ("--int8-scheme", "add --int8")),
        ("apply-int8-scheme-off-grid", ["apply", "--model", "small_cnn", "--dataset", "digits", "--space", "mixed_precision", "--uniform", "8", "--space-arg", "int8_scheme=u8s8", "--int8", "--int8-scheme", "u8s8-reduced", "--out", str(world / "ap")], ("int8_scheme u8s8-reduced", "u8s8 grid", "export with u8s8 or s8s8")),
        ("export-int8-scheme-without-int8", ["export", run, "--candidate", "0", "--int8-scheme", "s8s8", "--out", str(world / "x")], ("--int8-scheme", "add --int8")),
        ("profile-device-unknown", ["profile", "--model", "small_cnn", "--dataset", "digits", "--device", "tpu"], ("device profile 'tpu'",)),
    ]


def _expect_one_line(argv: list[str], needles: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", [c[0] for c in CONFIG_CASES if c[0] != "weights-garbage"] + ["weights-garbage", "weights-malicious", "weights-objects", "weights-other-architecture"])
def test_a_config_mistake_is_one_line_naming_the_field(case: str, world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(world))
    table = {c[0]: (c[1], c[2]) for c in CONFIG_CASES} | _weights_cases(world)
    change, needles = table[case]
    _expect_one_line(_cfg(world, change), needles, capsys)
    assert not (world / "check-run").exists()  # --check writes nothing, even the folder
    assert not Path("/tmp/automc-pwned").exists()


@pytest.mark.parametrize("case", [c[0] for c in _cli_cases(Path("/nonexistent"))])
def test_a_command_line_mistake_is_one_line_naming_the_option(case: str, world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv, needles = {c[0]: (c[1], c[2]) for c in _cli_cases(world)}[case]
    _expect_one_line(argv, needles, capsys)


def test_the_suite_has_at_least_a_hundred_cases() -> None:
    assert len(CONFIG_CASES) + 3 + len(_cli_cases(Path("/nonexistent"))) >= 100


def test_a_second_search_on_a_locked_run_is_one_line_naming_the_holder(world: Path) -> None:
    """Another process holds the writer lock: a second search exits 2 at once, naming it."""
    lock = world / "run" / ".lock"
    with open(lock, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0)
        handle.truncate()
        handle.write("pid 4242 on testhost")
        handle.flush()
        cfg = world / "locked.yaml"
        cfg.write_text(yaml.safe_dump({**TINY, "budget": {"candidates": 4}}))
        proc = run_cli("search", str(cfg), "--run-dir", str(world / "run"))
    assert_user_error(proc, "in use by pid 4242 on testhost")


@pytest.mark.parametrize("case", ["name-dotdot", "model-module-raises", "reward-returns-string", "objective-metric-unmeasured", "nsga2-population-1"])
def test_sampled_cases_are_one_line_from_a_real_process(case: str, world: Path) -> None:
    """The same through ``python -m automc`` (warnings, imports and exit as a user sees them)."""
    change, needles = {c[0]: (c[1], c[2]) for c in CONFIG_CASES}[case]
    argv = _cfg(world, change)
    proc = run_cli(*argv, env={"PYTHONPATH": os.pathsep.join([str(world), os.environ.get("PYTHONPATH", "")])})
    assert_user_error(proc, *needles)
