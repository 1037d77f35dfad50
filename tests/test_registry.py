from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from automc.errors import UserError
from automc.registry import GROUPS, Registry, load_object, refresh, registry
from tests.conftest import run_cli

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it


def _fake_distribution(root: Path, group: str, name: str, target: str) -> None:
    """Write an installed-looking distribution (dist-info with entry points) under ``root``."""
    (root / "thirdparty_automc_plugin.py").write_text(
        textwrap.dedent(
            """
            from automc.measure.profiles import DeviceProfile, Measurement


            class BoardProfile(DeviceProfile):
                # a third party's profile: parameter count as the board's memory use

                name = "board"
                metrics = ("board_params",)

                def __init__(self, bytes_per_param: int = 4):
                    self.bytes_per_param = bytes_per_param

                def config(self):
                    return {"bytes_per_param": self.bytes_per_param}

                def measure(self, model, example_input):
                    n = sum(p.numel() for p in model.parameters())
                    return Measurement({"board_params": float(n * self.bytes_per_param)}, provenance={"analytic": True})


            def make():
                return "made"
            """
        )
    )
    info = root / "thirdparty_automc_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-automc-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {target}\n")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "automc.device_profiles", "my-board", "thirdparty_automc_plugin:BoardProfile")
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh()
    yield tmp_path
    sys.modules.pop("thirdparty_automc_plugin", None)
    refresh()


def test_the_design_groups_exist() -> None:
    for group in ("automc.agents", "automc.search_spaces", "automc.device_profiles", "automc.rewards"):
        assert group in GROUPS
    with pytest.raises(ValueError, match="valid groups"):
        registry("automc.nope")


def test_third_party_entry_point_is_usable_by_name(plugin_path) -> None:
    reg = registry("automc.device_profiles")
    assert "my-board" in reg.names()
    assert reg.describe()["my-board"] == "thirdparty_automc_plugin:BoardProfile"
    assert reg.get("my-board").name == "board"
    # built like a built-in, through the one factory, and it passes the conformance suite
    from automc.measure.profiles import build_profile
    from automc.models import build_model
    from automc.testing import check_device_profile

    profile = build_profile("my-board", {"bytes_per_param": 2})
    check_device_profile(profile, build_model("small_cnn", in_channels=1).eval(), torch.zeros(1, 1, 8, 8))
    with pytest.raises(UserError, match="device profile 'my-board' has no setting 'bytes'; valid settings: bytes_per_param"):
        build_profile("my-board", {"bytes": 2})


def test_third_party_plugin_visible_to_the_cli(plugin_path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("plugins", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    assert table["automc.device_profiles"]["my-board"] == "thirdparty_automc_plugin:BoardProfile"
    assert table["automc.models"]["resnet56"] == "automc.models.resnet_cifar:resnet56"


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UserError, match="unknown dataset 'cifar100'; valid names: cifar10, digits, fashion-mnist, mnist"):
        registry("automc.datasets").get("cifar100")


def test_local_registration_and_module_function(tmp_path, monkeypatch) -> None:
    reg = Registry("automc.rewards")
    reg.register("double", lambda m: 2 * m["accuracy"])
    assert reg.get("double")({"accuracy": 0.5}) == 1.0
    with pytest.raises(UserError, match="already registered"):
        reg.register("double", abs)
    (tmp_path / "my_rewards.py").write_text("def score(metrics):\n    return metrics['accuracy']\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert reg.get("my_rewards:score")({"accuracy": 0.25}) == 0.25
    assert load_object("os.path:join") is os.path.join
    with pytest.raises(UserError, match="must look like 'package.module:function'"):
        load_object("justaname:")
    sys.modules.pop("my_rewards", None)


def test_errors_inside_user_modules_are_one_line_naming_the_cause_and_place(tmp_path, monkeypatch) -> None:
    """A user module that imports a missing package, or raises while importing: one line with
    the package (or exception) and file:line; the original stays chained for AUTOMC_TRACEBACK."""
    (tmp_path / "broken_mod.py").write_text("import not_installed_dependency_xyz\n")
    (tmp_path / "raising_mod.py").write_text("X = 1\nraise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"imports 'not_installed_dependency_xyz', which is not installed.*\(broken_mod.py:1\)") as info:
        load_object("broken_mod:f")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(UserError, match=r"importing module 'raising_mod' .* failed: RuntimeError: no GPU here \(raising_mod.py:2\)"):
        load_object("raising_mod:f")
