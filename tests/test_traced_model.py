"""Channel pruning traces the model once and restores its traced copy after each candidate:
the results must be exactly those of a fresh copy traced per candidate, whatever came before."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from torch import nn

from automc.models import build_model
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.testing._common import same_state
from tests.user_models import concat_cnn, head_vit, shuffle_block_net


def _same(a: nn.Module, b: nn.Module) -> bool:
    return same_state(a.state_dict(), b.state_dict())


def _policies(space: ChannelPruningSpace, n: int, seed: int = 0) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [{k: rng.uniform(0.2, 1.0) for k in space.dimensions} for _ in range(n)]


CASES = {
    # option-A shortcuts (custom pruner), least-squares re-fit on
    "resnet20": (lambda: build_model("resnet20"), (3, 32), {"round_to": 8, "reconstruct": True}),
    # concatenations (torch-pruning edits its concat op's sizes while pruning), depthwise convs
    "concat_cnn": (concat_cnn, (3, 16), {}),
    "densenet_bc": (lambda: build_model("densenet_bc"), (3, 32), {"round_to": 4}),
    # channel split + shuffle: locked groups beside pruned ones
    "shuffle_block_net": (shuffle_block_net, (3, 32), {}),
    # whole attention heads (attributes and parameters edited outside torch-pruning), re-fit on
    "head_vit": (head_vit, (3, 16), {"reconstruct": True}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_traced_copy_gives_exactly_the_fresh_result(name: str) -> None:
    factory, (c, s), config = CASES[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(2, c, s, s)
    space = ChannelPruningSpace(model, x, calibration=[torch.randn(8, c, s, s)], **config)
    fresh = copy.deepcopy(model)  # another model object: pruned from a copy traced per call
    for policy in _policies(space, 4):
        cached = space.apply(model, policy)
        assert space._traced_for(model) is not None
        reference = space.apply(fresh, policy)
        assert _same(cached, reference), name
        with torch.no_grad():
            assert torch.equal(cached(x), reference(x))
    # the traced copy is back to unpruned: the full policy gives the full model
    full = space.apply(model, space.default_params())
    assert _same(full, model) or name == "resnet20"  # ResNet's option-A shortcuts become gathers
    with torch.no_grad():
        assert torch.allclose(full(x), model(x), rtol=1e-5, atol=1e-5 * float(model(x).abs().max()))


def test_a_failed_prune_leaves_the_traced_copy_unpruned(monkeypatch: pytest.MonkeyPatch) -> None:
    model = build_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    space = ChannelPruningSpace(model, x, round_to=8)
    policy = _policies(space, 1)[0]
    before = space.apply(model, policy)
    calls = {"n": 0}
    importance = space._importance

    def failing(group):  # noqa: ANN001, ANN202 - torch-pruning's importance signature
        calls["n"] += 1
        if calls["n"] == 4:  # after three groups were pruned
            raise RuntimeError("boom")
        return importance(group)

    monkeypatch.setattr(space, "_importance", failing)
    with pytest.raises(RuntimeError, match="boom"):
        space.apply(model, policy)
    monkeypatch.setattr(space, "_importance", importance)
    assert _same(space.apply(model, policy), before)


def test_weights_changed_in_place_are_seen() -> None:
    model = build_model("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    space = ChannelPruningSpace(model, x, round_to=8)
    policy = _policies(space, 1)[0]
    first = space._traced_for(model)
    with torch.no_grad():  # e.g. the user fine-tuned the base model in place
        for p in model.parameters():
            p.mul_(1.5)
    pruned = space.apply(model, policy)
    assert space._traced_for(model) is not first  # re-traced from the new weights
    assert _same(pruned, space.apply(copy.deepcopy(model), policy))


class FreeScale(nn.Module):
    """A per-channel ``nn.Parameter`` used outside any layer: torch-pruning re-keys its graph
    when pruning it, so this model is pruned from a fresh copy per candidate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 8).view(1, 8, 1, 1))
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(torch.relu(self.conv1(x)) * self.scale).mean((2, 3)))


def test_a_model_with_a_free_parameter_is_pruned_from_a_fresh_copy() -> None:
    model = FreeScale().eval()
    x = torch.randn(2, 3, 8, 8)
    space = ChannelPruningSpace(model, x)
    assert space._traced_for(model) is None
    traced = space._traced
    policy = {k: 0.5 for k in space.dimensions}
    pruned = space.apply(model, policy)
    assert space._traced is traced  # not traced again for nothing: only the per-candidate copy is
    assert pruned.scale.shape[1] == pruned.conv1.out_channels == 4
    assert model.scale.shape[1] == model.conv1.out_channels == 8
    assert _same(pruned, space.apply(model, policy))
