from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from automc.errors import UserError
from automc.models import build_model, load_model, load_weights, model_names
from automc.models.pretrained import PRETRAINED, pretrained_path
from automc.models.resnet_cifar import CifarResNet, PadShortcut

INPUTS = {
    "resnet20": (3, 32),
    "resnet32": (3, 32),
    "resnet44": (3, 32),
    "resnet56": (3, 32),
    "resnet110": (3, 32),
    "mobilenetv2": (3, 32),
    "small_cnn": (1, 8),
}


def test_zoo_lists_every_builtin() -> None:
    assert set(INPUTS) <= set(model_names())


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_forward_shapes(name: str) -> None:
    channels, size = INPUTS[name]
    model = build_model(name, num_classes=7, in_channels=channels).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)


@pytest.mark.parametrize(("depth", "params"), [(20, 0.27e6), (32, 0.46e6), (44, 0.66e6), (56, 0.85e6), (110, 1.7e6)])
def test_resnet_parameter_counts_match_paper(depth: int, params: float) -> None:
    model = build_model(f"resnet{depth}")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - params) / params < 0.02


def test_resnet_depth_must_be_6n_plus_2() -> None:
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


def test_option_a_shortcut_subsamples_and_pads_symmetrically() -> None:
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).view(2, 4, 4, 4)
    y = PadShortcut(4, 8, 2)(x)
    assert y.shape == (2, 8, 2, 2)
    assert torch.equal(y[:, 2:6], x[:, :, ::2, ::2])
    assert y[:, :2].abs().sum() == 0 and y[:, 6:].abs().sum() == 0
    assert list(PadShortcut(4, 8, 2).parameters()) == [] and list(PadShortcut(4, 8, 2).buffers()) == []


def test_small_cnn_works_for_8x8_and_28x28() -> None:
    model = build_model("small_cnn").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_mobilenetv2_width_multiplier_and_depthwise() -> None:
    full = build_model("mobilenetv2")
    half = build_model("mobilenetv2", kwargs={"width_mult": 0.5})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(half) < 0.6 * count(full)
    depthwise = [m for m in full.modules() if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels]
    assert len(depthwise) == 17


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UserError, match="unknown model 'resnet21'; valid names: .*resnet20"):
        build_model("resnet21")


def test_bad_factory_kwargs_name_the_argument() -> None:
    with pytest.raises(UserError, match="no setting 'widht'; valid settings: .*width"):
        build_model("small_cnn", kwargs={"widht": 3})


def test_user_factory_module_function(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def tiny(num_classes=10, hidden=4):
                return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

            def not_a_model():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    model = build_model("my_models:tiny", num_classes=3, in_channels=1, kwargs={"hidden": 5})
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(UserError, match="must return a torch.nn.Module"):
        build_model("my_models:not_a_model")
    with pytest.raises(UserError, match="has no attribute 'missing'"):
        build_model("my_models:missing")
    with pytest.raises(UserError, match="cannot import module 'nope_models'"):
        build_model("nope_models:tiny")
    sys.modules.pop("my_models", None)


def test_weights_round_trip_with_dataparallel_prefix(tmp_path) -> None:
    src = build_model("resnet20")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "best_prec1": 50.0}, path)
    dst = build_model("resnet20")
    meta = load_weights(dst, path, model_name="resnet20")
    assert meta == {"best_prec1": 50.0}
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k])


def test_safetensors_weights_load_and_damaged_ones_are_one_line(tmp_path) -> None:
    from safetensors.torch import save_file

    src = build_model("small_cnn")
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    dst = build_model("small_cnn")
    assert load_weights(dst, tmp_path / "w.safetensors") == {}
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    (tmp_path / "bad.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{nope")
    with pytest.raises(UserError, match="not a valid safetensors file"):
        load_weights(dst, tmp_path / "bad.safetensors")


def test_wrong_architecture_weights_are_a_user_error(tmp_path) -> None:
    path = tmp_path / "r20.pt"
    torch.save(build_model("resnet20").state_dict(), path)
    with pytest.raises(UserError, match="does not fit model 'resnet56'.*missing keys"):
        load_weights(build_model("resnet56"), path, model_name="resnet56")
    with pytest.raises(UserError, match="shape mismatches"):
        load_weights(build_model("resnet20", in_channels=1), path, model_name="resnet20")


def test_non_checkpoint_file_is_a_user_error(tmp_path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint\n")
    with pytest.raises(UserError, match="cannot read weights file"):
        load_weights(build_model("small_cnn"), bad)
    with pytest.raises(UserError, match="does not exist"):
        load_weights(build_model("small_cnn"), tmp_path / "absent.pt")


def test_weights_only_refuses_arbitrary_objects(tmp_path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": build_model("small_cnn").state_dict(), "hook": PadShortcut(1, 1, 1)}, path)
    with pytest.raises(UserError, match="weights_only"):
        load_weights(build_model("small_cnn"), path)


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_pretrained_checkpoints_load_strictly(shared_data, name: str) -> None:
    path = pretrained_path(name, shared_data, download=False)
    model = build_model(name)
    meta = load_weights(model, path, model_name=name)
    assert meta["best_prec1"] == pytest.approx(PRETRAINED[name].reported_top1, abs=0.01)


def test_missing_pretrained_file_names_where_it_goes(tmp_path) -> None:
    with pytest.raises(UserError, match="resnet20-12fca82f.pt in .*weights"):
        pretrained_path("resnet20", tmp_path, download=False)
    with pytest.raises(UserError, match="no pretrained weights are known for model 'mobilenetv2'"):
        load_model("mobilenetv2", weights="pretrained", data_dir=tmp_path)
