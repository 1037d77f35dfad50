"""The accelerator model's latency and energy read off a policy
(``AcceleratorProfile.policy_estimate``) equal the built model's, so a target on them is
projected without building each step; where the reading could be wrong the projection still builds."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from automc.device_profiles.accelerator import AcceleratorProfile
from automc.models import build_model
from automc.search.projection import Projector
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from tests.user_models import concat_cnn

KWARGS = {"squeezenet": {"width_mult": 0.25}, "mobilenetv2": {"width_mult": 0.35}}


@functools.cache
def _setup(name: str, round_to: int = 1):  # noqa: ANN202 - (model, x, space)
    torch.manual_seed(0)
    if name == "concat_cnn":
        model, x = concat_cnn().eval(), torch.zeros(1, 3, 16, 16)
    else:
        model, x = build_model(name, kwargs=KWARGS.get(name)).eval(), torch.zeros(1, 3, 32, 32)
    return model, x, ChannelPruningSpace(model, x, round_to=round_to)


@pytest.mark.parametrize("name", ["resnet20", "squeezenet", "mobilenetv2", "concat_cnn"])
def test_the_policy_reading_equals_the_built_models_figures(name: str) -> None:
    """The same floats: residual groups, concatenations (SqueezeNet's fire modules),
    depthwise convolutions (MobileNetV2, ``concat_cnn``) and the classifier. A channel count,
    MAC or stored byte miscounted in any layer changes the sum."""
    model, x, space = _setup(name)
    acc = AcceleratorProfile()
    estimate = acc.policy_estimate(model, space, x)
    assert estimate is not None
    rng = np.random.default_rng(0)
    for params in [space.sample(rng) for _ in range(3)] + [space.sample_across_budgets(rng) for _ in range(3)] + [space.uniform(0.2)]:
        built = acc.measure(space.apply(model, params), x).values
        assert dict(estimate(params)) == built, (params, built)


def test_where_counts_do_not_give_the_figures_there_is_no_reading() -> None:
    """Bit-widths (a mixed-precision space) and a zero weight (its slice may be stored
    sparse, its MACs skipped) need the built model."""
    from automc.search_spaces.mixed_precision import MixedPrecisionSpace

    model, x, space = _setup("resnet20")
    acc = AcceleratorProfile()
    assert acc.policy_estimate(model, MixedPrecisionSpace(model, x), x) is None
    holed = build_model("resnet20").eval()
    with torch.no_grad():
        holed.conv1.weight[0, 0, 0, 0] = 0.0
    assert acc.policy_estimate(holed, ChannelPruningSpace(holed, x), x) is None


@pytest.mark.parametrize("metric", ["energy_mj", "latency_ms"])
def test_an_accelerator_target_is_projected_without_building_each_step(metric: str) -> None:
    """With the reading trusted (it matched the 8 built policies), a proposal's projection
    builds nothing, every projected policy's built figure is within the target, and it is
    the figure the projection reaches when it builds every step (without the reading, the
    MACs line is not trusted for either metric)."""
    model, x, space = _setup("resnet20", round_to=8)
    acc = AcceleratorProfile()
    base = acc.measure(model, x).values
    builds: list[int] = []

    def exact(params):  # noqa: ANN001, ANN202
        builds.append(1)
        return acc.measure(space.apply(model, params), x).values

    reading = acc.policy_estimate(model, space, x)
    assert reading is not None
    limits = [{"metric": metric, "max": 0.6 * base[metric], "spec": "60%", "fraction": 0.6}]
    figures = {}
    for label, estimates in (("read", {metric: lambda p: reading(p)[metric] / base[metric]}), ("built", {})):
        proj = Projector(space, limits, base, analytic=[metric], exact=exact, estimates=estimates)
        assert proj.verify == (set() if label == "read" else {metric})
        before = len(builds)
        rng = np.random.default_rng(1)
        projected = [proj(space.sample(rng)) for _ in range(6)]
        assert (len(builds) == before) == (label == "read")  # the reading builds nothing
        figures[label] = [acc.measure(space.apply(model, p), x).values[metric] for p in projected]
    assert all(v <= limits[0]["max"] for v in figures["read"]), figures
    assert figures["read"] == pytest.approx(figures["built"], rel=1e-9)
