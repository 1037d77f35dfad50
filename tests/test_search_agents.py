"""Agents: the conformance suite over every registered agent, and agent-specific behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from automc.config import Constraint, Objective
from automc.errors import UserError
from automc.search.agent import AGENTS, build_agent
from tests.search_support import fake_eval

# Settings that make an agent learn within the suite's 12 candidates; every registered agent is
# checked, with no settings unless it is listed here.
QUICK = {
    "optuna-nsga2": {"population_size": 4},
    "ddpg": {"budget": 0.6, "warmup_episodes": 3},
    "ppo": {"budget": 0.6, "episodes_per_update": 2},
    "mnas-controller": {"episodes_per_update": 2},
    "netadapt": {"budget": 0.6},
}


@pytest.mark.parametrize("name", AGENTS.names())
def test_every_registered_agent_passes_the_conformance_suite(tiny_space, name: str) -> None:
    from automc.testing import check_agent

    objectives = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]
    check_agent(lambda: build_agent(name, tiny_space, objectives, seed=3, config=QUICK.get(name)), tiny_space)


def test_an_unknown_agent_setting_is_one_line_listing_the_valid_ones(tiny_space) -> None:
    objectives = [Objective(metric="accuracy", direction="maximize")]
    with pytest.raises(UserError, match="agent 'optuna-tpe' has no setting 'n_startup'; valid settings: n_startup_trials, multivariate"):
        build_agent("optuna-tpe", tiny_space, objectives, seed=0, config={"n_startup": 3})
    with pytest.raises(UserError, match="constraints is set by automc"):
        build_agent("optuna-nsga2", tiny_space, objectives, seed=0, config={"constraints": []})
    with pytest.raises(UserError, match="agent 'ddpg' has no setting 'gamma_'; besides its own it takes DDPG's: .*tau"):
        build_agent("ddpg", tiny_space, objectives, seed=0, config={"gamma_": 0.9})


def test_equal_proposals_outstanding_together_are_told_apart(tiny_space) -> None:
    """Two outstanding candidates with identical params: each outcome reaches its own trial."""
    agent = build_agent("optuna-tpe", tiny_space, [Objective(metric="accuracy", direction="maximize")], seed=0)
    first = agent.ask(0)
    agent.ask(1)
    agent._pending[1].params.update(first)  # make the second proposal equal to the first
    agent.tell(fake_eval(1, first))
    agent.tell(fake_eval(0, first))
    trials = {t.number: t for t in agent.study.get_trials()}
    assert trials[0].state.name == "COMPLETE" and trials[1].state.name == "COMPLETE" and not agent._pending


def test_random_agent_resumes_the_same_sequence(tiny_space) -> None:
    objectives = [Objective(metric="accuracy", direction="maximize")]
    a = build_agent("random", tiny_space, objectives, seed=3)
    seq = [a.ask(n) for n in range(8)]
    b = build_agent("random", tiny_space, objectives, seed=3)
    for i, p in enumerate(seq[:5]):
        b.tell(fake_eval(i, p))
    assert [b.ask(n) for n in range(5, 8)] == seq[5:]


def test_nsga2_records_constraints_for_constrained_domination(tiny_space) -> None:
    import warnings

    objectives = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated Optuna API
        agent = build_agent("optuna-nsga2", tiny_space, objectives, seed=0, constraints=[Constraint(metric="macs", max=7e4)], config={"population_size": 4})
        live = agent.ask(0)
        agent.tell(fake_eval(0, live))
        replayed = tiny_space.sample(np.random.default_rng(1))
        agent.tell(fake_eval(1, replayed))
    trials = agent.study.get_trials()
    for t, params in zip(trials, (live, replayed)):
        macs = fake_eval(0, params).metrics["macs"]
        assert t.constraints == {"macs<=70000": pytest.approx(macs - 7e4)}


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


def test_rl_env_floor_makes_episodes_spend_the_budget(tiny_space) -> None:
    """The most compressing actions still end within [floor, 1] × budget with a floor (and far
    under it without one)."""
    from automc.search.gym_env import CompressionEnv

    def cheapest(env: CompressionEnv) -> float:
        env.reset(seed=0)
        done, info = False, {}
        while not done:
            _, _, done, _, info = env.step(np.array([-1.0], dtype=np.float32))
        return float(info["cost"])

    assert cheapest(CompressionEnv(tiny_space, budget=0.6)) < 0.5
    assert 0.9 * 0.6 - 1e-9 <= cheapest(CompressionEnv(tiny_space, budget=0.6, floor=0.9)) <= 0.6 + 1e-9


def test_ddpg_gives_every_step_the_baselined_episode_reward(tiny_space) -> None:
    """AMC's credit assignment: each of the episode's transitions carries the episode's reward
    minus the moving baseline (the first episode sets the baseline: advantage 0), live and
    when a stored run is replayed into a fresh agent."""
    from automc.search.candidate import Candidate

    objectives = [Objective(metric="accuracy", direction="maximize")]
    agent = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "warmup_episodes": 2, "baseline_decay": 0.5})
    steps = agent.steps_per_episode
    told = []
    try:
        for number, reward in enumerate((0.7, 0.9, 0.5)):
            params = agent.ask(number)
            told.append(Candidate(number, params, {"accuracy": reward}, reward))
            agent.tell(told[-1])
        buf = agent.model.replay_buffer
        rewards = buf.rewards[: 3 * steps, 0].reshape(3, steps)  # (the learner has begun the next episode)
        # baselines: 0.7, then 0.5·0.7 + 0.5·0.9 = 0.8
        assert np.allclose(rewards, np.array([[0.0] * steps, [0.2] * steps, [-0.3] * steps]))
    finally:
        agent.close()
    replayed = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "warmup_episodes": 2, "baseline_decay": 0.5})
    try:
        replayed.resume(None, told)
        buf = replayed.model.replay_buffer
        assert np.allclose(buf.rewards[: 3 * steps, 0].reshape(3, steps), rewards)
    finally:
        replayed.close()


def test_ddpg_trains_its_actor_at_its_own_learning_rate(tiny_space) -> None:
    """``actor_learning_rate`` (AMC's 1e-4 by default, the critic 1e-3): SB3 resets both
    optimizers to ``learning_rate`` before every training round; the actor's is set after it,
    and the actor's weights move by about that rate's step (Adam: ~lr per weight)."""
    objectives = [Objective(metric="accuracy", direction="maximize")]
    default = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6})
    try:
        assert default.model.actor_lr == 1e-4
    finally:
        default.close()
    moved = {}
    for actor_lr in (None, 1e-5):
        agent = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "warmup_episodes": 2, "actor_learning_rate": actor_lr})
        try:
            for number in range(2):  # the warm-up; the actor trains after the next episode
                agent.tell(fake_eval(number, agent.ask(number)))
            before = [p.detach().clone() for p in agent.model.actor.parameters()]
            agent.tell(fake_eval(2, agent.ask(2)))
            agent.ask(3)  # the learner trains on episode 2 before it rolls episode 3
            lrs = [agent.model.actor.optimizer.param_groups[0]["lr"], agent.model.critic.optimizer.param_groups[0]["lr"]]
            assert lrs == [actor_lr or 1e-3, 1e-3]
            moved[actor_lr] = max(float((p.detach() - b).abs().max()) for p, b in zip(agent.model.actor.parameters(), before))
        finally:
            agent.close()
    assert moved[1e-5] < 0.1 * moved[None], moved


def test_ddpg_warms_up_on_projected_random_policies_and_stores_the_applied_actions(tiny_space) -> None:
    """Warm-up episodes step through random policies moved along the projection's path to
    spend the budget (the drawn policy's order between layers kept, none squeezed to a bound
    as AMC's random action per step ends), and every live episode, warm-up or learned,
    leaves in the replay buffer the actions a replay of the stored run puts there: the
    clamped ones the env applied."""
    from automc.search.gym_env import CompressionEnv, from_unit

    objectives = [Objective(metric="accuracy", direction="maximize")]
    agent = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "warmup_episodes": 3})
    replay = CompressionEnv(tiny_space, budget=0.6, floor=0.95)
    steps = agent.steps_per_episode
    told = []
    try:
        for number in range(6):
            told.append(fake_eval(number, agent.ask(number)))
            agent.tell(told[-1])
        for i, cand in enumerate(told):
            assert 0.95 * 0.6 - 1e-9 <= replay.cost(cand.params) <= 0.6 + 1e-9
            if i < 3:  # the env's clamp applied to the planned policy, step by step
                replay.reset()
                for u in replay.warmup_units(np.random.default_rng([0, i, 1])):
                    *_, info = replay.step(np.array([from_unit(u)], dtype=np.float32))
                assert info["params"] == cand.params
            stored = agent.model.replay_buffer.actions[i * steps : (i + 1) * steps, 0, 0]
            assert np.allclose(stored, [float(agent.model.policy.scale_action(a)[0]) for _, a, _, _, _ in replay.episode_transitions(cand.params, 0.0)], atol=1e-6)
    finally:
        agent.close()
    dims = tiny_space.dimensions
    for seed in range(5):
        drawn = tiny_space.sample(np.random.default_rng(seed))
        plan = replay.warmup_units(np.random.default_rng(seed))
        assert replay.cost({k: dims[k].from_unit(u) for k, u in zip(replay.names, plan)}) <= 0.6 + 1e-9
        assert list(np.argsort(plan, kind="stable")) == list(np.argsort([dims[k].to_unit(drawn[k]) for k in replay.names], kind="stable"))
    with pytest.raises(UserError, match="warmup must be 'projected'"):
        build_agent("ddpg", tiny_space, objectives, seed=0, config={"warmup": "uniform"})


def test_ddpg_truncated_noise_is_amcs_redrawn_normal_and_resumes(tiny_space) -> None:
    """``noise: truncated`` draws each learned action from a normal of σ around the actor's,
    redrawn until inside [-1, 1] — the truncated normal's law, no mass on a bound (clipping
    puts every draw past it there) — and passes the conformance suite (a resumed run draws
    what the live one would)."""
    from scipy.stats import truncnorm

    from automc.testing import check_agent

    objectives = [Objective(metric="accuracy", direction="maximize"), Objective(metric="macs", direction="minimize")]
    agent = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "noise": "truncated"})
    try:
        assert agent.model.action_noise is None and agent._sigma() == 0.5
        np.random.seed(0)
        draws = np.array([agent._truncated(0.9) for _ in range(4000)])
    finally:
        agent.close()
    law = truncnorm((-1 - 0.9) / 0.5, (1 - 0.9) / 0.5, loc=0.9, scale=0.5)
    assert draws.min() >= -1.0 and draws.max() < 1.0 and not np.any(draws == 1.0)
    assert abs(draws.mean() - law.mean()) < 4 * law.std() / np.sqrt(len(draws)), (draws.mean(), law.mean())
    assert abs(np.mean(draws > 0.5) - law.sf(0.5)) < 0.03
    check_agent(lambda: build_agent("ddpg", tiny_space, objectives, seed=3, config={**QUICK["ddpg"], "noise": "truncated"}), tiny_space)
    with pytest.raises(UserError, match="noise must be 'truncated'"):
        build_agent("ddpg", tiny_space, objectives, seed=0, config={"noise": "uniform"})


def test_relative_actions_spread_the_budget_left_and_invert(tiny_space) -> None:
    """``actions: relative``: action 0 at every step gives every layer the same unit value
    (the one that spends the budget evenly), where absolute 0 (unit 0.5) leaves the last
    layer to the floor; unit_of and action_of invert each other at any step; and a DDPG
    agent with relative actions stores what a replay of its run stores."""
    from automc.search.gym_env import CompressionEnv

    def zeros(env: CompressionEnv) -> list[float]:
        env.reset()
        done, info = False, {}
        while not done:
            for a in (-0.9, -0.3, 0.0, 0.4, 0.95):
                assert env.action_of(env.unit_of(np.array([a]))) == pytest.approx(a, abs=1e-9)
            _, _, done, _, info = env.step(np.array([0.0], dtype=np.float32))
        return [float(tiny_space.dimensions[k].to_unit(info["params"][k])) for k in env.names]

    even = zeros(CompressionEnv(tiny_space, budget=0.6, floor=0.95, actions="relative"))
    # (the last layer takes what the channel rounding of the others left)
    assert max(even[:-1]) - min(even[:-1]) <= 0.011 and even[-1] >= even[0], even
    assert max(zeros(CompressionEnv(tiny_space, budget=0.6, floor=0.95))) - min(even) > 0.1
    objectives = [Objective(metric="accuracy", direction="maximize")]
    agent = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "warmup_episodes": 2, "actions": "relative"})
    replay = CompressionEnv(tiny_space, budget=0.6, floor=0.95, actions="relative")
    try:
        for number in range(4):
            cand = fake_eval(number, agent.ask(number))
            agent.tell(cand)
            stored = agent.model.replay_buffer.actions[number * agent.steps_per_episode : (number + 1) * agent.steps_per_episode, 0, 0]
            assert np.allclose(stored, [float(a[0]) for _, a, _, _, _ in replay.episode_transitions(cand.params, 0.0)], atol=1e-5)
    finally:
        agent.close()
    ppo = build_agent("ppo", tiny_space, objectives, seed=0, config={"budget": 0.6})
    controller = build_agent("mnas-controller", tiny_space, objectives, seed=0, config={"budget": 0.6})
    try:  # the defaults: PPO relative with σ e^-1, the controller relative with its Gaussian prior, DDPG absolute
        assert (ppo.env.actions, float(ppo.model.policy.log_std.detach()[0])) == ("relative", -1.0)
        assert (controller.env.actions, controller.prior()) == ("relative", "gaussian") and agent.env.actions == "relative"
        assert build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6}).env.actions == "absolute"
    finally:
        ppo.close()
        controller.close()
    with pytest.raises(UserError, match="actions must be 'absolute'"):
        build_agent("ppo", tiny_space, objectives, seed=0, config={"actions": "even"})


def test_the_controllers_gaussian_token_prior_starts_near_the_even_spread(tiny_space) -> None:
    """``token_prior: gaussian``: the untrained controller's tokens, as actions in [-1, 1]
    (with relative actions 0 is the even spread of the budget left), have about PPO's starting
    sd, e^-1 ≈ 0.37; uniform tokens (MNasNet's start) about 0.63, anywhere on the grid."""
    objectives = [Objective(metric="accuracy", direction="maximize")]

    def actions(prior: str) -> np.ndarray:
        agent = build_agent("mnas-controller", tiny_space, objectives, seed=0, config={"budget": 0.6, "actions": "relative", "token_prior": prior, "episodes_per_update": 40})
        tokens: list[int] = []
        step = agent.env.step
        agent.env.step = lambda action: (tokens.append(int(np.asarray(action).reshape(-1)[0])), step(action))[1]
        try:  # one rollout's episodes, all drawn before any update
            for n in range(40):
                agent.ask(n)
        finally:
            agent.close()
        return 2.0 * np.array(tokens) / (agent.env.tokens - 1) - 1.0

    uniform, gaussian = actions("uniform"), actions("gaussian")
    assert len(gaussian) == 40 * len(tiny_space.dimensions)
    assert 0.3 < np.std(gaussian) < 0.44 and abs(np.mean(gaussian)) < 0.1, (np.std(gaussian), np.mean(gaussian))
    assert np.std(uniform) > 0.55, np.std(uniform)
    with pytest.raises(UserError, match="token_prior must be 'auto', 'uniform'"):
        build_agent("mnas-controller", tiny_space, objectives, seed=0, config={"token_prior": "normal"})


def test_ddpg_with_episodes_in_flight_writes_each_reward_where_its_episode_went(tiny_space) -> None:
    """Two episodes out at once, told newest first, and a retried candidate told while the
    batch is out: once the batch closes every transition of both episodes carries its own
    baselined reward (none is left at the placeholder), and the retried one is replayed
    after them; a third ask before the rewards is a bug, not a silent stall."""
    from automc.search.candidate import Candidate

    objectives = [Objective(metric="accuracy", direction="maximize")]
    agent = build_agent("ddpg", tiny_space, objectives, seed=0, config={"budget": 0.6, "warmup_episodes": 2, "baseline_decay": 0.5, "episodes_in_flight": 2})
    steps = agent.steps_per_episode
    assert agent.max_outstanding == 2
    try:
        first = agent.ask(0)
        second = agent.ask(1)
        with pytest.raises(RuntimeError, match="episodes_in_flight=2"):
            agent.ask(2)
        agent.tell(Candidate(7, first, {"accuracy": 0.1}, 0.1))  # a retry from an earlier run
        agent.tell(Candidate(1, second, {"accuracy": 0.9}, 0.9))
        agent.tell(Candidate(0, first, {"accuracy": 0.7}, 0.7))
        rewards = agent.model.replay_buffer.rewards[: 3 * steps, 0]
        # baselines: 0.7 (the batch's first episode), then 0.5·0.7 + 0.5·0.9 = 0.8 for the retry;
        # the retry's transitions went in before the second episode's last one was stored
        assert np.allclose(rewards[:steps], 0.0)
        assert np.allclose(rewards[steps : 2 * steps - 1], 0.2)
        assert np.allclose(rewards[2 * steps - 1 : 3 * steps - 1], -0.7)
        assert np.isclose(rewards[3 * steps - 1], 0.2)
        assert agent.episodes == 4  # 2 episodes + the retry, and the next batch's first is out
        agent.ask(3)
        agent.ask(4)
    finally:
        agent.close()
    with pytest.raises(UserError, match="agent.config.train_freq|trains once per batch"):
        build_agent("ddpg", tiny_space, objectives, seed=0, config={"episodes_in_flight": 2, "train_freq": 1})


def test_ppo_proposes_the_same_policies_whatever_the_episodes_in_flight(tiny_space) -> None:
    """A rollout's episodes share one policy, so PPO with its whole rollout in flight (told in
    any order) proposes exactly what it does one episode at a time."""
    from tests.search_support import fake_eval

    objectives = [Objective(metric="accuracy", direction="maximize")]

    def proposals(in_flight: int, *, parallel: bool) -> list[dict]:
        agent = build_agent("ppo", tiny_space, objectives, seed=4, config={"budget": 0.6, "episodes_per_update": 2, "episodes_in_flight": in_flight})
        out: list[dict] = []
        try:
            for start in range(0, 8, 2):
                if parallel:
                    batch = [agent.ask(n) for n in (start, start + 1)]
                    for n in (start + 1, start):
                        agent.tell(fake_eval(n, batch[n - start]))
                    out += batch
                else:
                    for n in (start, start + 1):
                        out.append(agent.ask(n))
                        agent.tell(fake_eval(n, out[-1]))
        finally:
            agent.close()
        return out

    one = proposals(1, parallel=False)
    assert len({tuple(sorted(p.items())) for p in one}) > 4  # it explores: the check is not vacuous
    assert proposals(2, parallel=False) == one
    assert proposals(2, parallel=True) == one
    with pytest.raises(UserError, match="episodes_in_flight \\(3\\) must divide episodes_per_update \\(2\\)"):
        build_agent("ppo", tiny_space, objectives, seed=0, config={"episodes_per_update": 2, "episodes_in_flight": 3})


def test_a_state_saved_with_other_networks_restarts_learning_with_a_notice(tiny_space, capfd) -> None:
    """A run saved by a version whose networks differ (the controller once acted in [0, 1],
    now in tokens) resumes: learning starts afresh, with one line saying so."""
    objectives = [Objective(metric="accuracy", direction="maximize")]
    old = build_agent("ppo", tiny_space, objectives, seed=0, config={"net_arch": [8]})
    state = old.state_dict()
    old.close()
    new = build_agent("ppo", tiny_space, objectives, seed=0, config={"net_arch": [16]})
    try:
        new.load_state_dict(state)
        assert "the saved networks do not fit this version's" in capfd.readouterr().err
        assert tiny_space.validate(new.ask(0))
    finally:
        new.close()


def test_minmax_observation_stretches_each_layer_feature_over_the_layers(tiny_space) -> None:
    """``observation: minmax`` (AMC's state normalisation): a layer feature that differs between
    layers spans exactly [0, 1] over an episode's steps, in the same order as on the fixed
    scales; one equal for every layer keeps its fixed value; the episode's own part (cost cut,
    cost left, previous action, knob) is unchanged; a bad value is a one-line error."""
    from automc.search.gym_env import CompressionEnv

    def walk(env: CompressionEnv) -> np.ndarray:
        rows = [env.reset()[0]]
        for _ in env.names[1:]:
            rows.append(env.step(np.array([0.3], dtype=np.float32))[0])
        return np.asarray(rows)

    fixed = walk(CompressionEnv(tiny_space, budget=0.6, floor=0.95))
    stretched = walk(CompressionEnv(tiny_space, budget=0.6, floor=0.95, observation="minmax"))
    layer, varies = slice(0, 7), fixed[:, :7].max(axis=0) > fixed[:, :7].min(axis=0)
    assert varies.sum() >= 2 and not varies.all()  # the check below covers both kinds of column
    assert np.allclose(stretched[:, layer][:, varies].min(axis=0), 0.0) and np.allclose(stretched[:, layer][:, varies].max(axis=0), 1.0)
    for j in np.flatnonzero(varies):
        assert np.array_equal(np.argsort(fixed[:, j], kind="stable"), np.argsort(stretched[:, j], kind="stable"))
    assert np.array_equal(stretched[:, layer][:, ~varies], fixed[:, layer][:, ~varies])
    assert np.array_equal(stretched[:, 7:], fixed[:, 7:])
    objectives = [Objective(metric="accuracy", direction="maximize")]
    from automc.agents.sb3_agents import DDPGAgent
    from automc.search.agent_settings import replayed_config, resolved_settings

    ddpg, ppo = (build_agent(name, tiny_space, objectives, seed=0, config={"budget": 0.6}) for name in ("ddpg", "ppo"))
    try:  # DDPG's default (AMC's), recorded with the run's settings; PPO's stays fixed
        assert resolved_settings(ddpg, {})["observation"] == "minmax" and resolved_settings(ppo, {})["observation"] == "fixed"
        recorded = resolved_settings(ddpg, {})
    finally:
        ddpg.close()
        ppo.close()
    # a run recorded before the setting existed resumes observing as it ran; a later record replays as written
    assert replayed_config(DDPGAgent, {k: v for k, v in recorded.items() if k != "observation"}, None)["observation"] == "fixed"
    assert replayed_config(DDPGAgent, recorded, None)["observation"] == "minmax"
    with pytest.raises(UserError, match="observation must be 'fixed'"):
        build_agent("ppo", tiny_space, objectives, seed=0, config={"observation": "zscore"})
