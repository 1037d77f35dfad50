"""Multi-fidelity ranking (automc.recover.fidelity): successive halving promotes by the scores
recorded at each rung, promoted candidates are ranked by their fine-tuned accuracy, every
rung is in the Optuna record, a rerun computes nothing again, and a rung the training split
cannot hold is refused before the search."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import assert_user_error, run_cli
from tests.search_support import TINY, trials_of

ETA = 2
STEPS = [8, 24]
EXP = {**TINY, "name": "fid", "reward": {"name": "accuracy"}, "budget": {"candidates": 8}, "fidelity": {"steps": STEPS, "reduction_factor": ETA}, "finetune": {"candidates": "best", "epochs": 1, "batch_size": 32, "lr": 0.02}}


def _promoted(value: float, earlier: list[float]) -> bool:
    """Asynchronous successive halving's rule: within the best len // eta of the scores at
    this rung so far (the best one while fewer than eta are in)."""
    scores = sorted([*earlier, value], reverse=True)
    k = max(len(scores) // ETA, 1)
    return value >= scores[k - 1]


def test_successive_halving_ranks_by_fine_tuned_accuracy(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(EXP))
    run = tmp_path / "run"
    out = run_cli("search", str(path), "--run-dir", str(run), "--json", "--no-report")
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name="fid", storage=f"sqlite:///{run / 'study.db'}")
    trials = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 8
    rung0: list[float] = []
    rung1: list[float] = []
    reached = []
    for t in sorted(trials, key=lambda t: t.number):
        m = json.loads(t.user_attrs["outcome"])["metrics"] if isinstance(t.user_attrs["outcome"], str) else t.user_attrs["outcome"]["metrics"]
        iv = t.intermediate_values
        assert iv[1] == m["accuracy_bn"]  # rung 0 is the BN-recalibrated score
        up = _promoted(m["accuracy_bn"], rung0)
        rung0.append(m["accuracy_bn"])
        assert (ETA in iv) == up, (t.number, iv, rung0)
        if not up:
            assert m["fidelity_steps"] == 0 and m["accuracy"] == m["accuracy_bn"]
        else:
            up2 = _promoted(iv[ETA], rung1)
            rung1.append(iv[ETA])
            assert m["fidelity_steps"] == (STEPS[1] if up2 else STEPS[0])
            assert m["accuracy"] == iv[ETA ** (2 if up2 else 1)]
        assert t.value == m["accuracy"]  # the reward ranks by the last rung's score
        reached.append(m["fidelity_steps"])
    assert reached.count(0) and reached.count(STEPS[1]), reached  # both ends are exercised
    assert reached.count(0) > reached.count(STEPS[1])
    # fine-tuning the promoted pruned models raised their scores
    assert sum(1 for t in trials if t.intermediate_values.get(ETA, -1) > t.intermediate_values[1]) >= 1
    before = trials_of(run)
    again = run_cli("search", str(path), "--run-dir", str(run), "--json", "--no-report")
    assert again.returncode == 0 and json.loads(again.stdout)["evaluated_now"] == 0 and trials_of(run) == before


@pytest.mark.one_pass
def test_a_rung_larger_than_the_training_split_is_one_line_before_the_search(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**EXP, "fidelity": {"steps": [10, 5000]}}))
    assert_user_error(run_cli("search", str(path), "--run-dir", str(tmp_path / "run")), "fidelity.steps", "usable images")
    assert not (tmp_path / "run" / "study.db").exists()
    path.write_text(yaml.safe_dump({**EXP, "fidelity": {"steps": [30, 10]}}))
    assert_user_error(run_cli("search", str(path), "--run-dir", str(tmp_path / "run")), "fidelity", "increasing")
