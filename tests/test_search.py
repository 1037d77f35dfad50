from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from automc.search.agent import build_agent
from automc.search.candidate import COMPLETE, FAILED, Candidate
from automc.config import Constraint, Objective, parse_config
from automc.errors import UserError
from automc.models import build_model
from automc.search.rewards import amc, haq, mnas, resolve_reward, weighted
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from tests.conftest import REPO, assert_user_error, run_cli

TINY = {
    "name": "tiny",
    "seed": 0,
    "model": {"name": "small_cnn", "kwargs": {"width": 4}, "train": {"epochs": 3}},
    "data": {"dataset": "digits", "calibration_batches": 2, "validation": 120},
    "space": {"name": "channel_pruning"},
    "profiles": [{"name": "flops"}],
    "reward": {"name": "amc"},
    "agent": {"name": "random"},
    "budget": {"candidates": 6},
}


def _write(tmp_path: Path, cfg: dict, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _trials(run_dir: Path) -> list[tuple]:
    with sqlite3.connect(run_dir / "study.db") as db:
        return db.execute("select number, state, datetime_complete from trials order by number").fetchall()


# --- rewards -----------------------------------------------------------------------------------


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


# --- agents: the ask/tell contract ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_space():
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=1, kwargs={"width": 4}).eval()
    return ChannelPruningSpace(model, torch.zeros(1, 1, 8, 8))


def _fake_eval(number: int, params: dict) -> Candidate:
    s = float(np.mean(list(params.values())))
    return Candidate(number, params, {"accuracy": 0.5 + 0.4 * s, "macs": 1e5 * s}, 0.5 + 0.4 * s - 0.3 * s * s)


AGENT_CONFIGS = {
    "random": {},
    "optuna-tpe": {},
    "optuna-nsga2": {"population_size": 4},
    "ddpg": {"budget": 0.6, "warmup_episodes": 3},
    "ppo": {"budget": 0.6, "episodes_per_update": 2},
    "mnas-controller": {"episodes_per_update": 2},
}


@pytest.mark.parametrize("name", list(AGENT_CONFIGS))
def test_agents_pass_the_conformance_suite(tiny_space, name: str) -> None:
    from automc.testing import check_agent

    objectives = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]
    check_agent(lambda: build_agent(name, tiny_space, objectives, seed=3, config=AGENT_CONFIGS[name]), tiny_space)


def test_random_agent_resumes_the_same_sequence(tiny_space) -> None:
    objectives = [Objective(metric="accuracy", direction="maximize")]
    a = build_agent("random", tiny_space, objectives, seed=3)
    seq = [a.ask(n) for n in range(8)]
    b = build_agent("random", tiny_space, objectives, seed=3)
    for i, p in enumerate(seq[:5]):
        b.tell(_fake_eval(i, p))
    assert [b.ask(n) for n in range(5, 8)] == seq[5:]


def test_nsga2_records_constraints_for_constrained_domination(tiny_space) -> None:
    import warnings

    objectives = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated Optuna API
        agent = build_agent("optuna-nsga2", tiny_space, objectives, seed=0, constraints=[Constraint(metric="macs", max=7e4)], config={"population_size": 4})
        live = agent.ask(0)
        agent.tell(_fake_eval(0, live))
        replayed = tiny_space.sample(np.random.default_rng(1))
        agent.tell(_fake_eval(1, replayed))
    trials = agent.study.get_trials()
    for t, params in zip(trials, (live, replayed)):
        macs = _fake_eval(0, params).metrics["macs"]
        assert t.constraints == {"macs<=70000": pytest.approx(macs - 7e4)}


