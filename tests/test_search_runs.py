"""Whole searches: config errors, runs, resume after kill -9, Ray workers, real data."""

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

import pytest
import torch
import yaml

from automc.config import parse_config
from automc.errors import UserError
from automc.search.candidate import FAILED
from tests.conftest import REPO, assert_user_error, run_cli
from tests.search_support import TINY, trials_of, write_config


@pytest.mark.one_pass
def test_config_errors_are_one_line(tmp_path: Path) -> None:
    run = ("--run-dir", str(tmp_path / "run"))
    assert_user_error(run_cli("search", str(write_config(tmp_path, {**TINY, "agnet": {}})), *run), "unknown key 'agnet'", "valid keys: name, seed, model")
    bad = {**TINY, "objectives": [{"metric": "accuracy", "direction": "up"}]}
    assert_user_error(run_cli("search", str(write_config(tmp_path, bad)), *run), "objectives.0.direction", "'maximize' or 'minimize'")
    assert_user_error(run_cli("search", str(write_config(tmp_path, {**TINY, "agent": {"name": "ddpgg"}})), *run), "unknown agent 'ddpgg'", "optuna-tpe")
    assert not (tmp_path / "run" / "config.yaml").exists()  # a failed start writes no config: fix and rerun
    assert not (tmp_path / "run" / "base_model.pt").exists()  # nor trains: the agent was checked on the untrained model
    assert_user_error(run_cli("search", str(tmp_path / "missing.yaml")), "does not exist")
    with pytest.raises(UserError, match="budget"):
        parse_config({**TINY, "budget": {}})


