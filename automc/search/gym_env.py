"""``CompressionEnv``: a gymnasium environment that decides a policy one dimension at a time.

The AMC formulation: an episode walks the search space's dimensions in network order; each
step's observation describes the current layer (index, type, in/out channels, kernel,
stride, its share of the cost — on fixed scales, or with ``observation="minmax"`` each
stretched to [0, 1] over the layers, as AMC normalises its state — the cost already cut, the
cost still to decide, the previous action, and which knob it is), the action a in [-1, 1]
sets that dimension's value on the unit scale: (a + 1) / 2 with ``actions="absolute"``
(AMC's), or relative to the value that would spread the budget left evenly over this and the
later dimensions with ``"relative"`` (:meth:`CompressionEnv.unit_of`). With a ``budget`` (a
fraction of the uncompressed cost), actions are clamped so that the episode can always end
within it — even if every later dimension took its most compressing value — so every
finished episode meets the budget; with a ``floor`` they are also raised where the episode
could otherwise no longer reach ``floor × budget``, so episodes spend the budget instead of
ending far under it.

The cost is analytic and instant (the clamp evaluates it often): by default
:class:`~automc.search.cost_model.CostModel` — MACs scaled by the kept input/output channel
fractions (``ratio``) or density (``density``), times ``w × a`` when bit-widths are searched
(BitOps). It is relative to the space's default policy — the uncompressed model for pruning,
all-max-bits (8×8 by default) for mixed precision — so ``budget=0.25`` on a mixed-precision
space means a quarter of the 8-bit model's BitOps. A run-level ``target`` passes its own
relative estimator as ``cost`` (:mod:`automc.search.projection`).

With ``tokens`` the action is a token instead (MNasNet's controller): at each step one of N,
N chosen so that every value of each choice gets the same number of tokens
(:func:`token_count`); real-valued dimensions get ``tokens`` equal steps (with ``"relative"``
actions, steps from -1 to 1). The clamp then applies to the token's value as to a continuous
action.

The reward of an episode is only known after the candidate is evaluated elsewhere (another
process, a Ray worker), so the final ``step`` hands the finished policy to ``on_episode``
and returns the reward it gets back; intermediate steps return 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from automc.compress.spaces import Choice, SearchSpace, split_name
from automc.search import policy_path
from automc.search.cost_model import CostModel
from automc.search.env_actions import from_unit, last_true, to_unit, token_count

__all__ = ["KNOBS", "OBS_SIZE", "CompressionEnv", "from_unit", "to_unit", "token_count"]

KNOBS = ("ratio", "density", "w_bits", "a_bits")
OBS_SIZE = 10 + len(KNOBS)


class CompressionEnv(gym.Env):
    """One episode = one policy; see the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        space: SearchSpace,
        *,
        budget: float | None = None,
        floor: float | None = None,
        on_episode: Callable[[dict[str, Any]], float] | None = None,
        cost: Callable[[Mapping[str, Any]], float] | None = None,
        tokens: int | None = None,
        actions: str = "absolute",
        observation: str = "fixed",
    ) -> None:
        super().__init__()
        self.space = space
        self.names = list(space.dimensions)
        self.tokens = token_count(space, tokens) if tokens is not None else None
        self.cost = cost or CostModel(space)
        self.budget = budget
        self.floor = floor  # episodes end at >= floor × budget (None: no lower clamp)
        self.on_episode = on_episode or (lambda params: 0.0)
        self.actions = actions  # "relative": 0 is this step's balanced value (see unit_of)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (OBS_SIZE,), dtype=np.float32)
        # actions in [-1, 1] (unit value (a + 1) / 2): a Gaussian policy's initial mean, 0, is
        # the middle of the range; on [0, 1] half of PPO's first actions were clipped to 0
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32) if self.tokens is None else gym.spaces.Discrete(self.tokens)
        infos = [dict(d.info) for d in space.dimensions.values()]
        self._max_ch = max([float(i.get("channels", 1) or 1) for i in infos] + [float(i.get("in_channels", 1) or 1) for i in infos])
        self._layer_share = self._shares(infos)
        self.observation_mode = observation
        self._static = self._layer_features(infos, minmax=observation == "minmax")
        self._reset_state()

    @staticmethod
    def _shares(infos: list[dict[str, Any]]) -> list[float]:
        """Each dimension's share of the MACs (from its ``info``)."""
        macs = [max(float(i.get("macs", 0.0)), 0.0) for i in infos]
        total = sum(macs) or 1.0
        return [m / total for m in macs]

    def _layer_features(self, infos: list[dict[str, Any]], *, minmax: bool) -> np.ndarray:
        """Per dimension, what describes its layer (index, linear or not, in/out channels,
        kernel, stride, share of the cost): on fixed scales (``fixed``: channels over the
        widest layer's, kernel over 7, stride over 4), or each column stretched to [0, 1]
        over the dimensions (``minmax``, AMC's; a column equal for all is left as it is), so
        that layers differing only a little in cost share (a residual group against an
        inner convolution of the same stage) look clearly different to the networks."""
        rows = []
        for t, info in enumerate(infos):
            kernel = (info.get("kernel") or [1])[0]
            stride = (info.get("stride") or [1])[0]
            rows.append([
                t / max(1, len(self.names) - 1),
                1.0 if info.get("type") == "linear" else 0.0,
                float(info.get("in_channels", 0) or 0) / self._max_ch,
                float(info.get("channels", 0) or 0) / self._max_ch,
                min(float(kernel) / 7.0, 1.0),
                min(float(stride) / 4.0, 1.0),
                self._layer_share[t],
            ])
        table = np.asarray(rows, dtype=np.float64)
        if minmax:
            lo, hi = table.min(axis=0), table.max(axis=0)
            spread = hi > lo
            table[:, spread] = (table[:, spread] - lo[spread]) / (hi - lo)[spread]
        return table

    def _reset_state(self) -> None:
        self.t = 0
        self.params: dict[str, Any] = {}
        self.prev_action = 1.0
        self._memo: dict[str, int] = {}  # the step's bisections (also cleared: the cost may be refitted)
        self._stamp: tuple[Any, ...] = ()

    def _once(self, key: str, bisect: Callable[[], int]) -> int:
        """``bisect()`` once per step: the clamp's bounds and the balanced value depend only on
        what is decided so far (an agent that clamps its own action before stepping, as DDPG
        does, asks for them twice)."""
        stamp = (self.t, len(self.params), self.budget, self.floor)
        if stamp != self._stamp:
            self._memo, self._stamp = {}, stamp
        if key not in self._memo:
            self._memo[key] = bisect()
        return self._memo[key]

    def _policy_with(self, value_for_t: Any, rest: str) -> dict[str, Any]:
        p = dict(self.params)
        p[self.names[self.t]] = value_for_t
        for k in self.names[self.t + 1 :]:
            d = self.space.dimensions[k]
            p[k] = d.from_unit(0.0) if rest == "low" else d.default
        return p

    def observation(self) -> np.ndarray:
        name = self.names[self.t]
        knob = split_name(name)[1]
        decided = dict(self.params)
        for k in self.names[self.t :]:
            decided[k] = self.space.dimensions[k].default
        cut = 1.0 - self.cost(decided)
        remaining = sum(self._layer_share[self.t + 1 :])
        obs = [*self._static[self.t], min(max(cut, 0.0), 1.0), min(max(remaining, 0.0), 1.0), self.prev_action]
        obs += [1.0 if knob == k else 0.0 for k in KNOBS]
        return np.asarray(obs, dtype=np.float32)

    def clamp(self, u: float) -> float:
        """``u`` moved into [lowest, highest]: the highest unit value that still lets the
        episode meet the budget (every later dimension at its cheapest), and — with a
        ``floor`` — the lowest that still lets it reach ``floor × budget`` (every later
        dimension at its default). The budget wins where the two cross."""
        if self.budget is None:
            return u
        d = self.space.dimensions[self.names[self.t]]
        budget = self.budget
        # on a grid of 0.01; the cost grows with the value, so both bounds are found by bisection
        top = self._once("top", lambda: last_true(lambda i: self.cost(self._policy_with(d.from_unit(i / 100), "low")) <= budget + 1e-9))
        if top < 0:
            return 0.0  # nothing fits (the cheapest setting included): the cheapest it is
        # (1e-4: an action that went through float32 lands a hair under its grid point)
        chosen = min(top, int(np.floor(u * 100 + 1e-4))) / 100
        if self.floor is None:
            return chosen
        target = self.floor * budget
        reaches = lambda i: self.cost(self._policy_with(d.from_unit(i / 100), "high")) >= target - 1e-9  # noqa: E731
        if reaches(round(chosen * 100)):
            return chosen
        lowest = self._once("lowest", lambda: last_true(lambda i: not reaches(i)) + 1)  # the first grid value that still reaches the floor
        return min(lowest, top) / 100

    def warmup_units(self, rng: np.random.Generator) -> list[float]:
        """A warm-up episode's action per step: a random policy (:meth:`SearchSpace.sample`,
        as the ``random`` agent draws) moved along the projection's path
        (:mod:`automc.search.policy_path`) to spend the budget, as the runner projects the
        random agent's proposals.

        AMC draws each warm-up step's action at random instead, and the clamp then meets the
        budget greedily: the first layers keep what they drew and the last ones are squeezed
        to their bound. A critic trained on such episodes learns that keeping a layer early
        costs the rest of the network — on ResNet-20's 16-channel stem group (8 or 16 kept)
        DDPG settled on 8 in every seed and stayed there (see docs/search.md)."""
        drawn = self.space.sample(rng)
        if self.budget is not None:
            budget = self.budget
            s = policy_path.largest(self.space.dimensions, drawn, -1.0, 1.0, lambda p: self.cost(p) <= budget + 1e-9, 30)
            drawn = policy_path.at(self.space.dimensions, drawn, s)
        return [float(self.space.dimensions[k].to_unit(drawn[k])) for k in self.names]

    def balanced_unit(self) -> float:
        """The unit value that, given to this and every later dimension, spends what is left
        of the budget: the largest on the clamp's 0.01 grid whose policy meets it (0.5
        without a budget)."""
        if self.budget is None:
            return 0.5
        budget, rest = self.budget, self.names[self.t :]

        def fits(i: int) -> bool:
            p = dict(self.params)
            p.update({k: self.space.dimensions[k].from_unit(i / 100) for k in rest})
            return self.cost(p) <= budget + 1e-9

        return max(self._once("balanced", lambda: last_true(fits)), 0) / 100

    def unit_of(self, action: Any) -> float:
        """The unit value a continuous action in [-1, 1] asks for at the current step.
        ``absolute``: (a + 1) / 2 (AMC's). ``relative``: moved from the step's balanced value b
        (:meth:`balanced_unit`) along the projection's path: b·(1 + a) below 0, b + a·(1 − b)
        above; a policy that does nothing (0) then spreads the budget evenly over the layers
        left instead of spending it on the first ones."""
        if self.actions == "absolute":
            return to_unit(action)
        return policy_path.moved(self.balanced_unit(), from_unit(to_unit(action)))

    def action_of(self, u: float) -> float:
        """The continuous action that asks for unit value ``u`` at the current step (the
        inverse of :meth:`unit_of`)."""
        if self.actions == "absolute":
            return from_unit(u)
        return policy_path.step_to(self.balanced_unit(), u)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._reset_state()
        return self.observation(), {}

    def token_unit(self, token: int) -> float:
        """The unit value of ``token`` for the current dimension: a choice's tokens split
        evenly among its values, a real dimension's span its range in equal steps."""
        d = self.space.dimensions[self.names[self.t]]
        n = int(self.tokens or 1)
        if isinstance(d, Choice):
            return float(d.to_unit(d.values[min(len(d.values) - 1, token * len(d.values) // n)]))
        return token / max(1, n - 1)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.tokens is not None:
            token = int(np.asarray(action).reshape(-1)[0])
            real = not isinstance(self.space.dimensions[self.names[self.t]], Choice)
            if self.actions == "relative" and real:  # a real dimension's tokens: actions -1 … 1
                u = self.unit_of(np.array([2.0 * token / max(1, int(self.tokens) - 1) - 1.0]))
            else:
                u = self.token_unit(token)
        else:
            u = self.unit_of(action)
        u = self.clamp(u)
        name = self.names[self.t]
        self.params[name] = self.space.dimensions[name].from_unit(u)
        self.prev_action = u
        if self.t + 1 < len(self.names):
            self.t += 1
            return self.observation(), 0.0, False, False, {}
        params = dict(self.params)
        reward = float(self.on_episode(params))
        obs = self.observation()
        return obs, reward, True, False, {"params": params, "cost": self.cost(params)}

    def episode_transitions(self, params: Mapping[str, Any], reward: float) -> list[tuple[np.ndarray, np.ndarray, float, np.ndarray, bool]]:
        """(obs, action, reward, next_obs, done) of the episode that produced ``params``
        (to refill an off-policy replay buffer from a stored run)."""
        self._reset_state()
        out = []
        for i, name in enumerate(self.names):
            obs = self.observation()
            u = float(self.space.dimensions[name].to_unit(params[name]))
            action = self.action_of(u)
            self.params[name] = params[name]
            self.prev_action = u
            last = i == len(self.names) - 1
            if not last:
                self.t += 1
            out.append((obs, np.array([action], dtype=np.float32), reward if last else 0.0, self.observation(), last))
        self._reset_state()
        return out