# --- config errors ---------------------------------------------------------------------------------


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    assert_user_error(run_cli("search", str(_write(tmp_path, {**TINY, "agnet": {}}))), "unknown key 'agnet'", "valid keys: name, seed, model")
    bad = {**TINY, "objectives": [{"metric": "accuracy", "direction": "up"}]}
    assert_user_error(run_cli("search", str(_write(tmp_path, bad))), "objectives.0.direction", "'maximize' or 'minimize'")
    assert_user_error(run_cli("search", str(_write(tmp_path, {**TINY, "agent": {"name": "ddpgg"}}))), "unknown agent 'ddpgg'", "optuna-tpe")
    assert_user_error(run_cli("search", str(tmp_path / "missing.yaml")), "does not exist")
    with pytest.raises(UserError, match="budget"):
        parse_config({**TINY, "budget": {}})


# --- runs --------------------------------------------------------------------------------------------


def test_search_runs_and_status_reports(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("search", str(_write(tmp_path, TINY)), "--run-dir", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] == 6 and summary["failed"] == 0
    for name in ("config.yaml", "versions.json", "study.db", "base_model.pt"):
        assert (run_dir / name).exists()
    status = json.loads(run_cli("status", str(run_dir), "--json").stdout)
    assert status["finished"] == 6 and status["best"][0]["reward"] == max(c["reward"] for c in status["best"])
    assert {"accuracy", "macs", "base_accuracy"} <= set(status["best"][0]["metrics"])
    # the same command again: nothing left to do, nothing recomputed
    before = _trials(run_dir)
    again = json.loads(run_cli("search", str(_write(tmp_path, TINY)), "--run-dir", str(run_dir), "--json").stdout)
    assert again["evaluated_now"] == 0 and _trials(run_dir) == before
    changed = {**TINY, "seed": 1}
    assert_user_error(run_cli("search", str(_write(tmp_path, changed, "other.yaml")), "--run-dir", str(run_dir)), "different config", "seed")


def test_custom_reward_by_name_and_failing_reward(tmp_path: Path) -> None:
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            """
            def small_and_accurate(metrics, alpha=1.0):
                return metrics["accuracy"] - alpha * metrics["macs"] / metrics["base_macs"]

            def picky(metrics):
                if metrics["macs"] > 0.5 * metrics["base_macs"]:
                    raise ValueError("too big for me")
                return metrics["accuracy"]
            """
        )
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    cfg = {**TINY, "reward": {"name": "my_rewards:small_and_accurate", "kwargs": {"alpha": 0.5}}}
    proc = run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(tmp_path / "a"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout)["best"][0]
    m = best["metrics"]
    assert best["reward"] == pytest.approx(m["accuracy"] - 0.5 * m["macs"] / m["base_macs"])
    cfg = {**TINY, "reward": {"name": "my_rewards:picky"}, "agent": {"name": "random", "config": {"sampler": "budgets"}}, "budget": {"candidates": 8}}
    proc = run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(tmp_path / "b"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["failed"] >= 1 and summary["finished"] >= 1 and summary["finished"] + summary["failed"] == 8
    from automc.run import RunDir
    from automc.search.store import Store

    failed = [c for c in Store(RunDir(tmp_path / "b").storage_url(None), "tiny").candidates() if c.state == FAILED]
    assert "reward raised ValueError: too big for me (my_rewards.py:" in failed[0].error


def test_a_kill_between_enqueue_and_ask_leaves_no_waiting_trial_to_mismatch(tmp_path: Path) -> None:
    """Store.begin enqueues then asks; a kill in between leaves a WAITING trial. On resume it
    is failed as interrupted and its params proposed again, so the next candidate's trial
    holds the next candidate's params (Optuna would otherwise hand it the stale one)."""
    import optuna

    from automc.search.store import Store

    url = f"sqlite:///{tmp_path / 'study.db'}"
    dists = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    store = Store(url, "s")
    first = store.next_number()
    store.begin(first, {"x": 0.1}, dists)
    store.finish(Candidate(first, {"x": 0.1}, metrics={"accuracy": 0.5}, reward=0.5, state=COMPLETE))
    store.study.enqueue_trial({"x": 0.2}, skip_if_exists=False)  # killed before the ask
    resumed = Store(url, "s")
    assert resumed.mark_interrupted(dists) == [{"x": 0.2}]
    waiting = resumed.study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert waiting == []
    number = resumed.next_number()
    resumed.begin(number, {"x": 0.3}, dists)
    assert resumed.study.trials[number].params == {"x": 0.3}
    assert [c.params for c in resumed.candidates(include_interrupted=True) if c.state == FAILED] == [{"x": 0.2}]


def test_sigkill_mid_search_resumes_without_recomputing(tmp_path: Path) -> None:
    cfg = {**TINY, "budget": {"candidates": 30}, "agent": {"name": "optuna-tpe", "config": {"n_startup_trials": 5}}}
    path = _write(tmp_path, cfg)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automc", "search", str(path), "--run-dir", str(run_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    finished: list[tuple] = []
    while time.time() < deadline:
        time.sleep(0.5)
        if (run_dir / "study.db").exists():
            try:
                finished = [t for t in _trials(run_dir) if t[1] == "COMPLETE"]
            except sqlite3.OperationalError:
                continue
            if len(finished) >= 8:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= len(finished) < 30, "the search must be killed part-way"
    before = {t[0]: t for t in _trials(run_dir) if t[1] == "COMPLETE"}

    out = run_cli("search", str(path), "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    after = _trials(run_dir)
    for number, row in before.items():  # every earlier finished candidate kept, untouched
        assert row in after
    assert summary["finished"] == 30 and summary["evaluated_now"] == 30 - len(before)
    assert sum(1 for t in after if t[1] == "COMPLETE") == 30
    assert len(after) - 30 == summary["interrupted"] <= 1  # at most the one killed mid-evaluation
    status = json.loads(run_cli("status", str(run_dir), "--json").stdout)
    assert status["finished"] == 30 and status["running"] == 0


def test_rl_env_passes_check_env_and_clamps_to_budget(tiny_space) -> None:
    from stable_baselines3.common.env_checker import check_env

    from automc.search.gym_env import CompressionEnv, CostModel

    env = CompressionEnv(tiny_space, budget=0.4)
    check_env(env)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:  # the greediest possible actions
        obs, reward, done, _, info = env.step(np.array([1.0], dtype=np.float32))
    assert info["cost"] <= 0.4 + 1e-9
    assert CostModel(tiny_space)(tiny_space.default_params()) == pytest.approx(1.0)


def test_ddpg_search_meets_its_budget_and_can_be_extended(tmp_path: Path) -> None:
    cfg = {**TINY, "agent": {"name": "ddpg", "config": {"budget": 0.5, "warmup_episodes": 2}}, "budget": {"candidates": 5}}
    run_dir = tmp_path / "run"
    first = json.loads(run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(run_dir), "--json").stdout)
    assert first["finished"] == 5 and (run_dir / "agent_state.pt").exists()
    state = torch.load(run_dir / "agent_state.pt", weights_only=True)
    assert int(state["episodes"]) == 5
    cfg["budget"] = {"candidates": 8}
    out = run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout)
    assert second["evaluated_now"] == 3 and second["finished"] == 8
    from automc.run import RunDir
    from automc.search.store import Store

    for c in Store(RunDir(run_dir).storage_url(None), "tiny").candidates():
        assert c.metrics["macs"] <= 0.5 * c.metrics["base_macs"] * 1.01, c.number


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_are_valid(path: Path) -> None:
    from automc.search.agent import AGENTS
    from automc.config import load_config
    from automc.measure.profiles import PROFILES
    from automc.search.rewards import REWARDS
    from automc.compress.spaces import SPACES

    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.agent.name in AGENTS and cfg.space.name in SPACES and cfg.reward.name in REWARDS
    assert all(p.name in PROFILES for p in cfg.profiles)


