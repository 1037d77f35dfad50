from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from automc.compress.analysis import analyze
from automc.compress.saved import load_compressed, save_compressed
from automc.errors import UserError
from automc.models import build_model
from automc.models.resnet_cifar import ChannelMapShortcut, PadShortcut
from automc.compress.quant import QuantConv2d, QuantLinear
from automc.compress.spaces import SPACES, build_space
from automc.testing import check_search_space, outputs_close
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.search_spaces.mixed_precision import MixedPrecisionSpace
from automc.search_spaces.sparsity import SparsitySpace
from tests.user_models import concat_cnn, mlp_net

MODELS = {
    "resnet20": (lambda: build_model("resnet20"), (3, 32)),
    "mobilenetv2": (lambda: build_model("mobilenetv2", kwargs={"width_mult": 0.5}), (3, 32)),
    "concat_cnn": (concat_cnn, (3, 16)),
    "mlp_net": (mlp_net, (1, 8)),
}


def _setup(name: str, seed: int = 0):
    torch.manual_seed(seed)
    factory, (c, s) = MODELS[name]
    model = factory().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial BN statistics, as in a trained model
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    x = torch.randn(4, c, s, s, generator=gen)
    calib = [torch.randn(8, c, s, s, generator=gen) for _ in range(2)]
    return model, x, calib


@pytest.mark.parametrize("space", SPACES.names())  # every registered space, no list to edit
@pytest.mark.parametrize("model_name", ["resnet20", "mobilenetv2", "concat_cnn"])
def test_every_registered_space_passes_the_conformance_suite(space: str, model_name: str) -> None:
    model, x, calib = _setup(model_name)
    check_search_space(build_space(space, model, x[:1], calibration=calib), model, x)


@pytest.mark.parametrize("space", ["channel_pruning", "mixed_precision", "joint"])
def test_linear_only_transformer_mlp_block(space: str) -> None:
    model, x, calib = _setup("mlp_net")
    sp = build_space(space, model, x[:1], calibration=calib, config={"first_last": "search"} if space == "mixed_precision" else None)
    check_search_space(sp, model, x)
    if space == "mixed_precision":
        q = sp.apply(model, sp.uniform(4))
        assert isinstance(q.fc1, QuantLinear) and q.fc1.w_bits == 4


# --- channel pruning -------------------------------------------------------------------------


def test_resnet_groups_and_inner_only() -> None:
    model, x, _ = _setup("resnet20")
    full = ChannelPruningSpace(model, x[:1])
    assert len(full.dimensions) == 12  # 3 residual stages + 9 block-internal groups
    assert "linear" not in " ".join(full.dimensions)  # the classifier is kept
    inner = ChannelPruningSpace(model, x[:1], mode="inner_only")
    assert sorted(inner.dimensions) == sorted(f"layer{s}.{b}.conv1:ratio" for s in (1, 2, 3) for b in range(3))
    pruned = inner.apply(model, inner.uniform(0.5))
    assert pruned.layer2[1].conv1.out_channels == 16
    assert pruned.layer2[1].conv2.out_channels == 32  # stage width untouched
    assert isinstance(pruned.layer2[0].shortcut, ChannelMapShortcut)
    assert isinstance(model.layer2[0].shortcut, PadShortcut)  # input untouched


def test_pruning_is_physically_smaller_and_round_to() -> None:
    model, x, _ = _setup("resnet20")
    sp = ChannelPruningSpace(model, x[:1], round_to=4)
    pruned = sp.apply(model, sp.uniform(0.55))
    for m in pruned.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels > 3:
            assert m.out_channels % 4 == 0 and m.in_channels % 4 == 0
    before, after = analyze(model, x[:1]), analyze(pruned, x[:1])
    assert after.macs < 0.45 * before.macs and after.params < 0.45 * before.params
    assert sum(p.numel() for p in pruned.parameters()) == after.params  # real tensors, not masks


