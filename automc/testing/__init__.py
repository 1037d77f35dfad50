"""Conformance checks every plugin must pass — reusable by third-party packages.

Use them from your own tests::

    from automc.testing import check_search_space

    def test_my_space_conforms():
        model = build_my_model().eval()
        check_search_space(MySpace(model, torch.randn(1, 3, 32, 32)), model, torch.randn(2, 3, 32, 32))

Each check is a sequence of small ``_check_*`` steps and raises ``AssertionError`` naming the
broken rule and how to fix the plugin (the way stable-baselines3's ``check_env`` names what is
wrong with an environment).
"""

from __future__ import annotations

from automc.compress.analysis import OUTPUT_RTOL, outputs_close
from automc.testing.agents import check_agent
from automc.testing.profiles import check_device_profile
from automc.testing.spaces import check_search_space

__all__ = ["OUTPUT_RTOL", "check_agent", "check_device_profile", "check_search_space", "outputs_close"]
