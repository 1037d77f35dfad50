"""stable-baselines3 DDPG and PPO as ask/tell agents (the shared learner-thread machinery is in
:mod:`automc.agents.sb3_base`).

DDPG follows AMC: warm-up episodes (``warmup_episodes``), Gaussian exploration noise
decaying by ``noise_decay`` per episode, a state whose layer features are stretched to [0, 1]
over the layers (``observation: minmax``), and the budget clamp in the env so every episode
meets ``budget``. Warm-up episodes are random policies moved along the projection's path to
spend the budget (``warmup: projected``, as the ``random`` agent's proposals are), not AMC's
random action per step (``warmup: stepwise``), whose clamp squeezes the last layers to their
bound (see :meth:`CompressionEnv.warmup_units`). The replay buffer holds the action the env
applied (clamped), as a resumed run's replayed episodes do. Once the noise has decayed the
actor tends to one policy; each episode in a row whose policy was evaluated before adds
``repeat_noise`` to the noise's σ (up to ``noise_sigma``), so the budget goes to new policies
near the converged one instead of ending the run. As in AMC, an episode's reward — minus a
moving-average baseline (``baseline_decay``) — is given to *every* step of the episode and the critic
regresses it directly (``gamma`` 0): Q(s, a) estimates the final reward of taking action a
at layer s, with no bootstrapping through a chain of zero rewards (what made DDPG on all
channel groups collapse). The networks train after each episode, one gradient step per
layer (with ``episodes_in_flight: N``, after each batch of N episodes evaluated in parallel).
PPO (relative actions, :meth:`CompressionEnv.unit_of`) and the MNasNet controller (a
recurrent policy over relative tokens, :mod:`automc.agents.mnas_controller`) learn on-policy on
the same env, a rollout's episodes all in flight at once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from automc.agents.sb3_args import number as _number
from automc.agents.sb3_base import _SB3Agent

from automc.compress.spaces import SearchSpace
from automc.config import Objective
from automc.errors import UserError
from automc.search.candidate import Candidate


@functools.cache
def _learner_class() -> type:
    """SB3's DDPG whose every action goes through the agent's ``choose`` (set on the instance):
    the planned warm-up policy or the actor's action, clamped; the buffer stores it as applied."""
    from stable_baselines3 import DDPG

    class AutomcDDPG(DDPG):
        choose: Any = None
        actor_lr: float | None = None  # SB3 gives actor and critic one rate; AMC's actor learns 10× slower

        def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
            action, _ = super()._sample_action(learning_starts, action_noise, n_envs)
            return self.choose(action, warmup=self.num_timesteps < learning_starts)

        def _update_learning_rate(self, optimizers: Any) -> None:
            super()._update_learning_rate(optimizers)
            if self.actor_lr is not None:
                for group in self.actor.optimizer.param_groups:
                    group["lr"] = self.actor_lr

    return AutomcDDPG


