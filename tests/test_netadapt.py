"""The ``netadapt`` agent: NetAdapt's iterations (one dimension shrunk per proposal, to the
largest value meeting a decaying reduction; the most accurate proposal kept) until the
target holds, and a search that fine-tunes every proposal briefly and stops there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from automc.config import Objective
from automc.errors import UserError
from automc.run import RunDir
from automc.search.agent import build_agent
from automc.search.candidate import Candidate
from automc.search.cost_model import CostModel
from automc.search.store import Store
from tests.conftest import run_cli
from tests.search_support import TINY, write_config

OBJECTIVES = [Objective(metric="accuracy", direction="maximize")]


def _accuracy(params: dict, space) -> float:  # noqa: ANN001 - a fake score: wider early layers matter more
    units = [d.to_unit(params[k]) for k, d in space.dimensions.items()]
    return 0.5 + 0.4 * float(np.dot(units, np.linspace(1.0, 0.2, len(units)))) / len(units)


def test_each_iteration_shrinks_one_dimension_to_the_largest_value_meeting_its_reduction(tiny_space) -> None:
    agent = build_agent("netadapt", tiny_space, OBJECTIVES, seed=0, config={"budget": 0.5, "initial": 0.1, "decay": 0.9})
    cost = CostModel(tiny_space)
    number, costs = 0, [1.0]
    while True:
        before = dict(agent.policy)
        batch = []
        while agent.can_ask():
            params = agent.ask(number)
            if params is None:
                break
            batch.append((number, params))
            number += 1
        if not batch:
            break
        limit = agent.log[-1]["limit"]
        assert limit == pytest.approx(max(costs[-1] - 0.1 * 0.9 ** (len(costs) - 1), 0.5))
        for _, params in batch:
            changed = [k for k in params if params[k] != before[k]]
            assert len(changed) == 1 and cost(params) <= limit + 1e-12
            k = changed[0]
            d = tiny_space.dimensions[k]
            up = d.from_unit(min(1.0, d.to_unit(params[k]) + 1 / 200))
            assert up == params[k] or cost({**params, k: up}) > limit, f"{k} could keep more"
        scores = {n: _accuracy(p, tiny_space) for n, p in batch}
        for n, params in reversed(batch):  # out of order: matched by number
            agent.tell(Candidate(n, params, {"accuracy": scores[n]}, scores[n]))
        best = max(batch, key=lambda b: scores[b[0]])[1]
        assert agent.policy == best, "the most accurate proposal must become the policy"
        costs.append(cost(agent.policy))
    assert all(b < a for a, b in zip(costs, costs[1:])), costs
    assert 0.45 <= costs[-1] <= 0.5 and costs[-2] > 0.5, "it must stop as soon as the target holds, at it"
    assert agent.ask(number) is None


def test_it_needs_a_resource_constraint(tiny_space) -> None:
    agent = build_agent("netadapt", tiny_space, OBJECTIVES, seed=0)
    with pytest.raises(UserError, match="needs a resource constraint: give the experiment a target"):
        agent.ask(0)


def test_a_netadapt_search_fine_tunes_every_proposal_and_stops_at_the_target(tmp_path: Path) -> None:
    cfg = {
        **TINY,
        "model": {"name": "small_cnn", "train": {"epochs": 3}},
        "target": {"macs": 0.6},
        "agent": {"name": "netadapt", "config": {"initial": 0.15, "decay": 0.9}},
        "reward": {"name": "accuracy"},
        "fidelity": {"steps": [10], "promote": "all"},
        "finetune": {"candidates": "best", "epochs": 1, "train_images": 256},
        "budget": {"candidates": 500},
    }
    run = tmp_path / "run"
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run), "--no-report")
    assert proc.returncode == 0, proc.stderr
    cands = [c for c in Store(RunDir(run).storage_url(None), "tiny").candidates() if c.ok]
    assert 0 < len(cands) < 500, "the search must end when the target holds, not spend the budget"
    assert all(c.metrics["fidelity_steps"] == 10 for c in cands), "every proposal gets the short fine-tune"
    base = cands[0].metrics["base_macs"]
    feasible = [c for c in cands if c.metrics["macs"] <= 0.6 * base]
    assert feasible and all(c.metrics["macs"] > 0.6 * base for c in cands if c not in feasible)
    assert len(list((run / "recovery").iterdir())) == 1, "the final model is recovered"
