"""Conformance of search agents: :func:`check_agent` runs the ask/tell contract with a fake
evaluator (no model is run)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from automc.compress.spaces import SearchSpace
from automc.search.agent import Agent
from automc.search.candidate import FAILED, Candidate


def check_agent(make_agent: Callable[[], Agent], space: SearchSpace, *, candidates: int = 12, seed: int = 0) -> None:
    """Check the ``Agent`` contract.

    ``make_agent()`` must return a fresh agent (same seed each call). Rules: ``ask(number)``
    returns valid, JSON-serialisable policies of ``space``; ``tell`` accepts completed and
    failed candidates; ``state_dict`` survives ``torch.save``/``torch.load(weights_only=True)``
    and ``load_state_dict``; two agents built alike propose the same sequence given the same
    outcomes (determinism for a seed); an agent resumed half-way (:meth:`Agent.resume` with the
    state it saved then) continues the sequence — exactly when it declares ``exact_resume``,
    else at least not from its seed's first proposals — and one resumed without its state
    (damaged file) keeps proposing valid policies; agents that allow several outstanding
    proposals match each outcome to its proposal by number, also when outcomes arrive out of
    order.
    """
    half = candidates // 2
    first, told, state = _run(make_agent, space, [], None, candidates, save_at=half)
    second, _, _ = _run(make_agent, space, [], None, candidates)
    assert first == second, "two agents with the same seed proposed different policies for the same outcomes: draw only from generators seeded with the agent's seed"
    resumed, _, _ = _run(make_agent, space, told[:half], state, candidates)
    assert len(resumed) == candidates - half
    probe = make_agent()
    exact = probe.exact_resume
    probe.close()
    if exact:
        assert resumed == first[half:], "a resumed agent proposed other policies than it would have without the stop: save what it needs in state_dict"
    else:
        assert resumed != first[: len(resumed)], "a resumed agent started its seed's sequence again"
    rebuilt, _, _ = _run(make_agent, space, told[:half], None, candidates)
    assert len(rebuilt) == candidates - half
    _check_out_of_order(make_agent, space)


def _outcome(space: SearchSpace, i: int, params: dict[str, Any]) -> Candidate:
    """A fake evaluation: every fifth candidate fails, the others score by their policy."""
    if i % 5 == 4:
        return Candidate(i, params, state=FAILED, error="fake failure")
    units = [d.to_unit(params[k]) for k, d in space.dimensions.items()]
    score = float(np.mean(units)) - float(np.var(units))
    return Candidate(i, params, {"accuracy": 0.5 + 0.4 * score, "macs": 1e6 * float(np.mean(units))}, score)


def _check_proposal(space: SearchSpace, params: dict[str, Any] | None) -> dict[str, Any]:
    assert params is not None, "ask() returned None before the agent could have finished"
    assert space.validate(params) == params, "ask() returned an invalid or incomplete policy: return space.validate(params)"
    json.dumps(params)
    return params


def _roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``, as the runner does."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _run(
    make_agent: Callable[[], Agent], space: SearchSpace, history: list[Candidate], state: dict[str, Any] | None, candidates: int, *, save_at: int | None = None
) -> tuple[list[dict[str, Any]], list[Candidate], dict[str, Any] | None]:
    """Resume from ``history`` and ``state``, then ask/tell up to ``candidates``; returns the
    proposals, the outcomes and the state saved after ``save_at`` outcomes."""
    agent = make_agent()
    assert isinstance(agent, Agent), f"{type(agent).__name__} does not subclass automc.search.agent.Agent"
    agent.resume(state, history)
    proposals, told, saved = [], [], None
    try:
        for i in range(len(history), candidates):
            params = _check_proposal(space, agent.ask(i))
            c = _outcome(space, i, params)
            agent.tell(c)
            proposals.append(params)
            told.append(c)
            if save_at is not None and i + 1 == save_at:
                saved = _roundtrip(agent.state_dict())
        agent.load_state_dict(_roundtrip(agent.state_dict()))
    finally:
        agent.close()
    return proposals, told, saved


def _check_out_of_order(make_agent: Callable[[], Agent], space: SearchSpace) -> None:
    """Three proposals outstanding, told newest first: each outcome reaches its own proposal."""
    agent = make_agent()
    try:
        if agent.max_outstanding is not None and agent.max_outstanding < 3:
            return
        asked = {n: _check_proposal(space, agent.ask(n)) for n in range(3)}
        for n in (2, 0, 1):
            agent.tell(_outcome(space, n, asked[n]))
        _check_proposal(space, agent.ask(3))
    finally:
        agent.close()