class DDPGAgent(_SB3Agent):
    """AMC's agent: DDPG with warm-up, decaying Gaussian noise and the budget clamp; the
    critic learns at ``learning_rate`` (1e-3), the actor at ``actor_learning_rate`` (AMC's
    1e-4; None: the critic's, as SB3 has it) — an actor as fast as its critic chased the
    critic's first estimates (see docs/search.md)."""

    name = "ddpg"
    algorithm = "DDPG"
    derived = frozenset({"buffer_size", "learning_starts", "batch_size", "action_noise"})
    # AMC: the episode's reward regresses each step directly (no bootstrapping); slow target
    # networks; one gradient step per step collected, after every batch of episodes
    algo_defaults = {"gamma": 0.0, "tau": 0.01, "gradient_steps": -1}
    computed = frozenset({"train_freq"})  # a batch of episodes_in_flight episodes
    # AMC's state normalisation: on fixed scales a residual group and an inner convolution of
    # one ResNet stage differ only in cost share, by 0.09-0.14 (docs/search.md)
    default_observation = "minmax"

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        warmup_episodes: int = 10,
        warmup: str = "projected",
        noise: str = "clipped",
        noise_sigma: float = 0.5,
        noise_decay: float = 0.98,
        repeat_noise: float = 0.02,
        baseline_decay: float = 0.95,
        actor_learning_rate: float | None = 1e-4,
        buffer_size: int = 20000,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        _number("warmup_episodes", warmup_episodes, 0, None, integer=True)
        _number("noise_sigma", noise_sigma, 0, None)
        _number("noise_decay", noise_decay, 0, 1, low_open=True)
        _number("repeat_noise", repeat_noise, 0, None)
        _number("baseline_decay", baseline_decay, 0, 1)
        if actor_learning_rate is not None:
            _number("actor_learning_rate", actor_learning_rate, 0, None, low_open=True)
        self.actor_learning_rate = actor_learning_rate
        _number("buffer_size", buffer_size, 1, None, integer=True)
        _number("batch_size", batch_size, 1, None, integer=True)
        if noise not in ("truncated", "clipped"):
            raise UserError(f"agent 'ddpg' noise must be 'truncated' (AMC's: redrawn until inside the action range) or 'clipped' (SB3's: clipped to it), got {noise!r}", field="agent.config.noise")
        if warmup not in ("projected", "stepwise"):
            raise UserError(f"agent 'ddpg' warmup must be 'projected' (random policies spending the budget) or 'stepwise' (AMC's random action per step), got {warmup!r}", field="agent.config.warmup")
        self.warmup_episodes = int(warmup_episodes)
        self.warmup = warmup
        self._plan: list[float] = []  # the warm-up episode's action per step
        self.noise = noise
        self.noise_sigma = float(noise_sigma)
        self.noise_decay = float(noise_decay)
        self.repeat_noise = float(repeat_noise)
        self.streak = 0  # episodes in a row whose policy had been evaluated before
        self.baseline_decay = float(baseline_decay)
        self.baseline: float | None = None  # moving average of episode rewards
        self.buffer_size = int(buffer_size)
        self.batch_size = int(batch_size)
        super().__init__(space, objectives, seed=seed, **kwargs)

    def _advantage(self, reward: float) -> float:
        """``reward`` against the moving baseline (which it then updates)."""
        if self.baseline is None:
            self.baseline = reward
        shaped = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * reward
        return shaped

    def _buffer(self) -> Any:
        return self.model.replay_buffer

    def _shape_reward(self, reward: float, end: int, *, stored: bool) -> float:
        """Every step of the episode already in the replay buffer (with reward 0) gets the
        episode's baselined reward; a last step not yet stored gets it from the env."""
        shaped = self._advantage(reward)
        buf = self.model.replay_buffer
        for back in range(0 if stored else 1, self.steps_per_episode):
            buf.rewards[(end - back) % buf.buffer_size] = shaped
        return shaped

    def _sigma(self) -> float:
        """The exploration noise's σ for the next episode: decayed after the warm-up; an actor
        that keeps proposing evaluated policies explores more until it finds a new one."""
        decayed = self.noise_sigma * self.noise_decay ** max(0, self.episodes - self.warmup_episodes)
        return min(max(self.noise_sigma, decayed), decayed + self.repeat_noise * self.streak)

    def _noise(self) -> Any:
        """SB3's additive noise (``clipped``); None with ``truncated``, drawn in :meth:`_choose`."""
        from stable_baselines3.common.noise import NormalActionNoise

        return NormalActionNoise(mean=np.zeros(1), sigma=np.full(1, self._sigma())) if self.noise == "clipped" else None

    def _truncated(self, mu: float) -> float:
        """AMC's exploration: a normal of σ around the actor's action ``mu``, drawn again until
        inside [-1, 1] (no mass piles up on a bound, as clipping puts it). NumPy's global
        generator, seeded per episode: a resumed run draws what the live one would."""
        sigma = self._sigma()
        for _ in range(100):
            a = mu + sigma * float(np.random.normal())
            if -1.0 <= a <= 1.0:
                return a
        return float(np.clip(mu, -1.0, 1.0))

    @classmethod
    def _algorithm(cls) -> tuple[Any, str, dict[str, Any]]:
        from stable_baselines3 import DDPG

        return DDPG, "MlpPolicy", {}

    def _choose(self, action: np.ndarray, *, warmup: bool) -> tuple[np.ndarray, np.ndarray]:
        """The learner's action for the env's current step (a warm-up episode's planned one,
        else the actor's with noise), clamped as the env will; stored as applied."""
        env = self.env
        if warmup and self.warmup == "projected":
            if env.t == 0:  # seeded by the episode's index: a resumed run draws what the live one would
                self._plan = env.warmup_units(np.random.default_rng([self.seed, self.episodes, 1]))
            u = self._plan[env.t]
        else:
            if self.noise == "truncated" and not warmup:
                action = self._truncated(float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0)))
            u = env.unit_of(action)
        applied = np.full((1, 1), env.action_of(env.clamp(u)), dtype=np.float32)
        return applied, self.model.policy.scale_action(applied)

    def _build(self, lr: float, net_arch: list[int], kwargs: dict[str, Any]) -> Any:
        DDPG = _learner_class()  # noqa: N806 - SB3's DDPG, actions chosen by _choose

        if self.in_flight > 1 and "train_freq" in kwargs:
            raise UserError(f"agent 'ddpg' trains once per batch of episodes_in_flight={self.in_flight} episodes: leave train_freq out (or set episodes_in_flight: 1)", field="agent.config.train_freq")
        if self.in_flight * self.steps_per_episode > self.buffer_size:
            raise UserError(f"buffer_size ({self.buffer_size}) must hold a batch of episodes_in_flight={self.in_flight} episodes of {self.steps_per_episode} steps", field="agent.config.buffer_size")
        kwargs = {**self.algo_defaults, **kwargs}
        model = DDPG(
            "MlpPolicy",
            self.env,
            learning_rate=lr,
            buffer_size=self.buffer_size,
            learning_starts=self.warmup_episodes * self.steps_per_episode,
            batch_size=self.batch_size,
            train_freq=kwargs.pop("train_freq", (self.in_flight, "episode")),  # AMC: after every episode
            action_noise=self._noise(),
            policy_kwargs={"net_arch": net_arch},
            seed=self.seed,
            device="cpu",
            verbose=0,
            **kwargs,
        )
        model.choose = self._choose
        model.actor_lr = self.actor_learning_rate
        return model

    def _after_episode(self) -> None:
        self.model.action_noise = self._noise()

    def tell(self, candidate: Candidate) -> None:
        """Also counts repeated policies in a row (each adds to the noise); replays count too, so a
        resumed run explores as the live one did."""
        self.streak = self.streak + 1 if candidate.duplicate_of is not None else 0
        super().tell(candidate)

    def _replay(self, candidate: Candidate, reward: float) -> None:
        buf = self.model.replay_buffer
        shaped = self._advantage(reward)
        for obs, action, _, next_obs, done in self.env.episode_transitions(candidate.params, reward):
            scaled = self.model.policy.scale_action(action)  # SB3 stores actions in [-1, 1]
            buf.add(obs[None], next_obs[None], scaled[None], np.array([shaped]), np.array([done]), [{}])
        self.model.num_timesteps += self.steps_per_episode
        self.episodes += 1
        self.model.action_noise = self._noise()


