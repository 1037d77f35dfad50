"""A lookup table's latency read off a policy (``LookupTableProfile.policy_estimate``) equals
the table's latency of the built model, so a target on it is projected without building each
step; where the reading could be wrong the projection still builds."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from automc.compress.analysis import analyze
from automc.device_profiles.lut import LookupTableProfile, build_lut
from automc.measure.profiles import DeviceProfile, Measurement
from automc.models import build_model
from automc.search.projection import Projector
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from tests.user_models import concat_cnn


class Clock(DeviceProfile):
    """Deterministic stand-in for a timed profile: a per-layer cost that is neither linear in
    the channels nor in the MACs (a staircase of 8-channel blocks plus a fixed part)."""

    name, metrics = "clock", ("latency_ms",)

    def measure(self, model: torch.nn.Module, example_input: torch.Tensor) -> Measurement:
        stats = analyze(model, example_input)
        blocks = sum(-(-s.in_channels // 8) * -(-s.out_channels // 8) * s.output_shape[-1] for s in stats.layers if s.type != "Linear")
        return Measurement({"latency_ms": 0.002 + 1e-9 * stats.macs + 1e-5 * blocks}, {"latency_ms": 0.0}, 1, {})


@functools.cache
def _setup(name: str, round_to: int = 1):  # noqa: ANN202 - (model, x, space, table)
    """The model (small enough that its table builds in seconds), its space and a table."""
    torch.manual_seed(0)
    if name == "concat_cnn":
        model, x = concat_cnn().eval(), torch.zeros(1, 3, 16, 16)
    else:
        model, x = build_model(name, kwargs={"width_mult": 0.25} if name == "squeezenet" else None).eval(), torch.zeros(1, 3, 32, 32)
    space = ChannelPruningSpace(model, x, round_to=round_to)
    return model, x, space, build_lut(model, space, Clock(), x, step=8, n_fit=4)


@pytest.mark.parametrize("name", ["resnet20", "squeezenet", "concat_cnn"])
@pytest.mark.parametrize(("interpolation", "fit"), [("ceil", "constant"), ("linear", "affine")])
def test_the_policy_reading_equals_the_built_models_table_latency(name: str, interpolation: str, fit: str) -> None:
    """Exactly equal (the same floats): residual groups, concatenations (SqueezeNet's fire
    modules: a consumer fed by two groups), depthwise convolutions and a classifier fed by a concatenation
    (``concat_cnn``). A channel miscounted anywhere lands on another cell and breaks it."""
    model, x, space, table = _setup(name)
    lut = LookupTableProfile(table, interpolation=interpolation, fit=fit)
    estimate = lut.policy_estimate(model, space, x)
    assert estimate is not None
    rng = np.random.default_rng(0)
    for params in [space.sample(rng) for _ in range(3)] + [space.sample_across_budgets(rng) for _ in range(3)] + [space.uniform(0.2)]:
        built = lut.measure(space.apply(model, params), x).values["latency_ms"]
        assert estimate(params)["latency_ms"] == built, (params, built)


def test_spaces_that_change_more_than_channels_get_no_reading() -> None:
    from automc.search_spaces.mixed_precision import MixedPrecisionSpace

    model, x, space, table = _setup("resnet20")
    lut = LookupTableProfile(table)
    assert lut.policy_estimate(model, MixedPrecisionSpace(model, x), x) is None  # bit-widths change the table key
    other, y, other_space, _ = _setup("concat_cnn")
    assert lut.policy_estimate(other, other_space, y) is None  # layers the table lacks


def test_a_lut_target_is_projected_without_building_each_step() -> None:
    """With the reading trusted (it matched the 8 built policies), a proposal's projection
    builds nothing, and every projected policy's built latency is on the target."""
    model, x, space, table = _setup("resnet20", round_to=8)
    lut = LookupTableProfile(table, interpolation="linear")
    base = {"latency_ms": lut.measure(model, x).values["latency_ms"]}
    builds: list[int] = []

    def exact(params):  # noqa: ANN001, ANN202
        builds.append(1)
        return lut.measure(space.apply(model, params), x).values

    reading = lut.policy_estimate(model, space, x)
    assert reading is not None
    limits = [{"metric": "latency_ms", "max": 0.6 * base["latency_ms"], "spec": "60%", "fraction": 0.6}]
    estimates = {"latency_ms": lambda p: reading(p)["latency_ms"] / base["latency_ms"]}
    proj = Projector(space, limits, base, analytic=["latency_ms"], exact=exact, estimates=estimates)
    assert proj.verify == set()
    before = len(builds)
    rng = np.random.default_rng(1)
    projected = [proj(space.sample(rng)) for _ in range(6)]
    assert len(builds) == before  # nothing built while projecting
    for p in projected:
        value = lut.measure(space.apply(model, p), x).values["latency_ms"]
        assert 0.55 * base["latency_ms"] <= value <= limits[0]["max"], value / base["latency_ms"]