def _zero_channel_model() -> tuple[nn.Module, torch.Tensor, dict[str, int]]:
    """ResNet-20 whose chosen channels are provably dead (zero after their BN)."""
    model, x, _ = _setup("resnet20", seed=3)
    dead = {"layer1.1.conv1": 5, "layer3.2.conv1": 40}
    with torch.no_grad():
        for name, c in dead.items():
            bn = model.get_submodule(name.replace("conv1", "bn1"))
            bn.weight[c] = 0.0
            bn.bias[c] = 0.0
        # stage 2: channel 3 is a zero-padded shortcut channel; kill it in every block's bn2
        for b in range(3):
            model.layer2[b].bn2.weight[3] = 0.0
            model.layer2[b].bn2.bias[3] = 0.0
    return model, x, dead


def test_pruning_dead_channels_is_exact_including_option_a_shortcuts() -> None:
    model, x, dead = _zero_channel_model()
    sp = ChannelPruningSpace(model, x[:1], criterion="bn_scale")
    params = sp.default_params()
    for name in dead:
        params[f"{name}:ratio"] = 1 - 1 / model.get_submodule(name).out_channels
    params["layer2.0.conv2:ratio"] = 31 / 32  # the stage-2 residual group
    pruned = sp.apply(model, params)
    assert pruned.layer1[1].conv1.out_channels == 15 and pruned.layer3[2].conv1.out_channels == 63
    assert pruned.layer2[0].conv2.out_channels == 31 and pruned.layer3[0].shortcut.index.numel() == 64
    with torch.no_grad():
        assert outputs_close(pruned(x), model(x))  # logits ~180: equal up to float rounding (~2e-7 of them)
    # The tolerance still catches a wrong channel: revive dead channel 5 of layer1.1.conv1, so
    # the channel the same policy removes there is a live one, and the output is visibly off.
    live = copy.deepcopy(model)
    with torch.no_grad():
        live.layer1[1].bn1.weight[5] = model.layer1[1].bn1.weight[4]
        live.layer1[1].bn1.bias[5] = model.layer1[1].bn1.bias[4]
    wrong = ChannelPruningSpace(live, x[:1], criterion="bn_scale").apply(live, params)
    with torch.no_grad():
        live_out = live(x)
        assert not outputs_close(wrong(x), live_out)
        assert float((wrong(x) - live_out).abs().max()) > 1e-3 * float(live_out.abs().max())


def test_reconstruction_recovers_a_removed_channel_that_a_kept_one_repeats() -> None:
    """He et al.'s least-squares re-fit: layer1.1.conv1's channel 4 is an exact copy of
    channel 5 and has the smallest BN scale, so pruning one channel removes it. Re-fitted,
    conv2's weights for channel 5 absorb channel 4's: the output is the uncompressed one up to
    the ridge term (λ = 1e-4 of the Gram diagonal, so ~1e-4 relative); without the re-fit the
    removed channel's contribution is simply lost."""
    model, x, calib = _setup("resnet20", seed=1)
    conv, bn = model.layer1[1].conv1, model.layer1[1].bn1
    with torch.no_grad():
        conv.weight[4] = conv.weight[5]
        for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            t[4] = t[5]
        bn.weight[4] = bn.weight[5] = 0.05  # the lowest scale of the group
        bn.bias[4] = bn.bias[5] = 0.5  # a live channel (ReLU passes it)
        model.layer1[1].conv2.weight[:, 4] *= 4
    params = {"layer1.1.conv1:ratio": 15 / 16}
    plain = ChannelPruningSpace(model, x[:1], calibration=calib, criterion="bn_scale")
    refit = ChannelPruningSpace(model, x[:1], calibration=calib, criterion="bn_scale", reconstruct=True)
    assert plain.config()["reconstruct"] is False and refit.config()["reconstruct"] is True
    before = copy.deepcopy(model.state_dict())
    a, b = plain.apply(model, params), refit.apply(model, params)
    assert b.layer1[1].conv1.out_channels == 15 and b.layer1[1].conv2.in_channels == 15
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # input untouched
    with torch.no_grad():
        ref = model(x)
        scale = float(ref.abs().max())
        assert float((b(x) - ref).abs().max()) <= 1e-3 * scale
        assert float((a(x) - ref).abs().max()) > 1e-2 * scale
    assert torch.equal(refit.apply(model, params)(x), b(x))  # deterministic


