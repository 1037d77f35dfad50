from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automc.compress.saved import load_compressed
from automc.compress.int8 import cpu_features, recommended_scheme
from tests.conftest import assert_user_error, run_cli


@pytest.fixture(scope="module")
def digits_cnn(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("w") / "cnn.pt"
    proc = run_cli("train", "--model", "small_cnn", "--dataset", "digits", "--epochs", "6", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return out


def test_apply_writes_a_rebuildable_smaller_model(tmp_path: Path, digits_cnn: Path) -> None:
    out = tmp_path / "pruned"
    proc = run_cli(
        "apply", "--model", "small_cnn", "--weights", str(digits_cnn), "--space", "channel_pruning",
        "--uniform", "0.5", "--out", str(out), "--bn-calibration", "4", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["ratios"]["macs"] < 0.4 and r["ratios"]["params"] < 0.4 and r["ratios"]["onnx_bytes"] < 0.6
    assert r["after"]["accuracy"] > 0.5
    for name in ("model.pt", "model.onnx", "compression.json"):
        assert (out / name).is_file()
    model = load_compressed(out)
    card = json.loads((out / "compression.json").read_text())
    assert card["dataset"]["split"] == "test" and card["space"]["name"] == "channel_pruning"
    from automc.datasets import load_split
    from automc.measure.evaluator import Evaluator

    assert Evaluator(load_split("digits", "test"))(model)["accuracy"] == pytest.approx(r["after"]["accuracy"])


@pytest.mark.one_pass
def test_policy_file_errors_are_one_line(tmp_path: Path, digits_cnn: Path) -> None:
    policy = tmp_path / "p.json"
    base = ("apply", "--model", "small_cnn", "--weights", str(digits_cnn), "--space", "channel_pruning", "--out", str(tmp_path / "o"))
    policy.write_text(json.dumps({"features.1.0:ratio": 1.5}))
    assert_user_error(run_cli(*base, "--policy", str(policy)), "'features.1.0:ratio'", "allowed [0.2, 1.0]")
    policy.write_text(json.dumps({"features.9.0:ratio": 0.5}))
    assert_user_error(run_cli(*base, "--policy", str(policy)), "unknown layer 'features.9.0'", "valid layers")
    policy.write_text("{not json")
    assert_user_error(run_cli(*base, "--policy", str(policy)), "not valid JSON")
    assert_user_error(run_cli(*base, "--uniform", "0.01"), "out of range", "allowed [0.2, 1.0]")
    assert_user_error(run_cli(*base[:-2], "--uniform", "0.5"), "--out")
    assert_user_error(run_cli(*base, "--uniform", "0.5", "--space-arg", "mode=outer"), "mode 'outer' is not known")


def test_resnet56_uniform_pruning_must_show(shared_data: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "apply", "--model", "resnet56", "--weights", str(shared_data / "weights" / "resnet56-4bfd9763.pt"),
        "--space", "channel_pruning", "--uniform", "0.7", "--out", str(tmp_path), "--data-dir", str(shared_data), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["after"]["macs"] < 0.55 * r["before"]["macs"]
    assert r["after"]["params"] < 0.55 * r["before"]["params"]
    assert r["after"]["onnx_bytes"] < 0.55 * r["before"]["onnx_bytes"]
    assert r["before"]["accuracy"] == pytest.approx(0.926, abs=0.003)
    # BN recalibration is reported and matters: it must beat the stale statistics by a wide margin
    assert r["after"]["accuracy"] > r["after"]["accuracy_without_recalibration"] + 0.15


def test_int8_export_agrees_with_fake_quant_model(shared_data: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "apply", "--model", "resnet20", "--weights", "pretrained", "--space", "mixed_precision", "--uniform", "8",
        "--int8", "--out", str(tmp_path), "--data-dir", str(shared_data), "--split", "test-exact", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["int8"]["images"] == 1000
    assert r["int8"]["quantized_nodes"] == 20
    assert r["int8"]["top1_agreement_with_pytorch"] >= 0.99
    # the scheme onnxruntime documents for this CPU, and the CPU, are recorded on the card
    card = json.loads((tmp_path / "compression.json").read_text())
    assert card["int8"]["scheme"] == recommended_scheme().name == card["space"]["config"]["int8_scheme"]
    assert card["int8"]["exported_on"]["vnni"] == cpu_features().vnni
    assert r["int8"]["bytes"] < 0.4 * r["before"]["onnx_bytes"]
    assert abs(r["after"]["accuracy"] - 0.915) < 0.01
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert torch.equal(load_compressed(tmp_path).conv1.weight, torch.load(tmp_path / "model.pt", weights_only=True)["conv1.weight"])