@pytest.mark.one_pass
def test_search_runs_and_status_reports(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli("search", str(write_config(tmp_path, TINY)), "--run-dir", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] == 6 and summary["failed"] == 0
    for name in ("config.yaml", "versions.json", "study.db", "base_model.pt"):
        assert (run_dir / name).exists()
    status = json.loads(run_cli("status", str(run_dir), "--json").stdout)
    assert status["finished"] == 6 and status["best"][0]["reward"] == max(c["reward"] for c in status["best"])
    assert {"accuracy", "macs", "base_accuracy"} <= set(status["best"][0]["metrics"])
    # the same command again: nothing left to do, nothing recomputed
    before = trials_of(run_dir)
    again = json.loads(run_cli("search", str(write_config(tmp_path, TINY)), "--run-dir", str(run_dir), "--json").stdout)
    assert again["evaluated_now"] == 0 and trials_of(run_dir) == before
    # a run written by an automc without a setting added since (at its default) still resumes
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    del stored["device"]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    older = run_cli("search", str(write_config(tmp_path, TINY)), "--run-dir", str(run_dir), "--json")
    assert older.returncode == 0 and json.loads(older.stdout)["evaluated_now"] == 0, older.stderr
    changed = {**TINY, "seed": 1}
    assert_user_error(run_cli("search", str(write_config(tmp_path, changed, "other.yaml")), "--run-dir", str(run_dir)), "different config", "seed")


@pytest.mark.one_pass
def test_custom_reward_by_name_and_failing_reward(tmp_path: Path) -> None:
    (tmp_path / "my_rewards.py").write_text(
        textwrap.dedent(
            """
            def small_and_accurate(metrics, alpha=1.0):
                return metrics["accuracy"] - alpha * metrics["macs"] / metrics["base_macs"]

            def picky(metrics):
                if metrics["macs"] < 0.5 * metrics["base_macs"]:
                    raise ValueError("too small for me")
                return metrics["accuracy"]

            def fussy(metrics):
                if metrics["macs"] >= metrics["base_macs"]:
                    raise ValueError("too big for me")
                return metrics["accuracy"]
            """
        )
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    cfg = {**TINY, "reward": {"name": "my_rewards:small_and_accurate", "kwargs": {"alpha": 0.5}}}
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(tmp_path / "a"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    best = json.loads(proc.stdout)["best"][0]
    m = best["metrics"]
    assert best["reward"] == pytest.approx(m["accuracy"] - 0.5 * m["macs"] / m["base_macs"])
    cfg = {**TINY, "reward": {"name": "my_rewards:picky"}, "agent": {"name": "random", "config": {"sampler": "budgets"}}, "budget": {"candidates": 8}}
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(tmp_path / "b"), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["failed"] >= 1 and summary["finished"] >= 1 and summary["finished"] + summary["failed"] == 8
    from automc.run import RunDir
    from automc.search.store import Store

    failed = [c for c in Store(RunDir(tmp_path / "b").storage_url(None), "tiny").candidates() if c.state == FAILED]
    assert "reward raised ValueError: too small for me (my_rewards.py:" in failed[0].error
    # a reward that fails on the uncompressed model is caught by the dry run, before the budget
    cfg = {**TINY, "reward": {"name": "my_rewards:fussy"}}
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(tmp_path / "c"), env=env)
    assert_user_error(proc, "reward 'my_rewards:fussy' fails on the uncompressed model: ValueError: too big for me (my_rewards.py:")
    assert not (tmp_path / "c" / "study.db").exists() and not (tmp_path / "c" / "config.yaml").exists()


@pytest.mark.one_pass
def test_sigkill_mid_search_resumes_without_recomputing(tmp_path: Path) -> None:
    cfg = {**TINY, "budget": {"candidates": 30}, "agent": {"name": "optuna-tpe", "config": {"n_startup_trials": 5}}}
    path = write_config(tmp_path, cfg)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automc", "search", str(path), "--run-dir", str(run_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    finished: list[tuple] = []
    while time.time() < deadline:
        time.sleep(0.02)  # a tiny candidate takes ~20 ms: poll often enough to kill part-way
        if (run_dir / "study.db").exists():
            try:
                finished = [t for t in trials_of(run_dir) if t[1] == "COMPLETE"]
            except sqlite3.OperationalError:
                continue
            if len(finished) >= 8:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 8 <= len(finished) < 30, "the search must be killed part-way"
    before = {t[0]: t for t in trials_of(run_dir) if t[1] == "COMPLETE"}
    with sqlite3.connect(run_dir / "study.db") as db:  # killed between its outcome and its tell:
        settled = db.execute(  # completed from the record on resume, not evaluated again
            "select count(*) from trials t join trial_user_attributes a on a.trial_id = t.trial_id"
            " where t.state = 'RUNNING' and a.key = 'outcome'"
        ).fetchone()[0]

    out = run_cli("search", str(path), "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    after = trials_of(run_dir)
    for number, row in before.items():  # every earlier finished candidate kept, untouched
        assert row in after
    assert summary["finished"] == 30 and summary["evaluated_now"] == 30 - len(before) - settled
    assert sum(1 for t in after if t[1] == "COMPLETE") == 30
    assert summary["interrupted"] <= 1  # at most the one killed mid-evaluation
    assert len(after) - 30 == summary["interrupted"] + summary["duplicates"]  # duplicates: answered, not evaluated
    from automc.search.store import Store

    evaluated = [c for c in Store(f"sqlite:///{run_dir / 'study.db'}", "tiny").candidates()]
    policies = {tuple(sorted(c.params.items())) for c in evaluated}
    assert len(policies) == len(evaluated) == 30  # no policy evaluated twice
    status = json.loads(run_cli("status", str(run_dir), "--json").stdout)
    assert status["finished"] == 30 and status["running"] == 0


@pytest.mark.one_pass
def test_ddpg_search_meets_its_budget_and_can_be_extended(tmp_path: Path) -> None:
    cfg = {**TINY, "agent": {"name": "ddpg", "config": {"budget": 0.5, "warmup_episodes": 2}}, "budget": {"candidates": 5}}
    run_dir = tmp_path / "run"
    first = json.loads(run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--json").stdout)
    assert first["finished"] == 5 and (run_dir / "agent_state.pt").exists()
    state = torch.load(run_dir / "agent_state.pt", weights_only=True)
    assert int(state["episodes"]) == 5 + first["duplicates"]  # every episode told, repeats answered from the record included
    cfg["budget"] = {"candidates": 8}
    out = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout)
    assert second["evaluated_now"] == 3 and second["finished"] == 8
    from automc.run import RunDir
    from automc.search.store import Store

    for c in Store(RunDir(run_dir).storage_url(None), "tiny").candidates():
        assert c.metrics["macs"] <= 0.5 * c.metrics["base_macs"] * 1.01, c.number


@pytest.mark.one_pass
def test_a_resumed_run_keeps_the_agent_settings_it_started_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """The first start records every setting the agent ran with, defaults included
    (agent_settings.json); a resumed run builds the agent from that record, the user's config
    over it, so a default changed in between does not switch the agent halfway. --check shows
    the settings in force."""
    import automc.search.preflight as preflight
    from automc.search.loop import run_experiment

    run_dir = tmp_path / "run"
    cfg = {**TINY, "agent": {"name": "optuna-tpe", "config": {"multivariate": False}}, "budget": {"candidates": 2}}
    run_experiment(parse_config(cfg), run_dir)
    recorded = json.loads((run_dir / "agent_settings.json").read_text())
    assert recorded == {"n_startup_trials": 10, "multivariate": False}
    recorded["n_startup_trials"] = 1  # as if the default had been 1 when the run started
    (run_dir / "agent_settings.json").write_text(json.dumps(recorded))
    built: list[dict] = []
    build = preflight.build_agent
    monkeypatch.setattr(preflight, "build_agent", lambda *a, config=None, **k: built.append(dict(config or {})) or build(*a, config=config, **k))
    longer = {**cfg, "budget": {"candidates": 3}}
    check = run_cli("search", str(write_config(tmp_path, longer)), "--run-dir", str(run_dir), "--check")
    assert check.returncode == 0 and "settings   multivariate=False, n_startup_trials=1" in check.stdout, check.stdout + check.stderr
    summary = run_experiment(parse_config(longer), run_dir)
    assert summary["finished"] == 3 and built == [{"n_startup_trials": 1, "multivariate": False}]
    assert json.loads((run_dir / "agent_settings.json").read_text())["n_startup_trials"] == 1  # kept, not rewritten
    (run_dir / "agent_settings.json").write_text("{not json")
    built.clear()
    proc = run_cli("search", str(write_config(tmp_path, {**cfg, "budget": {"candidates": 4}})), "--run-dir", str(run_dir), "--json")
    assert proc.returncode == 0 and "agent_settings.json is damaged" in proc.stderr, proc.stderr
    assert json.loads((run_dir / "agent_settings.json").read_text()) == {"n_startup_trials": 10, "multivariate": False}
    # an RL agent under a target: its budget becomes the target's after construction, and the
    # record keeps the setting (none), not that value, so the resumed run is not refused
    rl = {**TINY, "agent": {"name": "ddpg", "config": {"warmup_episodes": 1}}, "target": {"macs": 0.5}, "budget": {"candidates": 2}}
    run_experiment(parse_config(rl), tmp_path / "rl")
    settings = json.loads((tmp_path / "rl" / "agent_settings.json").read_text())
    assert settings["budget"] is None and settings["actions"] == "absolute" and settings["warmup_episodes"] == 1
    # what the agent hands SB3 unasked is recorded too: automc's values (AMC's gamma 0) and
    # SB3's own defaults, so an upgrade of either does not change the resumed agent
    assert settings["gamma"] == 0.0 and settings["tau"] == 0.01 and settings["optimize_memory_usage"] is False
    assert "train_freq" not in settings  # follows episodes_in_flight
    settings["tau"] = 0.02  # as if automc's value had been 0.02 when the run started
    settings["sde_warmup"] = True  # as if the SB3 of the first start had had it: left out, said once
    (tmp_path / "rl" / "agent_settings.json").write_text(json.dumps(settings))
    agents: list = []
    monkeypatch.setattr(preflight, "build_agent", lambda *a, **k: agents.append(build(*a, **k)) or agents[-1])
    capfd.readouterr()
    assert run_experiment(parse_config({**rl, "budget": {"candidates": 3}}), tmp_path / "rl")["finished"] == 3
    assert agents and all(a.model.tau == 0.02 and a.model.gamma == 0.0 for a in agents)
    assert "sde_warmup no longer a setting of agent 'ddpg'" in capfd.readouterr().err


@pytest.mark.one_pass
@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_are_valid(path: Path) -> None:
    from automc.compress.spaces import SPACES
    from automc.config import load_config
    from automc.measure.profiles import PROFILES
    from automc.search.agent import AGENTS
    from automc.search.rewards import REWARDS

    cfg = load_config(path)
    assert cfg.name == path.stem
    assert cfg.agent.name in AGENTS and cfg.space.name in SPACES and cfg.reward.name in REWARDS
    assert all(p.name in PROFILES for p in cfg.profiles)


@pytest.mark.one_pass
def test_amc_experiment_runs_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    import automc.config as C

    cfg = C.load_config(REPO / "experiments" / "amc_resnet56_cifar10.yaml").model_dump()
    cfg["budget"] = {"candidates": 2}
    cfg["data"] = {**cfg["data"], "data_dir": str(shared_data), "validation": 200, "calibration_batches": 2}
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(tmp_path / "run"), "--json")
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


@pytest.mark.one_pass
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
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--workers", "2", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["finished"] + summary["failed"] == 10 and summary["failed"] >= 1 and summary["finished"] >= 1
    from automc.run import RunDir
    from automc.search.store import Store

    errors = [c.error for c in Store(RunDir(run_dir).storage_url(None), "tiny").candidates() if c.state == FAILED]
    assert all("worker died" in e for e in errors)


SLOW_PROFILE = """
import time
from automc.compress.analysis import analyze
from automc.measure.profiles import DeviceProfile, Measurement


class Slow(DeviceProfile):
    '''MACs, after a pause: a candidate lasts long enough to lose its node mid-evaluation.'''

    name = "slow"
    metrics = ("macs",)

    def measure(self, model, example_input):
        time.sleep(0.4)
        return Measurement({"macs": float(analyze(model, example_input[:1]).macs)}, {}, 1, {"analytic": True})
"""


@pytest.mark.one_pass
def test_a_search_on_a_ray_cluster_survives_losing_a_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two 1-CPU nodes, one killed (its processes SIGKILLed) after the second candidate: the
    candidate it was evaluating is recorded as lost and evaluated again under its number on the
    node left, no candidate fails, the budget is completed with one worker; asking a cluster
    for more workers than it has CPUs is a one-line error."""
    from ray.cluster_utils import Cluster

    from automc.run import RunDir
    from automc.search.loop import run_experiment
    from automc.search.store import Store

    (tmp_path / "slow_profile.py").write_text(SLOW_PROFILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    # with the re-fit: its Gram matrices reach both nodes' workers through the object store
    space = {"name": "channel_pruning", "config": {"reconstruct": True}}
    cfg = parse_config({**TINY, "space": space, "profiles": [{"name": "slow_profile:Slow"}], "budget": {"candidates": 8}})
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        second = cluster.add_node(num_cpus=1)
        with pytest.raises(UserError, match="--workers 3 needs 3 CPUs, the Ray cluster has 2"):
            run_experiment(cfg, tmp_path / "too_many", workers=3, address=cluster.address)
        killed: list[int] = []

        def kill_second_node(cand, done: int, _target: int) -> None:
            if done == 2 and not killed:
                killed.append(cand.number)
                cluster.remove_node(second, allow_graceful=False)

        summary = run_experiment(cfg, tmp_path / "run", workers=2, address=cluster.address, on_candidate=kill_second_node)
    finally:
        cluster.shutdown()
    store = Store(RunDir(tmp_path / "run").storage_url(None), "tiny", readonly=True)
    assert killed and summary["finished"] == 8 and summary["failed"] == 0, [c.error for c in store.candidates() if c.error]
    retried = {t.number: t.user_attrs["retries"] for t in store.study.get_trials() if "retries" in t.user_attrs}
    assert len(retried) == 1 and all("node" in r for reasons in retried.values() for r in reasons)
    assert sorted(c.number for c in store.candidates()) == list(range(8))  # no number lost or repeated


def test_a_ray_worker_takes_the_drivers_prepared_statistics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker takes the space's once-per-run statistics (the re-fit's Gram matrices) from
    the driver instead of computing them again, and evaluates a candidate as a worker that
    computed its own does."""
    from automc.search.context import build_context
    from automc.search.executors import _Worker
    from automc.search_spaces.reconstruction import Reconstructor

    cfg = parse_config({**TINY, "space": {"name": "channel_pruning", "config": {"reconstruct": True}}})
    driver = build_context(cfg, tmp_path)
    driver.space.prepare()
    state = driver.space.prepared()
    computed: list[int] = []
    compute = Reconstructor._compute
    monkeypatch.setattr(Reconstructor, "_compute", lambda self: computed.append(1) or compute(self))
    threads = torch.get_num_threads()
    try:
        given = _Worker(cfg.model_dump(mode="json"), str(tmp_path), 1, state)
        assert computed == []
        grams = given.ctx.space._reconstructor().grams()
        assert grams.keys() == state["grams"].keys() and all(torch.equal(grams[k], state["grams"][k]) for k in grams)
        own = _Worker(cfg.model_dump(mode="json"), str(tmp_path), 1)
        assert computed == [1]
        policy = driver.space.uniform(0.5)
        mine, theirs = (w.evaluate(0, policy, dict(driver.base_metrics)) for w in (given, own))
        assert mine["state"] == theirs["state"] and mine["metrics"] == theirs["metrics"]
    finally:
        torch.set_num_threads(threads)


class _TwoSlots:
    """A 2-slot executor in this process (evaluates on collection): the loop's in-flight logic
    without Ray."""

    slots = 2

    def __init__(self, inner) -> None:  # noqa: ANN001 - a SequentialExecutor
        self.inner = inner

    def submit(self, number: int, params) -> None:  # noqa: ANN001
        self.inner.submit(number, params)

    def pending(self) -> int:
        return self.inner.pending()

    def next_done(self):  # noqa: ANN201
        return self.inner.next_done()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.one_pass
def test_an_rl_agent_with_a_batch_in_flight_is_not_asked_past_its_batch(tmp_path: Path) -> None:
    """DDPG with 2 episodes in flight and no exploration noise proposes equal policies, which
    the record answers at once: the runner waits for the batch's outstanding reward instead
    of asking a third policy, and the run ends normally."""
    from automc.search.loop import run_experiment

    cfg = parse_config({**TINY, "agent": {"name": "ddpg", "config": {"budget": 0.6, "warmup_episodes": 1, "noise_sigma": 0.0, "episodes_in_flight": 2}}, "budget": {"candidates": 6}})
    summary = run_experiment(cfg, tmp_path / "run", wrap=lambda ex, _ctx, _store: _TwoSlots(ex))
    assert summary["finished"] >= 2
    assert summary["stopped"] == "budget" or summary["stopped"].startswith("agent converged")


STOPPING_AGENT = '''
import numpy as np
from automc.search.agent import Agent

class StopsAfterThree(Agent):
    """Three new random policies per process, then done (like an agent that converged)."""
    name = "stops-after-three"
    asked = 0

    def ask(self, number):
        StopsAfterThree.asked += 1
        return self.space.sample(np.random.default_rng([self.seed, number])) if StopsAfterThree.asked % 4 else None

    def tell(self, candidate):
        pass
'''


@pytest.mark.one_pass
def test_an_agent_that_ends_a_run_early_ends_it_for_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run its agent stopped before the budget is finished: the same command again proposes
    nothing (a fresh agent would have searched on), a raised budget continues it."""
    from automc.search.loop import run_experiment

    (tmp_path / "stopping_agent.py").write_text(STOPPING_AGENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = {**TINY, "agent": {"name": "stopping_agent:StopsAfterThree"}, "budget": {"candidates": 10}}
    first = run_experiment(parse_config(cfg), tmp_path / "run")
    assert (first["evaluated_now"], first["stopped"]) == (3, "agent exhausted")
    again = run_experiment(parse_config(cfg), tmp_path / "run")
    assert (again["evaluated_now"], again["stopped"]) == (0, "agent exhausted")
    more = run_experiment(parse_config({**cfg, "budget": {"candidates": 11}}), tmp_path / "run")
    assert (more["resumed_from"], more["evaluated_now"]) == (3, 3)


CONSTANT_AGENT = '''
from automc.search.agent import Agent

class Constant(Agent):
    """Always the same policy (an agent that converged at once)."""
    name = "constant"

    def ask(self, number):
        return self.space.uniform(0.7)

    def tell(self, candidate):
        pass
'''


def test_a_projected_agent_that_repeats_itself_is_jittered_and_spends_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent proposing one policy forever: after JITTER_AFTER repeats its proposals are
    jittered before projection, so the run evaluates its budget of new policies, all within
    the target, and a second run of the same config proposes the same sequence."""
    from automc.run import RunDir
    from automc.search.loop import JITTER_AFTER, run_experiment
    from automc.search.store import Store

    (tmp_path / "constant_agent.py").write_text(CONSTANT_AGENT)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = parse_config({**TINY, "agent": {"name": "constant_agent:Constant"}, "target": {"macs": 0.6}, "budget": {"candidates": 4}})
    summaries, policies = [], []
    for name in ("a", "b"):
        summaries.append(run_experiment(cfg, tmp_path / name))
        store = Store(RunDir(tmp_path / name).storage_url(cfg.storage), cfg.name)
        policies.append([(c.params, c.duplicate_of) for c in store.candidates(include_duplicates=True)])
    assert summaries[0]["stopped"] == "budget" and summaries[0]["finished"] == 4
    new = [p for p, dup in policies[0] if dup is None]
    assert len(new) == 4 and len({tuple(sorted(p.items())) for p in new}) == 4
    assert sum(1 for _, dup in policies[0] if dup is not None) >= 3 * JITTER_AFTER  # repeats before each step off
    assert policies[0] == policies[1]  # seeded: the same sequence


@pytest.mark.parametrize("noise", [0.02, 0.0])
def test_ddpg_that_repeats_itself_explores_more_instead_of_ending_the_run(tmp_path: Path, noise: float) -> None:
    """Noise that has decayed to nothing and an actor that does not move (learning rates ~0):
    each repeated policy adds repeat_noise to the noise until a new policy comes; without it
    (0) the run ends as converged."""
    from automc.search.loop import run_experiment

    agent = {"name": "ddpg", "config": {"warmup_episodes": 2, "noise_decay": 0.01, "learning_rate": 1e-12, "actor_learning_rate": 1e-12, "budget_floor": 0.5, "repeat_noise": noise}}
    cfg = parse_config({**TINY, "agent": agent, "target": {"macs": 0.6}, "budget": {"candidates": 6}})
    summary = run_experiment(cfg, tmp_path / "run")
    if noise > 0:
        assert (summary["stopped"], summary["finished"]) == ("budget", 6)
    else:
        assert summary["stopped"].startswith("agent converged") and summary["finished"] < 6


@pytest.mark.one_pass
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
    path = write_config(tmp_path, cfg)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automc", "search", str(path), "--run-dir", str(run_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            if sum(1 for t in trials_of(run_dir) if t[1] == "COMPLETE") >= 5:
                break
        except (sqlite3.OperationalError, FileNotFoundError):
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t[0]: t for t in trials_of(run_dir) if t[1] == "COMPLETE"}
    assert 5 <= len(before) < 16
    out = run_cli("search", str(path), "--run-dir", str(run_dir), "--json")
    assert out.returncode == 0, out.stderr
    after = trials_of(run_dir)
    assert all(row in after for row in before.values())
    status = json.loads(run_cli("status", str(run_dir), "--json").stdout)
    assert status["finished"] == 16 and status["running"] == 0
    summary = json.loads(out.stdout)
    # a kill between a candidate's outcome write and its state write leaves one more candidate
    # done than the COMPLETE rows say: the rerun completes it from its outcome, not again
    assert summary["resumed_from"] in (len(before), len(before) + 1)
    assert summary["evaluated_now"] == 16 - summary["resumed_from"]