@pytest.mark.parametrize("model_name", ["resnet20", "concat_cnn"])
def test_reconstruction_passes_the_conformance_suite_and_cuts_the_pruning_error(model_name: str) -> None:
    model, x, calib = _setup(model_name)
    sp = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    check_search_space(sp, model, x)
    # on inputs like the calibration ones, the re-fitted model is nearer the uncompressed one
    plain = ChannelPruningSpace(model, x[:1], calibration=calib)
    policy = sp.uniform(0.6)
    held_out = torch.cat(_setup(model_name, seed=7)[2])
    with torch.no_grad():
        ref = model(held_out)
        err = lambda m: float((m(held_out) - ref).pow(2).mean())  # noqa: E731
        assert err(sp.apply(model, policy)) < 0.8 * err(plain.apply(model, policy))
    with pytest.raises(UserError, match="reconstruct must be true or false"):
        ChannelPruningSpace(model, x[:1], reconstruct="yes")


def test_refit_solves_are_reused_bit_for_bit_in_a_bounded_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A layer's re-fit depends only on its kept outputs and inputs: a policy met again reuses
    the solves (none repeated) and builds the same weights, bit for bit, as a space solving
    afresh; the cache stays under its byte bound; a layer whose weights were written in place
    is solved again."""
    from automc.search_spaces import reconstruction as rec

    model, x, calib = _setup("resnet20")
    solves: list[str] = []
    solve = rec._solve
    monkeypatch.setattr(rec, "_solve", lambda gram, source, *a: solves.append(id(source)) or solve(gram, source, *a))
    sp = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    half, most = sp.uniform(0.5), sp.uniform(0.75)
    first = sp.apply(model, half).state_dict()
    n = len(solves)
    assert n >= 10
    again = sp.apply(model, half).state_dict()
    assert len(solves) == n and all(torch.equal(v, again[k]) for k, v in first.items())
    other = sp.apply(model, most).state_dict()
    assert len(solves) > n
    fresh = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True).apply(model, most).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in other.items())
    monkeypatch.setattr(rec, "CACHE_BYTES", 1)  # room for one solve: the latest
    tiny = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    tiny.apply(model, half)
    assert len(tiny._reconstructor()._solved) == 1
    n = len(solves)
    with torch.no_grad():
        model.layer3[0].conv2.weight.mul_(1.0)  # same values, written in place
    sp.apply(model, half)
    assert len(solves) > n


def test_prepare_computes_the_refit_statistics_once_before_the_first_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepare()`` (the search's dry run) computes the Gram matrices; candidates then reuse
    them — and build the same model as a space that computed them lazily."""
    from automc.search_spaces.reconstruction import Reconstructor

    model, x, calib = _setup("resnet20")
    calls = []
    compute = Reconstructor._compute
    monkeypatch.setattr(Reconstructor, "_compute", lambda self: calls.append(1) or compute(self))
    eager = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    eager.prepare()
    assert calls == [1]
    policy = eager.uniform(0.6)
    built = eager.apply(model, policy)
    eager.prepare()
    assert calls == [1]  # once per run
    lazy = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    with torch.no_grad():
        assert torch.equal(built(x), lazy.apply(model, policy)(x))
    ChannelPruningSpace(model, x[:1], calibration=calib).prepare()  # without reconstruct: nothing to do
    assert calls == [1, 1]


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=False), nn.Conv2d(3, 4, 1, stride=2)])
def test_the_refit_gathers_exactly_the_sampled_rows_of_the_unfolded_input(conv: nn.Conv2d) -> None:
    """Gathering only the sampled positions' patches gives the rows, in order, that unfolding
    the whole batch and then sampling gave: the Gram matrices are the same bit for bit."""
    from automc.search_spaces.reconstruction import ROWS_PER_BATCH, _rows

    x = torch.randn(16, 3, 40, 36, generator=torch.Generator().manual_seed(0))
    cols = torch.nn.functional.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    every = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    assert every.shape[0] > ROWS_PER_BATCH
    expected = every[torch.randperm(every.shape[0], generator=torch.Generator().manual_seed(3))[:ROWS_PER_BATCH]]
    if conv.bias is not None:
        expected = torch.cat([expected, torch.ones(expected.shape[0], 1)], dim=1)
    assert torch.equal(_rows(conv, x, torch.Generator().manual_seed(3)), expected)