class PPOAgent(_SB3Agent):
    """PPO on the same env (on-policy: history is not replayed, the policy is restored), with
    relative actions and a Gaussian policy of σ 0.37 at start: its first episodes are near
    the even spread of the budget rather than AMC-style lopsided ones."""

    name = "ppo"
    algorithm = "PPO"
    derived = frozenset({"n_steps"})
    algo_defaults = {"n_epochs": 10, "gamma": 1.0}  # an episode's return is its final reward, undiscounted
    computed = frozenset({"batch_size"})  # the whole rollout
    # 0 spreads the budget left evenly: the first policies are near-even ones, not lopsided
    default_actions = "relative"

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, episodes_per_update: int = 4, episodes_in_flight: int | None = None, **kwargs: Any) -> None:
        _number("episodes_per_update", episodes_per_update, 1, None, integer=True)
        self.episodes_per_update = int(episodes_per_update)
        # a rollout's episodes all use the same policy: they can all be out at once, and are
        # by default (the updates are the same as one at a time)
        in_flight = self.episodes_per_update if episodes_in_flight is None else episodes_in_flight
        _number("episodes_in_flight", in_flight, 1, None, integer=True)
        if self.episodes_per_update % int(in_flight):
            raise UserError(f"episodes_in_flight ({in_flight}) must divide episodes_per_update ({self.episodes_per_update}): a rollout is a whole number of batches", field="agent.config.episodes_in_flight")
        super().__init__(space, objectives, seed=seed, episodes_in_flight=int(in_flight), **kwargs)

    @classmethod
    def _algorithm(cls) -> tuple[Any, str, dict[str, Any]]:
        from stable_baselines3 import PPO

        # σ e^-1 ≈ 0.37 (SB3's default, 1, clips a third of the first actions to -1 or 1)
        return PPO, "MlpPolicy", {"log_std_init": -1.0}

    def _build(self, lr: float, net_arch: list[int], kwargs: dict[str, Any]) -> Any:
        algo, policy, extra = self._algorithm()
        n_steps = self.episodes_per_update * self.steps_per_episode
        kwargs = {**self.algo_defaults, **kwargs}
        return algo(
            policy,
            self.env,
            learning_rate=lr,
            n_steps=n_steps,
            batch_size=kwargs.pop("batch_size", n_steps),
            policy_kwargs={"net_arch": net_arch, **{k: kwargs.pop(k, v) for k, v in extra.items()}},
            seed=self.seed,
            device="cpu",
            verbose=0,
            **kwargs,
        )