def test_amc_experiment_runs_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    import automc.config as C

    cfg = C.load_config(REPO / "experiments" / "amc_resnet56_cifar10.yaml").model_dump()
    cfg["budget"] = {"candidates": 2}
    cfg["data"] = {**cfg["data"], "data_dir": str(shared_data), "validation": 200, "calibration_batches": 2}
    proc = run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] == 2
    for c in summary["best"]:
        assert c["metrics"]["macs"] <= 0.5 * c["metrics"]["base_macs"] * 1.01


KILLER = """
import os
from automc.compress.analysis import analyze
from automc.measure.profiles import DeviceProfile, Measurement


class Killer(DeviceProfile):
    '''Crashes the whole worker process for small candidates.'''

    name = "killer"
    metrics = ("macs",)

    def measure(self, model, example_input):
        macs = analyze(model, example_input[:1]).macs
        if macs < 60000:
            os._exit(1)
        return Measurement({"macs": float(macs)}, {}, 1, {"analytic": True})
"""


def test_ray_workers_survive_a_candidate_that_kills_its_worker(tmp_path: Path) -> None:
    (tmp_path / "killer_profile.py").write_text(KILLER)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    cfg = {
        **TINY,
        "profiles": [{"name": "killer_profile:Killer"}],
        "agent": {"name": "random", "config": {"sampler": "budgets"}},
        "budget": {"candidates": 10},
        "model": {"name": "small_cnn", "kwargs": {"width": 8}, "train": {"epochs": 2}},
    }
    run_dir = tmp_path / "run"
    proc = run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(run_dir), "--workers", "2", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] + summary["failed"] == 10 and summary["failed"] >= 1 and summary["finished"] >= 1
    from automc.run import RunDir
    from automc.search.store import Store

    errors = [c.error for c in Store(RunDir(run_dir).storage_url(None), "tiny").candidates() if c.state == FAILED]
    assert all("worker died" in e for e in errors)