def test_a_copy_of_the_space_takes_the_prepared_statistics_instead_of_computing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """``prepared()`` hands the Gram matrices to another copy of the space (a Ray worker's),
    plain or inside a joint space: it computes nothing and builds the same models; matrices of
    another model are refused."""
    from automc.search_spaces.reconstruction import Reconstructor

    model, x, calib = _setup("resnet20")
    first = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    first.prepare()
    state = first.prepared()
    assert ChannelPruningSpace(model, x[:1], calibration=calib).prepared() == {}
    calls = []
    compute = Reconstructor._compute
    monkeypatch.setattr(Reconstructor, "_compute", lambda self: calls.append(1) or compute(self))
    copy_ = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True)
    copy_.prepare(state)
    policy = first.uniform(0.6)
    with torch.no_grad():
        assert torch.equal(first.apply(model, policy)(x), copy_.apply(model, policy)(x))
    joint = build_space("joint", model, x[:1], calibration=calib, config={"pruning": {"reconstruct": True}})
    joint.prepare({"parts": [state, {}]})
    assert calls == []
    taken = joint.prepared()["parts"][0]["grams"]
    assert taken.keys() == state["grams"].keys() and all(taken[k] is state["grams"][k] for k in taken)
    trimmed = {k: v[:-1, :-1] for k, v in state["grams"].items()}
    with pytest.raises(ValueError, match="does not fit this model's layer"):
        ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True).prepare({"grams": trimmed})


def test_criterion_and_keep_layers() -> None:
    model, x, _ = _setup("resnet20")
    l1 = ChannelPruningSpace(model, x[:1], criterion="l1")
    l2 = ChannelPruningSpace(model, x[:1], criterion="l2", keep_layers=["layer1.0.conv1"])
    assert "layer1.0.conv1:ratio" not in l2.dimensions and "layer1.0.conv1:ratio" in l1.dimensions
    with pytest.raises(UserError, match="keep_layers names unknown layer 'layer9.conv'"):
        ChannelPruningSpace(model, x[:1], keep_layers=["layer9.conv"])
    with pytest.raises(UserError, match="criterion 'l3' is not known; valid: l1, l2, fpgm, bn_scale"):
        ChannelPruningSpace(model, x[:1], criterion="l3")


def test_policy_errors_name_layer_and_range() -> None:
    model, x, _ = _setup("resnet20")
    sp = ChannelPruningSpace(model, x[:1], lbound=0.3)
    with pytest.raises(UserError, match=r"'layer1.0.conv1:ratio' is out of range: allowed \[0.3, 1.0\]"):
        sp.validate({"layer1.0.conv1:ratio": 0.1}, partial=True)
    with pytest.raises(UserError, match="unknown layer 'layer7.conv'"):
        sp.validate({"layer7.conv:ratio": 0.5}, partial=True)
    with pytest.raises(UserError, match="knob 'w_bits' for layer 'layer1.0.conv1'"):
        sp.validate({"layer1.0.conv1:w_bits": 4}, partial=True)


# --- sparsity ---------------------------------------------------------------------------------


def test_sparsity_keeps_exactly_the_largest_weights() -> None:
    model, x, _ = _setup("concat_cnn")
    sp = SparsitySpace(model, x[:1])
    params = sp.uniform(0.3)
    out = sp.apply(model, params)
    for dim in sp.dimensions:
        name = dim.split(":")[0]
        w0, w1 = model.get_submodule(name).weight, out.get_submodule(name).weight
        kept = int(torch.count_nonzero(w1))
        assert kept == int(np.floor(w0.numel() * 0.3 + 0.5))
        assert w1.abs()[w1 != 0].min() >= w0.abs()[w1 == 0].max()  # smallest magnitudes went
    assert analyze(out, x[:1]).effective_macs < 0.35 * analyze(model, x[:1]).macs


# --- mixed precision ----------------------------------------------------------------------------


