"""Rewards: the built-ins and resolving by name."""

from __future__ import annotations


import numpy as np
import pytest

from automc.errors import UserError
from automc.search.rewards import amc, haq, mnas, resolve_reward, weighted


def test_builtin_rewards() -> None:
    m = {"accuracy": 0.9, "macs": 1e6, "latency_ms": 2.0, "base_accuracy": 0.92}
    assert amc(m) == pytest.approx(-0.1 * np.log(1e6))
    assert mnas(m, target=1.0) == pytest.approx(0.9 * 2.0**-0.07)
    assert mnas(m, target=4.0, mode="hard") == pytest.approx(0.9)
    assert mnas(m, target=1.0, mode="hard") == pytest.approx(0.45)
    assert haq(m, budget={"latency_ms": 4.0}) == pytest.approx(0.1 * -2.0)
    assert haq(m, budget={"latency_ms": 1.0}) < haq(m, budget={"latency_ms": 4.0})
    assert weighted(m, weights={"accuracy": 1, "latency_ms": -0.1}) == pytest.approx(0.7)
    assert resolve_reward("accuracy", {"budget": {"macs": 5e5}})(m) == pytest.approx(0.9 - 1.0)
    with pytest.raises(UserError, match="unknown reward 'nope'; valid names: accuracy, amc, haq, mnas, weighted"):
        resolve_reward("nope")
