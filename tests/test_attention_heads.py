"""Whole attention heads as channel-pruning dimensions (timm-style packed ``qkv``): exact where
the module's layout allows, locked with the reason where it does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automc.compress.analysis import analyze
from automc.compress.spaces import build_space
from automc.search.cost_model import CostModel
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.testing import check_search_space, outputs_close
from tests.user_models import HeadViT


def _vit(**attention: bool) -> tuple[HeadViT, torch.Tensor]:
    torch.manual_seed(0)
    return HeadViT(**attention).eval(), torch.randn(4, 3, 16, 16)


def _kill_heads(model: HeadViT, block: int, heads: list[int]) -> None:
    """Heads whose query/key/value rows and output columns are all zero: they contribute
    nothing and are the least important."""
    attn = model.blocks[block]["attn"]
    hd, width = attn.head_dim, attn.num_heads * attn.head_dim
    with torch.no_grad():
        for h in heads:
            for part in range(3):
                attn.qkv.weight[part * width + h * hd : part * width + (h + 1) * hd] = 0.0
                attn.qkv.bias[part * width + h * hd : part * width + (h + 1) * hd] = 0.0
            attn.proj.weight[:, h * hd : (h + 1) * hd] = 0.0


def test_dead_heads_leave_exactly_and_removing_live_ones_is_noticed() -> None:
    model, x = _vit()
    sp = ChannelPruningSpace(model, x[:1])
    assert {"blocks.0.attn:ratio", "blocks.1.attn:ratio"} <= set(sp.dimensions)
    assert not any(g["group"].endswith("attn.qkv") for g in sp.locked), "qkv is pruned by heads, not as a channel group"
    info = sp.dimensions["blocks.0.attn:ratio"].info
    assert info["unit"] == "heads" and info["channels"] == 4 and info["producers"] == ["blocks.0.attn.qkv"]
    _kill_heads(model, 0, [1, 2])
    sp = ChannelPruningSpace(model, x[:1])
    with torch.no_grad():
        reference = model(x)
        pruned = sp.apply(model, {"blocks.0.attn:ratio": 0.5})
        attn = pruned.blocks[0]["attn"]
        assert (attn.num_heads, attn.qkv.out_features, attn.proj.in_features) == (2, 48, 16)
        assert model.blocks[0]["attn"].num_heads == 4, "apply must not touch its input"
        assert outputs_close(pruned(x), reference), "removing two dead heads changed the output"
        # one head left: a live head goes too, which must show (the check above can fail)
        assert not outputs_close(sp.apply(model, {"blocks.0.attn:ratio": 0.25})(x), reference)
    assert sp.keep_count(4, 0.2, "blocks.0.attn:ratio") == 1 and sp.keep_count(4, 0.6, "blocks.0.attn:ratio") == 2


@pytest.mark.parametrize("space", ["channel_pruning", "joint"])
def test_head_pruning_passes_the_space_conformance_suite(space: str) -> None:
    model, x = _vit()
    sp = build_space(space, model, x[:1], calibration=[x])
    assert any(d.endswith("attn:ratio") for d in sp.dimensions)
    check_search_space(sp, model, x)
    policy = sp.sample(np.random.default_rng(3))
    with torch.no_grad():
        assert sp.apply(model, policy)(x).shape == (4, 10)


def test_the_cost_model_counts_removed_heads_exactly() -> None:
    model, x = _vit()
    sp = ChannelPruningSpace(model, x[:1])
    cost = CostModel(sp, "macs")
    base = analyze(model, x[:1]).macs
    for seed in range(4):
        params = sp.sample(np.random.default_rng(seed))
        measured = analyze(sp.apply(model, params), x[:1]).macs / base
        assert cost(params) == pytest.approx(measured, rel=1e-9), params


@pytest.mark.parametrize("layout", [{"width_from_input": True}, {"head_major": True}])
def test_heads_that_cannot_leave_exactly_are_locked_with_the_reason(layout: dict[str, bool]) -> None:
    """timm's own forward reshapes to the input width; a head-major packing puts a head's
    query, key and value side by side. Neither is a layout whose heads leave by the rows this
    space removes: the proof on a copy finds that, and the attention is locked."""
    model, x = _vit(**layout)
    sp = ChannelPruningSpace(model, x[:1])
    assert not any(d.endswith("attn:ratio") for d in sp.dimensions)
    heads = [g for g in sp.locked if g["group"].endswith(".attn")]
    assert len(heads) == 2 and all(g["unit"] == "heads" and g["reason"] for g in heads)
    notes = sp.locked_notes()
    assert any("blocks.0.attn (4 heads) via attention heads" in n for n in notes) and all("\n" not in n for n in notes)
    with torch.no_grad():
        assert sp.apply(model, sp.sample(np.random.default_rng(0)))(x).shape == (4, 10)


def test_the_refit_narrows_the_output_projection_to_the_kept_heads() -> None:
    """With ``reconstruct: true`` the output projection is re-fitted on the kept heads'
    outputs: on held-out inputs the pruned attention is closer to the original."""
    model, x = _vit()
    calib = [torch.randn(16, 3, 16, 16) for _ in range(4)]
    policy = {"blocks.0.attn:ratio": 0.5, "blocks.1.attn:ratio": 0.5}
    plain = ChannelPruningSpace(model, x[:1], calibration=calib).apply(model, policy)
    refit = ChannelPruningSpace(model, x[:1], calibration=calib, reconstruct=True).apply(model, policy)
    with torch.no_grad():
        reference = model(x)
        err_plain = float((plain(x) - reference).pow(2).mean())
        err_refit = float((refit(x) - reference).pow(2).mean())
    assert refit.blocks[0]["attn"].num_heads == 2
    assert err_refit < 0.8 * err_plain, (err_refit, err_plain)