def test_bit_widths_binarisation_and_kmeans() -> None:
    model, x, calib = _setup("resnet20")
    sp = MixedPrecisionSpace(model, x[:1], calibration=calib, bits=[1, 2, 4, 8])
    params = sp.uniform(4)
    params["layer2.1.conv1:w_bits"] = 1
    q = sp.apply(model, params)
    assert isinstance(q.conv1, QuantConv2d) and q.conv1.w_bits == 8  # first layer fixed at 8 bits
    assert q.linear.w_bits == 8
    w = q.layer1[0].conv1.weight
    assert all(len(torch.unique(w[c])) <= 15 for c in range(w.shape[0]))  # 4-bit symmetric: <= 15 levels
    b = q.layer2[1].conv1.weight
    assert all(len(torch.unique(b[c].abs())) == 1 for c in range(b.shape[0]))  # sign x per-channel scale
    km = MixedPrecisionSpace(model, x[:1], calibration=calib, weight_quantizer="kmeans")
    qk = km.apply(model, km.uniform(3))
    assert len(torch.unique(qk.layer3[0].conv2.weight)) <= 8  # one 8-entry codebook per layer
    size = lambda m: analyze(m, x[:1]).size_bytes  # noqa: E731
    assert size(q) < 0.2 * size(model)


def test_activation_calibration_and_first_last_policies() -> None:
    model, x, calib = _setup("resnet20")
    fp = MixedPrecisionSpace(model, x[:1], calibration=calib, first_last="fp32")
    q = fp.apply(model, fp.uniform(4))
    assert not isinstance(q.conv1, QuantConv2d) and not isinstance(q.linear, QuantLinear)
    layer = q.layer1[0].conv1
    assert layer.a_bits == 4 and float(layer.a_scale) > 0 and layer.act_quant_enabled
    searched = MixedPrecisionSpace(model, x[:1], calibration=calib, first_last="search")
    assert "conv1:w_bits" in searched.dimensions and "linear:a_bits" in searched.dimensions
    with pytest.raises(UserError, match="first_last must be"):
        MixedPrecisionSpace(model, x[:1], first_last="sometimes")


def test_joint_prunes_then_quantises() -> None:
    model, x, calib = _setup("resnet20")
    sp = build_space("joint", model, x[:1], calibration=calib)
    assert any(k.endswith(":ratio") for k in sp.dimensions) and any(k.endswith(":w_bits") for k in sp.dimensions)
    out = sp.apply(model, sp.uniform("0.5,4"))
    assert isinstance(out.layer1[0].conv1, QuantConv2d) and out.layer1[0].conv1.out_channels == 8
    with pytest.raises(UserError, match="fits no dimension"):
        sp.uniform("0")


# --- save / rebuild ---------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["channel_pruning", "joint"])
def test_save_and_rebuild_compressed(tmp_path, space: str) -> None:
    model, x, calib = _setup("resnet20")
    sp = build_space(space, model, x[:1], calibration=calib)
    params = sp.sample(np.random.default_rng(1))
    out = sp.apply(model, params)
    card = {
        "model": {"name": "resnet20", "kwargs": {}, "num_classes": 10, "in_channels": 3},
        "input_shape": [1, 3, 32, 32],
        "space": {"name": space, "config": sp.config()},
        "params": params,
    }
    save_compressed(tmp_path, out, card)
    assert json.loads((tmp_path / "compression.json").read_text())["format"] == "automc.compressed/1"
    back = load_compressed(tmp_path)
    assert torch.equal(back(x), out.eval()(x))


def test_pruning_an_already_pruned_model() -> None:
    model, x, _ = _setup("resnet20")
    sp = ChannelPruningSpace(model, x[:1])
    once = sp.apply(model, sp.uniform(0.6)).eval()
    again_space = ChannelPruningSpace(once, x[:1])
    twice = again_space.apply(once, again_space.uniform(0.5)).eval()
    assert twice.layer3[0].shortcut.in_channels == twice.layer2[2].conv2.out_channels
    assert twice(x).shape == (4, 10)
    assert analyze(twice, x[:1]).macs < 0.5 * analyze(once, x[:1]).macs
