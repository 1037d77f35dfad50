"""int8 schemes: chosen from CPU features as onnxruntime documents, exact on this CPU, and
carried from the PyTorch fake quantisation through to the exported graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automc.compress.int8 import (
    SCHEMES,
    CpuFeatures,
    cpu_features,
    recommended_scheme,
    resolve_scheme,
    saturation_probe,
    scheme_note,
)
from automc.compress.quant import quantize_weight_linear
from automc.errors import UserError
from automc.results.int8_onnx import export_int8_checked, int8_layer_names, model_int8_scheme, rounding_jitter_agreement
from tests.conftest import run_cli


def _cpu(arch: str, *flags: str) -> CpuFeatures:
    return CpuFeatures(arch=arch, model="test", flags=frozenset(flags))


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        (_cpu("x86_64", "avx2", "fma"), "u8s8-reduced"),  # AMD EPYC (Zen 2/3), older Intel
        (_cpu("x86_64", "avx2", "avx512f", "avx512bw"), "u8s8-reduced"),  # Skylake-X: AVX-512 without VNNI
        (_cpu("x86_64", "avx2", "avx512f", "avx512_vnni"), "u8s8"),  # Cascade Lake and later Xeons
        (_cpu("x86_64", "avx2", "avx_vnni"), "u8s8"),  # Alder Lake
        (_cpu("aarch64", "asimd", "asimddp"), "s8s8"),
        (_cpu("arm64"), "s8s8"),
    ],
)
def test_recommended_scheme_follows_onnxruntime_guidance(features: CpuFeatures, expected: str) -> None:
    assert recommended_scheme(features).name == expected
    assert resolve_scheme("auto", features).name == expected


def test_unknown_scheme_is_a_user_error_naming_the_valid_ones() -> None:
    with pytest.raises(UserError, match="int8_scheme 'u8u8' is not known; valid: auto, u8s8, u8s8-reduced, s8s8"):
        resolve_scheme("u8u8")


def test_u8s8_without_vnni_gets_a_note() -> None:
    note = scheme_note(SCHEMES["u8s8"], _cpu("x86_64", "avx2"))
    assert note is not None and "u8s8-reduced" in note
    assert scheme_note(SCHEMES["u8s8"], _cpu("x86_64", "avx512_vnni")) is None
    assert scheme_note(SCHEMES["u8s8-reduced"], _cpu("x86_64", "avx2")) is None


def test_the_scheme_chosen_for_this_cpu_runs_exactly_in_onnxruntime() -> None:
    """The adversarial conv (large activations × edge-of-grid weights) is exact with the
    scheme 'auto' picks here; with full-range u8s8 on x86 without VNNI it is not."""
    auto = recommended_scheme()
    assert saturation_probe(auto) <= 1.0, f"{auto.name} saturates on {cpu_features().model}"
    assert saturation_probe(SCHEMES["s8s8"]) <= 1.0


def test_8bit_weight_grid_follows_the_scheme() -> None:
    w = torch.randn(16, 8, 3, 3)
    for qmax in (127, 64):
        q = quantize_weight_linear(w, 8, qmax)
        scale = w.reshape(16, -1).abs().amax(1).view(-1, 1, 1, 1) / qmax
        ints = q / scale
        assert torch.allclose(ints, ints.round(), atol=1e-4)  # on the grid
        assert int(ints.abs().round().max()) == qmax  # the channel maximum lands on ±qmax
        assert len(torch.unique(ints.round())) <= 2 * qmax + 1


def test_mixed_precision_records_the_resolved_scheme_and_quantises_on_its_grid() -> None:
    from automc.search_spaces.mixed_precision import MixedPrecisionSpace

    from automc.models import build_model

    torch.manual_seed(0)
    model, x = build_model("small_cnn", num_classes=10, in_channels=1).eval(), torch.randn(4, 1, 8, 8)
    auto = MixedPrecisionSpace(model, x[:1], calibration=[x])
    assert auto.config()["int8_scheme"] == recommended_scheme().name
    reduced = MixedPrecisionSpace(model, x[:1], calibration=[x], int8_scheme="u8s8-reduced")
    qmodel = reduced.apply(model, reduced.uniform("8"))
    conv = next(m for m in qmodel.modules() if getattr(m, "w_bits", None) == 8)
    assert conv.int8_scheme == "u8s8-reduced"
    per_channel = conv.weight.detach().reshape(conv.weight.shape[0], -1)
    ints = per_channel / (per_channel.abs().amax(1, keepdim=True) / 64)
    assert float((ints - ints.round()).abs().max()) < 1e-4 and float(ints.abs().max()) <= 64 + 1e-4
    with pytest.raises(UserError, match="int8_scheme"):
        MixedPrecisionSpace(model, x[:1], int8_scheme="fast")


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_int8_export_of_a_digits_cnn_agrees_with_pytorch_for_every_exact_scheme(scheme: str, tmp_path: Path) -> None:
    """Each scheme that runs exactly on this CPU exports a graph agreeing with its PyTorch
    model; the card-bound result names the scheme and the CPU."""
    if saturation_probe(SCHEMES[scheme]) > 1.0:
        pytest.skip(f"{scheme} saturates on this CPU ({cpu_features().model}); covered by the probe test")
    from automc.search_spaces.mixed_precision import MixedPrecisionSpace

    from automc.datasets import load_split
    from automc.measure.evaluator import Evaluator
    from automc.models import build_model
    from automc.recipes import TrainConfig
    from automc.train.training import train_classifier

    train, test = load_split("digits", "train"), load_split("digits", "test")
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, in_channels=1)
    train_classifier(model, train, config=TrainConfig(epochs=4), seed=0)
    xc, _ = train.tensors()
    calib = [xc[i : i + 64] for i in range(0, 512, 64)]
    space = MixedPrecisionSpace(model, xc[:1], calibration=calib, int8_scheme=scheme)
    qmodel = space.apply(model, space.uniform("8"))
    xv, yv = Evaluator(test).data()
    r = export_int8_checked(qmodel, xc[:1], calib, tmp_path / "m.onnx", xv, yv)
    assert r["scheme"] == scheme and r["exported_on"]["arch"] == cpu_features().arch
    assert r["top1_agreement_with_pytorch"] >= 0.99, r
    assert 0.9 <= r["top1_agreement_under_rounding_jitter"] <= 1.0, r
    json.dumps(r)


def test_rounding_jitter_moves_only_8bit_inputs_and_flips_more_as_it_grows() -> None:
    """The agreement floor: no jitter changes nothing, a large one flips predictions, and a
    float model (no 8-bit inputs) has no floor."""
    from automc.datasets import load_split
    from automc.models import build_model
    from automc.recipes import TrainConfig
    from automc.search_spaces.mixed_precision import MixedPrecisionSpace
    from automc.train.training import train_classifier

    train = load_split("digits", "train")
    x, _ = load_split("digits", "test").tensors()
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, in_channels=1)
    train_classifier(model, train, config=TrainConfig(epochs=1), seed=0)  # an untrained net answers one class for every image
    calib = [x[:64], x[64:128]]
    space = MixedPrecisionSpace(model.eval(), x[:1], calibration=calib)
    qmodel = space.apply(model, space.uniform("8"))
    layers = int8_layer_names(qmodel)
    assert layers and rounding_jitter_agreement(qmodel, x, layers, lsb=0.0) == 1.0
    small, large = rounding_jitter_agreement(qmodel, x, layers, lsb=0.05), rounding_jitter_agreement(qmodel, x, layers, lsb=40.0)
    assert small is not None and large is not None and large < small <= 1.0 and large < 0.99
    assert rounding_jitter_agreement(model, x, int8_layer_names(model)) is None


def test_cpu_command_reports_the_scheme_and_the_probe() -> None:
    proc = run_cli("cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["auto_scheme"] == recommended_scheme().name
    assert r["probe_error_steps"][r["auto_scheme"]] <= 1.0


def test_an_explicit_export_scheme_must_fit_the_8bit_layers_grid() -> None:
    """u8s8 and s8s8 share the ±127 weight grid, u8s8-reduced's is ±64: a model quantised on
    one grid is not exported on the other (onnxruntime would re-round its weights)."""
    from automc.models import build_model
    from automc.search_spaces.mixed_precision import MixedPrecisionSpace

    x = torch.randn(4, 1, 8, 8)
    model = build_model("small_cnn", num_classes=10, in_channels=1).eval()
    space = MixedPrecisionSpace(model, x[:1], calibration=[x], int8_scheme="u8s8")
    qmodel = space.apply(model, space.uniform("8"))
    assert model_int8_scheme(qmodel).name == "u8s8" and model_int8_scheme(qmodel, "s8s8").name == "s8s8"
    with pytest.raises(UserError, match="u8s8 grid .* export with u8s8 or s8s8"):
        model_int8_scheme(qmodel, "u8s8-reduced")
    assert model_int8_scheme(model, "u8s8-reduced").name == "u8s8-reduced"  # a float model takes any
    assert model_int8_scheme(model).name == recommended_scheme().name
