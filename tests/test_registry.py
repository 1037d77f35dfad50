from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from automc.errors import UserError
from automc.registry import GROUPS, Registry, load_object, refresh, registry
from tests.conftest import run_cli


def _fake_distribution(root: Path, group: str, name: str, target: str) -> None:
    """Write an installed-looking distribution (dist-info with entry points) under ``root``."""
    (root / "thirdparty_automc_plugin.py").write_text(
        textwrap.dedent(
            """
            class BoardProfile:
                name = "board"

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


def test_import_errors_inside_user_modules_are_not_masked(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_mod.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="not_installed_dependency_xyz"):
        load_object("broken_mod:f")
