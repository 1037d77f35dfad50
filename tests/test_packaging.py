"""The install itself: CPU-only torch, entry points, and the README/CI contract."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import distributions, entry_points

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it


def test_no_cuda_packages_installed() -> None:
    names = sorted({(d.metadata["Name"] or "").lower() for d in distributions()})
    cuda = [n for n in names if n.startswith(("nvidia-", "cuda-", "triton"))]
    assert not cuda, f"CUDA packages were pulled in: {cuda}"
    assert torch.version.cuda is None


def test_builtin_entry_points_resolve() -> None:
    for group in ("automc.models", "automc.datasets"):
        eps = entry_points(group=group)
        assert len(eps) >= 4
        for ep in eps:
            assert ep.load() is not None


def test_console_script_registered() -> None:
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("automc") == "automc.cli:main"


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README must open with a code block holding the two commands"
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "scripts/test.sh" in commands[1]
    assert "pytest" in (REPO / "scripts" / "test.sh").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci


def _collected(*args: str, repeat: bool = False) -> set[str]:
    env = {**os.environ, "AUTOMC_TEST_REPEAT": "1" if repeat else "0"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {ln for ln in proc.stdout.splitlines() if "::" in ln}


def test_the_two_thread_pass_leaves_out_exactly_the_one_pass_tests() -> None:
    """scripts/test.sh's second pass (AUTOMC_TEST_REPEAT=1) drops the tests marked one_pass
    and nothing else, and the suites whose assertions compare torch's figures are not marked."""
    every, one_pass, repeat = _collected(), _collected("-m", "one_pass"), _collected(repeat=True)
    assert one_pass and repeat == every - one_pass
    for numeric in ("tests/test_int8.py::", "tests/test_spaces.py::test_every_registered_space", "tests/test_zoo.py::test_every_zoo_model", "tests/test_recover.py::test_a_killed_recovery", "tests/test_cli.py::test_pretrained_accuracy[resnet56-test-exact"):
        assert any(t.startswith(numeric) for t in repeat), numeric
