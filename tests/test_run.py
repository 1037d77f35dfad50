"""The run folder: one writer at a time, atomic files, one place that knows the layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from automc.errors import UserError
from automc.run import RunDir
from tests.conftest import assert_user_error, run_cli
from tests.search_support import TINY, write_config

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    with run.writer_lock():
        with pytest.raises(UserError, match=f"in use by pid {os.getpid()} on "):
            with RunDir(run.path).writer_lock():  # another descriptor: flock refuses it too
                pass
        proc = run_cli("search", str(write_config(tmp_path, TINY)), "--run-dir", str(run.path))
        assert_user_error(proc, f"in use by pid {os.getpid()}", "--run-dir")
        assert not run.config_file.exists()  # refused before anything was written
    with RunDir(run.path).writer_lock():  # released with its holder
        pass


def test_prepare_refuses_another_config_and_accepts_a_new_budget(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.prepare({"name": "a", "budget": {"candidates": 2}}, {"seed": 0})
    run.prepare({"name": "a", "budget": {"candidates": 5}}, {"seed": 0})
    assert run.read_config()["budget"] == {"candidates": 5}
    with pytest.raises(UserError, match=r"different config \(name: \"a\" -> \"b\"\).*another --run-dir"):
        run.prepare({"name": "b", "budget": {"candidates": 5}}, {"seed": 0})
    assert sorted(p.name for p in run.path.iterdir()) == ["config.yaml", "versions.json"]  # no temporary files left


def test_a_run_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        RunDir(tmp_path / "file").prepare({"name": "a"}, {})
    assert_user_error(run_cli("search", str(write_config(tmp_path, TINY)), "--run-dir", str(tmp_path / "file")), "is a file", "--run-dir")
