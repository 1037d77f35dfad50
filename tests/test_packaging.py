"""The install itself: CPU-only torch, entry points, and the README/CI contract."""

from __future__ import annotations

import re
from importlib.metadata import distributions, entry_points

import torch

from tests.conftest import REPO


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
