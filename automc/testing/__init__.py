"""Conformance checks every plugin must pass — reusable by third-party packages.

Use them from your own tests::

    from automc.testing import check_search_space

    def test_my_space_conforms():
        model = build_my_model().eval()
        check_search_space(MySpace(model, torch.randn(1, 3, 32, 32)), model, torch.randn(2, 3, 32, 32))

Each check raises ``AssertionError`` naming the broken rule (the way stable-baselines3's
``check_env`` names what is wrong with an environment).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.compress.analysis import OUTPUT_RTOL, analyze, outputs_close  # noqa: F401 - re-exported for plugin tests
from automc.errors import UserError
from automc.compress.spaces import Choice, Float, Int, SearchSpace, split_name


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


def check_search_space(space: SearchSpace, model: nn.Module, example_input: torch.Tensor, *, seed: int = 0) -> None:
    """Check the ``SearchSpace`` contract of ``space`` (built from ``model``).

    Rules: named, JSON-serialisable dimensions; seeded sampling is deterministic and valid;
    params survive a JSON round trip; ``apply`` returns a new, working module and never
    mutates its input; ``apply`` is deterministic; the structure of the result depends only
    on the params (so compressed models can be rebuilt from base + policy + state_dict); the
    default policy changes nothing for ratio spaces; MACs and parameters are monotone in the
    ratios and size is monotone in the bit-widths; bad policies raise ``UserError``.
    """
    dims = space.dimensions
    assert dims, "space has no dimensions"
    for name, dim in dims.items():
        layer, knob = split_name(name)
        assert layer and knob, f"dimension {name!r} is not named '<layer>:<knob>'"
        assert isinstance(dim, (Float, Int, Choice)), f"dimension {name!r} is a {type(dim).__name__}, not Float/Int/Choice"
        json.dumps(dim.to_json())
    json.dumps(space.config())
    json.dumps(space.describe())

    # sampling
    a = space.sample(np.random.default_rng(seed))
    b = space.sample(np.random.default_rng(seed))
    assert a == b, "sample() is not deterministic for equally seeded generators"
    assert list(a) == list(dims), "sample() must return every dimension, in order"
    assert space.validate(a) == a, "validate() changed a sampled policy"
    assert json.loads(json.dumps(a)) == a, "params are not JSON-serialisable without loss"
    for name, dim in dims.items():  # the [0, 1] encoding agents use must round-trip
        back = dim.check(name, dim.from_unit(dim.to_unit(a[name])))
        assert abs(back - a[name]) < 1e-9 if isinstance(dim, Float) else back == a[name], f"{name}: to_unit/from_unit do not round-trip"

    # apply: new module, input untouched, deterministic, working
    before_state, before_repr = _state(model), repr(model)
    reference = _forward(copy.deepcopy(model), example_input)
    out1 = space.apply(model, a)
    assert isinstance(out1, nn.Module), "apply() must return an nn.Module"
    assert out1 is not model, "apply() returned its input"
    assert _same_state(_state(model), before_state), "apply() mutated the input model's parameters or buffers"
    assert repr(model) == before_repr, "apply() changed the input model's structure"
    out2 = space.apply(model, a)
    assert _same_state(_state(out1), _state(out2)), "apply() is not deterministic"
    y1 = _forward(out1, example_input)
    assert y1.shape == reference.shape, f"compressed output shape {tuple(y1.shape)} != original {tuple(reference.shape)}"
    assert torch.isfinite(y1).all(), "compressed model produced non-finite outputs"

    # structure depends only on params
    other = copy.deepcopy(model)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * (p.detach().abs().mean() + 1e-3))
    rebuilt = space.apply(other, a)
    s1, s2 = out1.state_dict(), rebuilt.state_dict()
    assert s1.keys() == s2.keys() and all(s1[k].shape == s2[k].shape for k in s1), (
        "apply() structure depends on weight values, so a saved model cannot be rebuilt from its policy"
    )
    rebuilt.load_state_dict(s1, strict=True)
    assert outputs_close(_forward(rebuilt, example_input), y1), "rebuilt model + saved state_dict differs"

    # default policy compresses nothing (ratio-only spaces are exact)
    default = space.default_params()
    if all(isinstance(d, Float) and d.default == d.high for d in dims.values()):
        y0 = _forward(space.apply(model, default), example_input)
        assert outputs_close(y0, reference), "the default policy changed the model's outputs"

    # monotonicity
    x1 = example_input[:1]
    floats = [d for d in dims.values() if isinstance(d, Float)]
    if floats:
        lo = max(d.low for d in floats)
        values = sorted({lo, (lo + 1) / 2, 1.0})
        prev: tuple[int, int] | None = None
        for v in values:
            params = dict(default)
            params.update({k: d.check(k, min(max(v, d.low), d.high)) for k, d in dims.items() if isinstance(d, Float)})
            st = analyze(space.apply(model, params), x1)
            cur = (st.effective_macs, st.nonzero_params)
            if prev is not None:
                assert cur[0] >= prev[0] and cur[1] >= prev[1], f"MACs/params are not monotone in the ratios (at {v}: {cur} < {prev})"
            prev = cur
    choices = {k: d for k, d in dims.items() if isinstance(d, Choice) and all(isinstance(v, int) for v in d.values)}
    if choices:
        common = sorted(set.intersection(*(set(d.values) for d in choices.values())))
        prev_size = None
        for bits in common:
            params = dict(default)
            params.update({k: bits for k in choices})
            size = analyze(space.apply(model, params), x1).size_bytes
            if prev_size is not None:
                assert size >= prev_size, f"size is not monotone in the bit-widths ({bits} bits: {size} < {prev_size})"
            prev_size = size

    # bad policies
    first, dim = next(iter(dims.items()))
    bad: Any = (dim.low - 1) if isinstance(dim, (Float, Int)) else object()
    try:
        space.validate({first: bad}, partial=True)
    except UserError as exc:
        assert first in str(exc), "the range error must name the dimension"
    else:
        raise AssertionError("validate() accepted an out-of-range value")
    try:
        space.validate({"no.such.layer:ratio": 1.0}, partial=True)
    except UserError as exc:
        assert "no.such.layer" in str(exc), "the unknown-name error must name the layer"
    else:
        raise AssertionError("validate() accepted an unknown dimension")


def check_device_profile(profile: Any, model: nn.Module, example_input: torch.Tensor, *, deterministic: bool | None = None) -> None:
    """Check the ``DeviceProfile`` contract (in the spirit of stable-baselines3's ``check_env``).

    Rules: a name and declared metrics; ``measure`` returns a ``Measurement`` holding every
    declared metric as a finite, non-negative number, with spreads for known metrics only,
    ``repeats >= 1`` and JSON-serialisable provenance; ``config()``/``describe()`` are
    JSON-serialisable; the model is not modified; analytic profiles (``deterministic``, or
    ``provenance["analytic"]``) return identical values twice.
    """
    from automc.measure.profiles import DeviceProfile, Measurement

    assert isinstance(profile, DeviceProfile), f"{type(profile).__name__} does not subclass automc.measure.profiles.DeviceProfile"
    assert isinstance(profile.name, str) and profile.name, "profile.name must be a non-empty string"
    assert profile.metrics and all(isinstance(m, str) for m in profile.metrics), "profile.metrics must name the metrics"
    json.dumps(profile.config())
    json.dumps(profile.describe(), default=str)
    before_state, before_repr = _state(model), repr(model)
    m = profile.measure(model, example_input)
    assert isinstance(m, Measurement), f"measure() returned {type(m).__name__}, not a Measurement"
    for metric in profile.metrics:
        assert metric in m.values, f"declared metric {metric!r} missing from measure()"
        v = m.values[metric]
        assert isinstance(v, (int, float)) and np.isfinite(v) and v >= 0, f"{metric} = {v!r} is not a finite, non-negative number"
    unknown = [k for k in m.spread if not any(k == metric or k.startswith(metric + "_") for metric in m.values)]
    assert not unknown, f"spread names metrics that were not measured: {unknown}"
    assert int(m.repeats) >= 1, "repeats must be >= 1"
    json.dumps(m.to_dict(), default=str)
    assert _same_state(_state(model), before_state) and repr(model) == before_repr, "measure() modified the model"
    if deterministic or (deterministic is None and m.provenance.get("analytic")):
        again = profile.measure(model, example_input)
        assert dict(again.values) == dict(m.values), "an analytic profile returned different values for the same model"


def check_agent(make_agent: Any, space: SearchSpace, *, candidates: int = 12, seed: int = 0) -> None:
    """Check the ``Agent`` contract with a fake evaluator (no model is run).

    ``make_agent()`` must return a fresh agent (same seed each call). Rules: ``ask`` returns
    valid, JSON-serialisable policies of ``space``; ``tell`` accepts completed and failed
    candidates; ``state_dict`` survives ``torch.save``/``torch.load(weights_only=True)`` and
    ``load_state_dict``; two agents built alike propose the same sequence given the same
    outcomes (determinism for a seed, sequential execution); an agent fed a previous run's
    history through ``tell`` keeps proposing valid policies (resume).
    """
    import io

    from automc.search.agent import Agent
    from automc.search.candidate import FAILED, Candidate

    def outcome(i: int, params: dict[str, Any]) -> Candidate:
        if i % 5 == 4:
            return Candidate(i, params, state=FAILED, error="fake failure")
        units = [d.to_unit(params[k]) for k, d in space.dimensions.items()]
        score = float(np.mean(units)) - float(np.var(units))
        return Candidate(i, params, {"accuracy": 0.5 + 0.4 * score, "macs": 1e6 * float(np.mean(units))}, score)

    def run(history: list[Candidate]) -> tuple[list[dict[str, Any]], list[Candidate]]:
        agent = make_agent()
        assert isinstance(agent, Agent), f"{type(agent).__name__} does not subclass automc.search.agent.Agent"
        for c in history:
            agent.tell(c)
        proposals, told = [], []
        try:
            for i in range(len(history), candidates):
                params = agent.ask()
                assert params is not None, "ask() returned None before the agent could have finished"
                assert space.validate(params) == params, "ask() returned an invalid or incomplete policy"
                json.dumps(params)
                c = outcome(i, params)
                agent.tell(c)
                proposals.append(params)
                told.append(c)
            buf = io.BytesIO()
            torch.save(agent.state_dict(), buf)
            buf.seek(0)
            agent.load_state_dict(torch.load(buf, weights_only=True))
        finally:
            agent.close()
        return proposals, told

    first, told = run([])
    second, _ = run([])
    assert first == second, "two agents with the same seed proposed different policies for the same outcomes"
    resumed, _ = run(told[: candidates // 2])
    assert len(resumed) == candidates - candidates // 2
