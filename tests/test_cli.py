from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automc.models import build_model
from tests.conftest import assert_user_error, run_cli

COMMANDS = ("search", "status", "evaluate", "train", "apply", "profile", "models", "datasets", "plugins")


@pytest.mark.one_pass
def test_help_lists_every_command_with_one_line() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in COMMANDS:
        assert any(line.strip().startswith(cmd + " ") for line in proc.stdout.splitlines()), cmd


@pytest.mark.one_pass
def test_unknown_model_is_one_line_exit_2() -> None:
    proc = run_cli("evaluate", "--model", "resnet21", "--dataset", "digits")
    assert_user_error(proc, "unknown model 'resnet21'", "valid names:", "resnet20")


@pytest.mark.one_pass
def test_missing_data_file_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = run_cli("evaluate", "--model", "resnet20", "--dataset", "cifar10", "--split", "test-exact", "--data-dir", str(tmp_path))
    assert_user_error(proc, "test_exact_first1000.npz", str(tmp_path / "cifar10"), "--data-dir")


@pytest.mark.one_pass
def test_wrong_architecture_weights_is_one_line_exit_2(tmp_path: Path) -> None:
    weights = tmp_path / "resnet20.pt"
    torch.save(build_model("resnet20").state_dict(), weights)
    proc = run_cli("evaluate", "--model", "resnet56", "--weights", str(weights), "--dataset", "digits")
    assert_user_error(proc, "does not fit model 'resnet56'", "missing keys", "Pass the checkpoint trained for this architecture")


@pytest.mark.one_pass
def test_bad_argument_is_one_line_exit_2() -> None:
    assert_user_error(run_cli("evaluate", "--model", "small_cnn", "--dataset", "digits", "--batch-size", "x"), "--batch-size")
    assert_user_error(run_cli("evaluate", "--dataset", "digits"), "--model")
    assert_user_error(run_cli("nonsense"), "invalid choice")


def test_train_then_evaluate_json_on_embedded_digits(tmp_path: Path) -> None:
    out = tmp_path / "cnn.pt"
    proc = run_cli("train", "--model", "small_cnn", "--dataset", "digits", "--epochs", "4", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    trained = json.loads(proc.stdout)
    assert out.exists() and trained["accuracy"] > 0.85
    proc = run_cli("evaluate", "--model", "small_cnn", "--weights", str(out), "--dataset", "digits", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["accuracy"] == pytest.approx(trained["accuracy"])
    assert result["split"] == "test" and result["samples"] == 360


@pytest.mark.one_pass
def test_datasets_command_reports_presence(tmp_path: Path) -> None:
    proc = run_cli("datasets", "--json", "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    table = {d["name"]: d for d in json.loads(proc.stdout)}
    assert table["digits"]["splits"]["train"]["present"] is True
    assert table["cifar10"]["splits"]["test-exact"]["present"] is False


# Must-show figures of the foundation issue, on the real files (skipped without ../shared/data).
@pytest.mark.parametrize(
    ("model", "split", "expected"),
    [
        ("resnet20", "test-exact", 91.5),
        ("resnet56", "test-exact", 92.6),
        # the JPEG copy's decoding is the same at any thread count; test-exact checks the arithmetic at 2
        pytest.param("resnet20", "test-jpeg", 81.0, marks=pytest.mark.one_pass),
        pytest.param("resnet56", "test-jpeg", 83.2, marks=pytest.mark.one_pass),
    ],
)
def test_pretrained_accuracy(shared_data: Path, model: str, split: str, expected: float) -> None:
    weights = shared_data / "weights" / {"resnet20": "resnet20-12fca82f.pt", "resnet56": "resnet56-4bfd9763.pt"}[model]
    proc = run_cli(
        "evaluate", "--model", model, "--weights", str(weights), "--dataset", "cifar10",
        "--split", split, "--data-dir", str(shared_data), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert abs(100 * result["accuracy"] - expected) <= 0.3, result


def test_bn_recalibration_keeps_pretrained_accuracy(shared_data: Path) -> None:
    proc = run_cli(
        "evaluate", "--model", "resnet20", "--weights", "pretrained", "--dataset", "cifar10", "--split", "test-exact",
        "--data-dir", str(shared_data), "--bn-calibration", "8", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert abs(100 * json.loads(proc.stdout)["accuracy"] - 91.5) <= 0.5
