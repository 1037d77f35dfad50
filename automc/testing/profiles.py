"""Conformance of device profiles: :func:`check_device_profile` runs every ``_check_*`` step."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.measure.profiles import DeviceProfile, Measurement
from automc.testing._common import same_state, state_of


def check_device_profile(profile: Any, model: nn.Module, example_input: torch.Tensor, *, deterministic: bool | None = None) -> None:
    """Check the ``DeviceProfile`` contract (in the spirit of stable-baselines3's ``check_env``).

    Rules: a name and declared metrics; ``measure`` returns a ``Measurement`` holding every
    declared metric as a finite, non-negative number, with spreads for known metrics only,
    ``repeats >= 1`` and JSON-serialisable provenance; ``config()``/``describe()`` are
    JSON-serialisable; the model is not modified; analytic profiles (``deterministic``, or
    ``provenance["analytic"]``) return identical values twice.
    """
    _check_declaration(profile)
    before_state, before_repr = state_of(model), repr(model)
    m = profile.measure(model, example_input)
    _check_measurement(profile, m)
    assert same_state(state_of(model), before_state) and repr(model) == before_repr, "measure() modified the model: measure a copy (copy.deepcopy) if you must change it"
    if deterministic or (deterministic is None and m.provenance.get("analytic")):
        again = profile.measure(model, example_input)
        assert dict(again.values) == dict(m.values), "an analytic profile returned different values for the same model: drop provenance['analytic'] or make it deterministic"


def _check_declaration(profile: Any) -> None:
    assert isinstance(profile, DeviceProfile), f"{type(profile).__name__} does not subclass automc.measure.profiles.DeviceProfile"
    assert isinstance(profile.name, str) and profile.name, "profile.name must be a non-empty string: set the class attribute name"
    assert profile.metrics and all(isinstance(m, str) for m in profile.metrics), "profile.metrics must name the metrics measure() reports"
    json.dumps(profile.config())  # stored with every run: JSON values only
    json.dumps(profile.describe(), default=str)


def _check_measurement(profile: DeviceProfile, m: Any) -> None:
    assert isinstance(m, Measurement), f"measure() returned {type(m).__name__}: return an automc.measure.profiles.Measurement"
    for metric in profile.metrics:
        assert metric in m.values, f"declared metric {metric!r} missing from measure(): report every metric in profile.metrics"
        v = m.values[metric]
        assert isinstance(v, (int, float)) and np.isfinite(v) and v >= 0, f"{metric} = {v!r} is not a finite, non-negative number"
    unknown = [k for k in m.spread if not any(k == metric or k.startswith(metric + "_") for metric in m.values)]
    assert not unknown, f"spread names metrics that were not measured: {unknown}; key spreads by the measured metric's name"
    assert int(m.repeats) >= 1, "repeats must be >= 1 (1 for analytic profiles)"
    json.dumps(m.to_dict(), default=str)