def test_resnet20_search_sigkilled_and_resumed(shared_data: Path, tmp_path: Path) -> None:
    """The issue's must-show on the real model: kill -9 part-way, same command again."""
    cfg = {
        "name": "r20",
        "model": {"name": "resnet20", "weights": "pretrained"},
        "data": {"dataset": "cifar10", "data_dir": str(shared_data), "eval_split": "test-exact", "calibration_split": "train-exact", "validation": 200, "calibration_batches": 2},
        "space": {"name": "channel_pruning", "config": {"round_to": 8}},
        "profiles": [{"name": "flops"}],
        "reward": {"name": "amc"},
        "agent": {"name": "optuna-tpe", "config": {"n_startup_trials": 5}},
        "budget": {"candidates": 16},
    }
    path = _write(tmp_path, cfg)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automc", "search", str(path), "--run-dir", str(run_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            if sum(1 for t in _trials(run_dir) if t[1] == "COMPLETE") >= 5:
                break
        except (sqlite3.OperationalError, FileNotFoundError):
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t[0]: t for t in _trials(run_dir) if t[1] == "COMPLETE"}
    assert 5 <= len(before) < 16
    out = run_cli("search", str(path), "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    after = _trials(run_dir)
    assert all(row in after for row in before.values())
    status = json.loads(run_cli("status", str(run_dir), "--json").stdout)
    assert status["finished"] == 16 and status["running"] == 0
    assert json.loads(out.stdout)["evaluated_now"] == 16 - len(before)


def test_postgresql_storage(tmp_path: Path) -> None:
    """Runs against a real server when AUTOMC_TEST_POSTGRES holds its URL."""
    url = os.environ.get("AUTOMC_TEST_POSTGRES")
    if not url:
        pytest.skip("set AUTOMC_TEST_POSTGRES=postgresql://user@host:port/db to test a PostgreSQL store")
    cfg = {**TINY, "name": f"pg_{os.getpid()}_{int(time.time())}", "storage": url, "budget": {"candidates": 4}}
    run_dir = tmp_path / "run"
    first = json.loads(run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(run_dir), "--json").stdout)
    assert first["finished"] == 4 and not (run_dir / "study.db").exists()
    cfg["budget"] = {"candidates": 6}
    second = json.loads(run_cli("search", str(_write(tmp_path, cfg)), "--run-dir", str(run_dir), "--json").stdout)
    assert second["finished"] == 6 and second["evaluated_now"] == 2
