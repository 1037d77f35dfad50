"""Shared fixtures: the real data beside the checkout, a hermetic data dir, a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# scripts/test.sh runs the suite with torch on 1 thread and on 2 (AUTOMC_TEST_THREADS), so an
# assertion that only holds for one summation order fails in CI. OMP_NUM_THREADS carries the
# count to the CLI subprocesses, whose torch reads it at start.
TEST_THREADS = os.environ.get("AUTOMC_TEST_THREADS")
if TEST_THREADS:
    torch.set_num_threads(int(TEST_THREADS))
    os.environ["OMP_NUM_THREADS"] = TEST_THREADS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The 2-thread pass (AUTOMC_TEST_REPEAT=1) leaves out tests marked ``one_pass``: input
    checks, files, locks, HTTP and rendering assert nothing a summation order can change, and
    the 1-thread pass ran them. Reported as deselected, so the count stays visible."""
    if os.environ.get("AUTOMC_TEST_REPEAT") != "1":
        return
    kept = [item for item in items if item.get_closest_marker("one_pass") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("one_pass") is not None])
        items[:] = kept


REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUTOMC_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _hermetic_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read or write a user's real data dir: default to an empty temporary one."""
    monkeypatch.setenv("AUTOMC_DATA_DIR", str(tmp_path_factory.mktemp("empty-data")))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets and weights in ../shared/data (skipped when absent)."""
    if not (SHARED / "weights").is_dir() or not (SHARED / "cifar10").is_dir():
        pytest.skip(f"real data not found at {SHARED} (set AUTOMC_SHARED_DATA to the folder holding cifar10/ and weights/)")
    return SHARED


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m automc ARGS`` in a subprocess; returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "automc", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user mistake: exit 2, one line on stderr naming the problem, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def tiny_space():  # noqa: ANN201 - a ChannelPruningSpace
    """A channel-pruning space over a 4-wide CNN on 8×8 inputs (agents' tests)."""
    from automc.models import build_model
    from automc.search_spaces.channel_pruning import ChannelPruningSpace

    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=1, kwargs={"width": 4}).eval()
    return ChannelPruningSpace(model, torch.zeros(1, 1, 8, 8))
