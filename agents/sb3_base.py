"""The base of the stable-baselines3 agents (DDPG, PPO, MNasNet controller): ask/tell over
:class:`automc.search.gym_env.CompressionEnv`.

Design: SB3's ``learn()`` owns its loop, the runner owns ask/tell. ``learn()`` therefore runs
in a learner thread on the env; the env's last ``step`` of an episode hands the finished
policy to ``ask()``. Episodes go out in batches of ``episodes_in_flight``: the first ones of a
batch get a placeholder reward of 0 and the learner rolls the next episode at once; the last
one blocks until ``tell()`` has returned every reward of the batch, which are then written
into the learner's buffer where the placeholders went, before the learner trains on them
(DDPG trains once per batch; PPO's rollout is a whole number of batches, so its updates see
exactly what they would have one episode at a time). A batch of N keeps N workers busy. The
main thread and the learner strictly take turns (the main thread takes a whole batch, and the
last ``tell`` of a batch returns only once the learner has produced the next batch and is
waiting again), so runs are deterministic for a seed, and evaluation can happen anywhere
(this process, a Ray worker) — the agent never evaluates.

Resuming: DDPG's replay buffer is refilled from the stored candidates (each is a
deterministic episode); the networks and their optimizers come back from ``state_dict``
(tensors only; loaded with ``weights_only=True``); and every episode starts from random
state seeded by (seed, episode index) — warm-up actions, exploration noise, minibatches — so a
resumed run continues the sequence instead of replaying its seed's first episodes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from automc.agents.sb3_args import check_algo_kwargs, check_own_settings, number as _number, settable, unasked
from automc.compress.spaces import SearchSpace
from automc.config import Constraint, Objective
from automc.errors import UserError, notice, user_code_error
from automc.search.agent import Agent
from automc.search.candidate import Candidate
from automc.search.gym_env import CompressionEnv

_STOP = object()


class _Stop(Exception):
    pass


class _SB3Agent(Agent):
    algorithm: ClassVar[str] = ""
    # the learner has rolled part of the next episode (and trained on it) when the state is
    # saved: a resumed agent continues with restored networks and buffer, not bit-identically
    exact_resume: ClassVar[bool] = False
    # SB3 arguments the agent derives itself (from its own settings), never passed through
    derived: ClassVar[frozenset[str]] = frozenset()
    # what a continuous action means (CompressionEnv.unit_of); tokens ignore it
    default_actions: ClassVar[str] = "absolute"
    # how the env scales layer features (CompressionEnv's ``observation``; fixed in runs recorded before it)
    default_observation: ClassVar[str] = "fixed"
    added_settings: ClassVar[Mapping[str, Any]] = {"observation": "fixed"}
    # SB3 arguments given automc's value unless the config sets them (recorded with SB3's defaults)
    algo_defaults: ClassVar[Mapping[str, Any]] = {}
    # SB3 arguments computed from the agent's other settings unless the config sets them
    computed: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        constraints: Sequence[Constraint] = (),
        budget: float | None = None,
        budget_floor: float | None = 0.95,
        failure_reward: float = -1.0,
        learning_rate: float = 1e-3,
        net_arch: Sequence[int] = (64, 64),
        episodes_in_flight: int = 1,
        actions: str | None = None,
        observation: str | None = None,
        **algo_kwargs: Any,
    ) -> None:
        super().__init__(space, objectives, seed=seed, constraints=constraints)
        _number("episodes_in_flight", episodes_in_flight, 1, None, integer=True)
        self.max_outstanding = self.in_flight = int(episodes_in_flight)
        if budget is not None:
            _number("budget", budget, 0, 1, low_open=True)
        if budget_floor is not None:
            _number("budget_floor", budget_floor, 0, 1)
        _number("failure_reward", failure_reward)
        _number("learning_rate", learning_rate, 0, None, low_open=True)
        actions = self.default_actions if actions is None else actions
        observation = self.default_observation if observation is None else observation
        check_own_settings(self.name, net_arch, {"actions": actions, "observation": observation})
        self.budget = budget
        self.failure_reward = float(failure_reward)
        self._params_q: queue.Queue[Any] = queue.Queue()
        self._reward_q: queue.Queue[Any] = queue.Queue(maxsize=1)
        # main thread: the batch's policies not yet asked, and per episode of the batch its
        # candidate number (once asked) and reward (once told)
        self._ready: list[dict[str, Any]] = []
        self._numbers: list[int] = []
        self._rewards: dict[int, float] = {}
        # learner thread: where each handed-over episode of the batch ends in its buffer
        self._ends: list[int] = []
        self._deferred: list[tuple[Candidate, float]] = []  # replays told while a batch is out
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.episodes = 0
        # episodes end within [budget_floor, 1] × budget: they spend it, not far under it
        self.env = CompressionEnv(space, budget=budget, floor=budget_floor, on_episode=self._on_episode, tokens=self._tokens(), actions=actions, observation=observation)
        self.steps_per_episode = len(self.env.names)
        check_algo_kwargs(self.name, self._algorithm(), self.derived, algo_kwargs)
        try:
            self.model = self._build(float(learning_rate), list(net_arch), algo_kwargs)
        except (TypeError, ValueError, AssertionError) as exc:  # SB3 rejects a passed-through setting
            raise user_code_error(f"agent {self.name!r}: {self.algorithm} rejects its settings {dict(algo_kwargs)}", exc, field="agent.config") from exc
        from stable_baselines3.common.logger import Logger

        # SB3's default logger makes an empty folder in the temp dir at every learn(): log nowhere
        self.model.set_logger(Logger(None, []))
        self._reseed()

    def use_target(self, cost: Callable[[Mapping[str, Any]], float], budget: float) -> bool:
        """The environment clamps each step against the run's target (AMC's clamp)."""
        if self.budget is not None:
            raise UserError("agent.config.budget and the experiment's target both limit the cost: keep one (target: {macs: 0.5} replaces budget: 0.5)", field="agent.config.budget")
        self.budget = budget
        self.env.budget, self.env.cost = budget, cost
        return True

    def extra_settings(self) -> dict[str, Any]:
        """``actions`` and ``observation`` as resolved, and what the algorithm gets unasked: SB3's
        defaults, :attr:`algo_defaults` over them, and the policy settings of :meth:`_algorithm`."""
        return {"actions": self.env.actions, "observation": self.env.observation_mode, **unasked(self._algorithm(), self.algo_defaults, self.derived | self.computed)}

    @classmethod
    def passed_through(cls) -> frozenset[str]:
        return settable(cls._algorithm(), cls.derived)

    def _tokens(self) -> int | None:
        """None: continuous actions in [-1, 1]; an int: discrete tokens (the env's ``tokens``)."""
        return None

    # -- learner side ---------------------------------------------------------------------------
    def _on_episode(self, params: dict[str, Any]) -> float:
        """The env's last step: hand the policy over; the batch's last episode waits for every
        reward of the batch, writes them into the buffer and returns its own."""
        self._ends.append(self._buffer().pos)  # where this episode's last transition goes
        self._params_q.put(params)
        if len(self._ends) < self.in_flight:
            self._next_episode()
            return 0.0  # a placeholder: the batch's last episode writes the real one
        rewards = self._reward_q.get()
        if rewards is _STOP:
            raise _Stop
        ends, self._ends = self._ends, []
        shaped = [self._shape_reward(float(r), end, stored=i < len(ends) - 1) for i, (r, end) in enumerate(zip(rewards, ends))]
        for candidate, reward in self._deferred:  # after the positions above were used
            self._replay(candidate, reward)
        self._deferred = []
        self._next_episode()
        return shaped[-1]

    def _next_episode(self) -> None:
        self.episodes += 1
        self._after_episode()
        self._reseed()

    def _buffer(self) -> Any:
        """The learner's transition buffer (``rewards`` indexed by position, ``pos``)."""
        return self.model.rollout_buffer

    def _shape_reward(self, reward: float, end: int, *, stored: bool) -> float:
        """The reward the learner sees for the episode whose last transition goes to position
        ``end`` of its buffer (already there with a placeholder when ``stored``; DDPG: against
        a moving baseline, and given to every step of the episode)."""
        if stored:
            self._buffer().rewards[end] = reward
        return reward

    def _after_episode(self) -> None:
        pass

    def _reseed(self) -> None:
        """Seed Python, NumPy, torch and the action space from (seed, episodes): what an
        episode draws depends on its index, not on how the run got there."""
        self.model.set_random_seed(int(np.random.SeedSequence([self.seed, self.episodes]).generate_state(1)[0]))

    def _learn(self) -> None:
        try:
            self.model.learn(total_timesteps=10**9, reset_num_timesteps=False)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - surfaced in ask()
            self._error = exc
            self._params_q.put(_STOP)

    def _next_batch(self) -> list[dict[str, Any]]:
        """The learner's next ``in_flight`` policies (it then waits for their rewards)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._learn, name=f"automc-{self.name}", daemon=True)
            self._thread.start()
        batch = []
        for _ in range(self.in_flight):
            item = self._params_q.get()
            if item is _STOP:
                raise RuntimeError(f"{self.name} learner stopped: {self._error!r}") from self._error
            batch.append(item)
        return batch

    # -- ask / tell -------------------------------------------------------------------------------
    def can_ask(self) -> bool:
        """Not once the batch's policies are all out (some answered at once from the record,
        say) while rewards are still awaited: the next batch needs every reward of this one."""
        return bool(self._ready) or not self._numbers

    def ask(self, number: int) -> dict[str, Any] | None:
        if not self._ready:
            if self._numbers:
                raise RuntimeError(f"{self.name}: asked for more than episodes_in_flight={self.in_flight} policies before their rewards")
            self._ready = self._next_batch()  # the first batch (later ones come with the last tell)
        self._numbers.append(number)
        return dict(self._ready.pop(0))

    def tell(self, candidate: Candidate) -> None:
        reward = candidate.reward if candidate.ok and candidate.reward is not None else self.failure_reward
        if candidate.number in self._numbers:
            self._rewards[candidate.number] = reward
            if len(self._rewards) == self.in_flight:  # the batch is complete: the learner goes on
                self._reward_q.put([self._rewards[n] for n in self._numbers])
                self._numbers, self._rewards = [], {}
                self._ready = self._next_batch()  # the learner is idle again: state_dict is consistent
        elif self._thread is not None:  # the learner has a batch out: it replays this when that closes
            self._deferred.append((candidate, reward))
        else:
            self._replay(candidate, reward)

    def _replay(self, candidate: Candidate, reward: float) -> None:
        """A finished candidate from an earlier run of this search."""
        self.episodes += 1

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            while True:
                try:
                    self._reward_q.put_nowait(_STOP)
                    break
                except queue.Full:
                    self._reward_q.get_nowait()
            self._thread.join(timeout=10)

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # -- state --------------------------------------------------------------------------------------
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {name or "policy": m.optimizer for name, m in self.model.policy.named_modules() if isinstance(getattr(m, "optimizer", None), torch.optim.Optimizer)}

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimizers (the history is replayed: see :meth:`resume`)."""
        return {
            "policy": {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()},
            "optimizers": {k: opt.state_dict() for k, opt in self._optimizers().items()},
            "episodes": torch.tensor(self.episodes),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "policy" in state:
            try:
                self.model.policy.load_state_dict(state["policy"])
            except RuntimeError as exc:  # saved by a version with other networks (e.g. continuous actions)
                notice(f"{self.name}: the saved networks do not fit this version's ({str(exc).splitlines()[0][:120]}): learning starts afresh; the record is kept")
                return
        for name, opt in self._optimizers().items():
            if name in state.get("optimizers", {}):
                opt.load_state_dict(state["optimizers"][name])

    def resume(self, state: Mapping[str, Any] | None, history: Sequence[Candidate]) -> None:
        """Replay every finished candidate (DDPG: into the replay buffer), then restore the
        networks and optimizers, then seed the next episode by its index."""
        for c in history:
            self.tell(c)
        if state:
            self.load_state_dict(state)
        self._reseed()

    def _build(self, lr: float, net_arch: list[int], kwargs: dict[str, Any]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def _algorithm(cls) -> tuple[Any, str, dict[str, Any]]:  # pragma: no cover - abstract
        """The SB3 class, its policy name and extra policy settings (with defaults)."""
        raise NotImplementedError
