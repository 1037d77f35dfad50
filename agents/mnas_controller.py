"""``mnas-controller``: MNasNet's controller — a recurrent policy emitting one token per
decision, trained with PPO — on the RL agents' environment (:mod:`automc.agents.sb3_agents`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from automc.agents.sb3_agents import PPOAgent
from automc.agents.sb3_args import number as _number

from automc.compress.spaces import Choice, SearchSpace
from automc.config import Objective
from automc.errors import UserError

TOKEN_SIGMA = float(np.exp(-1.0))  # the Gaussian token prior's σ: PPO's at start


class MNasControllerAgent(PPOAgent):
    """MNasNet-style controller: a recurrent (LSTM) policy emits the whole policy token by
    token — one discrete token per decision, each conditioned on the tokens before it through
    the LSTM state — trained with PPO (sb3-contrib's RecurrentPPO). A choice's tokens name its
    values (an operation, a kernel size); a real-valued dimension (a ratio) is cut into
    ``tokens`` equal steps of a relative action (the middle token spreads the budget left
    evenly). Normally used with the ``mnas`` reward (accuracy × (latency / target)^w).

    ``token_prior``: MNasNet's controller starts uniform over the tokens, which on a space of
    ratios draws each layer's anywhere on its grid (lopsided policies, as SB3's σ 1 gave PPO);
    ``gaussian`` starts it at PPO's law instead, a Gaussian of σ e^-1 around the middle token
    (``auto``, the default: gaussian when every decision is real-valued with relative
    actions, uniform otherwise — the middle value of a choice is no better a start)."""

    name = "mnas-controller"
    default_actions = "relative"  # a real dimension's middle token: the even spread (a choice's tokens name values)

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], *, seed: int = 0, tokens: int = 11, token_prior: str = "auto", **kwargs: Any) -> None:
        _number("tokens", tokens, 2, 64, integer=True)
        if token_prior not in ("auto", "uniform", "gaussian"):
            raise UserError(f"agent 'mnas-controller' token_prior must be 'auto', 'uniform' (MNasNet's) or 'gaussian' (first tokens near the middle one), got {token_prior!r}", field="agent.config.token_prior")
        choices = any(isinstance(d, Choice) for d in space.dimensions.values())
        if token_prior == "gaussian" and choices:
            raise UserError("agent 'mnas-controller' token_prior 'gaussian' favours the middle token, which means nothing for a choice's values: use it on spaces of ratios and densities only", field="agent.config.token_prior")
        self.grid = int(tokens)
        self.token_prior = token_prior
        self._choices = choices
        super().__init__(space, objectives, seed=seed, **kwargs)

    def _tokens(self) -> int | None:
        return self.grid

    def extra_settings(self) -> dict[str, Any]:
        """Also the token prior in force (``auto`` resolved when the run started)."""
        return {**super().extra_settings(), "token_prior": self.prior()}

    def prior(self) -> str:
        """The token prior in force (``auto`` resolved)."""
        if self.token_prior != "auto":
            return self.token_prior
        return "gaussian" if self.env.actions == "relative" and not self._choices else "uniform"

    def _build(self, lr: float, net_arch: list[int], kwargs: dict[str, Any]) -> Any:
        model = super()._build(lr, net_arch, kwargs)
        if self.prior() == "gaussian":
            # the policy's logits start near 0 (SB3 initialises the action head with gain
            # 0.01): its bias alone sets the first tokens' law, a Gaussian of σ e^-1 over the
            # tokens' actions in [-1, 1] — PPO's start, on the controller's grid
            actions = torch.linspace(-1.0, 1.0, int(self.env.tokens or self.grid))
            with torch.no_grad():
                model.policy.action_net.bias.copy_(-(actions**2) / (2.0 * TOKEN_SIGMA**2))
        return model

    @classmethod
    def _algorithm(cls) -> tuple[Any, str, dict[str, Any]]:
        from sb3_contrib import RecurrentPPO

        return RecurrentPPO, "MlpLstmPolicy", {"lstm_hidden_size": 64}
