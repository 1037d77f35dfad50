"""Run-level targets: parsing, the analytic cost model, projection, and whole searches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from automc.compress.analysis import analyze
from automc.config import parse_config
from automc.errors import UserError
from automc.models import build_model
from automc.results.report import build_report
from automc.search.candidate import Candidate
from automc.search.cost_model import CostModel
from automc.search.projection import Projector
from automc.search_spaces.channel_pruning import ChannelPruningSpace
from automc.targets import parse_limit
from tests.conftest import assert_user_error, run_cli
from tests.search_support import TINY, write_config


@pytest.mark.parametrize(
    ("metric", "spec", "expected"),
    [
        ("macs", 0.5, ("relative", 0.5)),
        ("macs", "50%", ("relative", 0.5)),
        ("macs", "20.3M", ("absolute", 20.3e6)),
        ("macs", 20275520, ("absolute", 20275520.0)),
        ("size_bytes", "200kB", ("absolute", 200e3)),
        ("size_bytes", "1.5MiB", ("absolute", 1.5 * 1024**2)),
        ("latency_ms", 3.0, ("absolute", 3.0)),
        ("latency_ms", 0.8, ("absolute", 0.8)),  # the unit is in the name: a plain number is ms
        ("latency_ms", "800us", ("absolute", 0.8)),
        ("latency_ms", "80%", ("relative", 0.8)),
        ("energy_mj", "2J", ("absolute", 2000.0)),
    ],
)
def test_target_specs_read_as_users_write_them(metric: str, spec: object, expected: tuple[str, float]) -> None:
    mode, value = parse_limit(metric, spec)
    assert mode == expected[0] and value == pytest.approx(expected[1])


@pytest.mark.parametrize(("metric", "spec", "needle"), [("macs", "fast", "not a number"), ("macs", -1, "positive"), ("macs", "3ms", "unknown unit"), ("size_bytes", "150%", "at most 100%"), ("macs", True, "must be a number")])
def test_bad_target_specs_name_the_field(metric: str, spec: object, needle: str) -> None:
    with pytest.raises(UserError, match=needle) as info:
        parse_config({**TINY, "target": {metric: spec}})
    assert "target" in str(info.value)


def test_target_config_keeps_projection_apart_from_the_limits() -> None:
    cfg = parse_config({**TINY, "target": {"macs": 0.5, "projection": "feasible"}})
    assert cfg.target is not None and cfg.target.limits == {"macs": 0.5} and cfg.target.projection == "feasible"
    again = parse_config(cfg.model_dump(mode="json"))  # the stored form reads back the same
    assert again.target == cfg.target
    limits = cfg.target.resolve({"macs": 1000.0})
    assert limits == [{"metric": "macs", "max": 500.0, "spec": "0.5", "fraction": 0.5}]


def _space(name: str, mode: str = "all", round_to: int = 1):  # noqa: ANN202 - (model, x, space)
    torch.manual_seed(0)
    model = build_model(name).eval()
    x = torch.zeros(1, 3, 32, 32)
    return model, x, ChannelPruningSpace(model, x, mode=mode, round_to=round_to)


@pytest.mark.parametrize("name", ["resnet20", "squeezenet", "mobilenetv2"])
def test_cost_model_macs_equal_the_built_models(name: str) -> None:
    """Exact, not approximate: residual groups, concatenations (SqueezeNet's fire modules: a
    consumer fed by two groups), depthwise convolutions — a channel miscounted anywhere breaks
    the equality."""
    model, x, space = _space(name)
    cost = CostModel(space, "macs")
    base = analyze(model, x).macs
    rng = np.random.default_rng(0)
    for _ in range(4):
        params = space.sample(rng)
        assert cost(params) * base == pytest.approx(analyze(space.apply(model, params), x).macs, rel=1e-12)


def _projector(space, model, x, limits, mode):  # noqa: ANN001, ANN202
    base = analyze(model, x).summary()

    def exact(params):  # noqa: ANN001, ANN202
        return analyze(space.apply(model, params), x).summary()

    resolved = [{"metric": m, "max": f * base[m], "spec": str(f), "fraction": f} for m, f in limits.items()]
    return Projector(space, resolved, base, mode=mode, analytic=list(base), exact=exact), base


def test_boundary_projection_spends_the_budget_and_never_exceeds_it() -> None:
    model, x, space = _space("resnet20", "inner_only")
    proj, base = _projector(space, model, x, {"macs": 0.5}, "boundary")
    assert proj.verify == set()  # the estimate matched the built models: no second build per candidate
    rng = np.random.default_rng(1)
    for _ in range(8):
        params = space.sample(rng)
        macs = analyze(space.apply(model, proj(params)), x).macs / base["macs"]
        assert 0.49 <= macs <= 0.5, macs  # raised or lowered onto the target, never over it


def test_feasible_projection_only_moves_what_is_over() -> None:
    model, x, space = _space("resnet20", "inner_only")
    proj, base = _projector(space, model, x, {"macs": 0.5}, "feasible")
    low = space.uniform(0.3)
    assert proj(low) == low  # under the target: unchanged
    high = space.uniform(0.95)
    moved = proj(high)
    assert analyze(space.apply(model, moved), x).macs <= 0.5 * base["macs"]
    values = list(moved.values())
    assert max(values) - min(values) < 1e-9  # one path for all dimensions: a uniform policy stays uniform


@pytest.mark.parametrize(("name", "metric"), [("resnet20", "params"), ("ghostnet", "macs")])
def test_projection_holds_an_inexact_estimate_by_measuring(name: str, metric: str) -> None:
    """The parameter estimate leaves out BatchNorm and biases, and GhostNet's ghost modules
    slice their concatenation: projection measures the built model and continues the
    bisection on the measured value. An exact estimate (ResNet-20's MACs) is not re-measured."""
    model, x, space = _space(name)
    proj, base = _projector(space, model, x, {metric: 0.4}, "boundary")
    assert proj.verify == {metric}
    rng = np.random.default_rng(2)
    for _ in range(4):
        value = analyze(space.apply(model, proj(space.sample(rng))), x).summary()[metric]
        assert 0.36 * base[metric] <= value <= 0.4 * base[metric]


def test_unreachable_target_is_refused_before_the_search() -> None:
    model, x, space = _space("resnet20", "inner_only")
    with pytest.raises(UserError, match="below what the space reaches") as info:
        _projector(space, model, x, {"macs": 0.05}, "boundary")
    assert info.value.field == "target.macs"


def test_measured_metric_estimate_follows_the_measurements() -> None:
    """A latency target steers by MACs scaled by a line fitted to what was measured."""
    model, x, space = _space("resnet20", "inner_only")
    base = {**analyze(model, x).summary(), "latency_ms": 10.0}
    proj = Projector(space, [{"metric": "latency_ms", "max": 7.0, "spec": "7", "fraction": 0.7}], base, mode="boundary")
    mac = CostModel(space, "macs")
    first = mac(proj(space.uniform(1.0)))
    assert first == pytest.approx(0.7, abs=0.02)  # before any measurement: latency ∝ MACs
    # measured: a fixed 4 ms overhead plus 6 ms × the MACs ratio
    for r in (0.3, 0.5, 0.8):
        p = space.uniform(r)
        proj.observe(Candidate(0, p, {"latency_ms": 4.0 + 6.0 * mac(p)}, 0.0))
    assert mac(proj(space.uniform(1.0))) == pytest.approx(0.5, abs=0.03)  # 4 + 6 × 0.5 = 7 ms


@pytest.mark.one_pass
@pytest.mark.parametrize("agent", ["random", "optuna-nsga2", "ddpg"])
def test_search_with_a_target_keeps_every_candidate_within_it(tmp_path: Path, agent: str) -> None:
    """Projected onto the boundary (random, NSGA-II) or clamped (DDPG)."""
    run_dir = tmp_path / "run"
    cfg = {**TINY, "agent": {"name": agent}, "target": {"macs": 0.5}, "budget": {"candidates": 5}}
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    report = build_report(run_dir)
    assert report["run"]["validation"]["images"] == 120  # which images every accuracy comes from
    page = (run_dir / "report" / "report.html").read_text()
    assert "120 images of the &#x27;test&#x27; split" in page and "so accuracy on them is optimistic" in page  # digits validates on its test split
    limit = report["target"][0]["max"]
    assert report["target"][0]["fraction"] == 0.5 and {"metric": "macs", "min": None, "max": limit} in report["constraints"]
    macs = [c["metrics"]["macs"] for c in report["candidates"] if c["state"] == "complete"]
    assert len(macs) == 5 and all(m <= limit for m in macs)
    assert all(c["feasible"] for c in report["candidates"] if c["state"] == "complete")
    if agent != "ddpg":
        assert min(macs) >= 0.4 * report["run"]["base_metrics"]["base_macs"]  # raised onto the target, not left far under


def test_a_run_keeps_the_projection_it_started_with() -> None:
    """``auto`` is ``boundary`` for every agent; a resumed run keeps the mode it recorded, and
    one recorded before the mode was (when ``auto`` meant ``feasible`` for multi-objective
    agents) keeps ``feasible``; an agent clamping itself keeps what its clamp set."""
    from automc.search.projection import settle_mode

    model, x, space = _space("resnet20")

    def fresh(mode: str = "boundary", *, clamps: bool = False) -> Projector:
        proj = _projector(space, model, x, {"macs": 0.5}, mode)[0]
        proj.jitters = not clamps
        return proj

    assert settle_mode(fresh(), None, resumed=False, auto=True, multi_objective=True) == "boundary"
    assert settle_mode(fresh(), None, resumed=True, auto=True, multi_objective=True) == "feasible"
    assert settle_mode(fresh(), None, resumed=True, auto=True, multi_objective=False) == "boundary"
    assert settle_mode(fresh(), "boundary", resumed=True, auto=True, multi_objective=True) == "boundary"
    assert settle_mode(fresh(), "feasible", resumed=True, auto=True, multi_objective=False) == "feasible"
    assert settle_mode(fresh("boundary"), None, resumed=True, auto=False, multi_objective=True) == "boundary"  # written out
    assert settle_mode(fresh("off", clamps=True), "feasible", resumed=True, auto=True, multi_objective=True) == "off"


@pytest.mark.one_pass
def test_target_mistakes_are_one_line_before_any_work(tmp_path: Path) -> None:
    run = ("--run-dir", str(tmp_path / "run"))
    unmeasured = {**TINY, "target": {"latency_ms": 3}}
    assert_user_error(run_cli("search", str(write_config(tmp_path, unmeasured)), *run), "target metric 'latency_ms' is measured by no profile", "macs")
    not_a_cost = {**TINY, "target": {"accuracy": 0.5}}
    assert_user_error(run_cli("search", str(write_config(tmp_path, not_a_cost)), *run), "not a cost")
    unreachable = {**TINY, "target": {"macs": 0.01}}
    assert_user_error(run_cli("search", str(write_config(tmp_path, unreachable)), *run), "target macs 0.01", "lbound")
    both = {**TINY, "target": {"macs": 0.5}, "agent": {"name": "ddpg", "config": {"budget": 0.5}}}
    assert_user_error(run_cli("search", str(write_config(tmp_path, both)), *run), "agent.config.budget", "keep one")
    assert not (tmp_path / "run" / "base_model.pt").exists()  # checked on the untrained model: nothing trained


@pytest.mark.one_pass
def test_progress_lines_mark_infeasible_candidates(tmp_path: Path) -> None:
    """Off a terminal: one line per candidate with its objectives, infeasible ones marked
    (here every one: no pruned small CNN keeps 99.9% accuracy)."""
    cfg = {**TINY, "target": {"macs": 0.6}, "constraints": [{"metric": "accuracy", "min": 0.999}], "budget": {"candidates": 3}}
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(tmp_path / "run"), "--no-report", "--verbose")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert len(lines) == 3 and all("accuracy" in ln and "macs" in ln and ln.endswith("(infeasible)") for ln in lines), lines


@pytest.fixture(scope="module")
def tiny_lut(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A lookup table for TINY's model and space (shapes only: the trained weights don't
    matter), built from a clock that reads MACs, not time: a table timed on a loaded machine
    can put the cheapest policy above the full model, and the test would be about the load."""
    from automc.device_profiles.lut import build_lut
    from automc.measure.profiles import DeviceProfile, Measurement

    class MacsClock(DeviceProfile):
        name, metrics = "macs-clock", ("latency_ms",)

        def measure(self, model: torch.nn.Module, example_input: torch.Tensor) -> Measurement:
            return Measurement({"latency_ms": 0.01 + 1e-6 * analyze(model, example_input).macs}, {"latency_ms": 0.0}, 1, {})

    model, x = build_model("small_cnn", kwargs={"width": 4}).eval(), torch.zeros(1, 1, 8, 8)
    table = build_lut(model, ChannelPruningSpace(model, x), MacsClock(), x, step=8, n_fit=2)
    path = tmp_path_factory.mktemp("lut") / "tiny_lut.json"
    path.write_text(json.dumps(table))
    return str(path)


@pytest.mark.one_pass
@pytest.mark.parametrize(
    ("profile", "metric", "agent"),
    [("accelerator", "energy_mj", "random"), ("accelerator", "energy_mj", "ddpg"), ("lut", "latency_ms", "optuna-nsga2")],
)
def test_targets_on_analytic_device_models_always_hold(tmp_path: Path, tiny_lut: str, profile: str, metric: str, agent: str) -> None:
    """A lookup table's latency and the accelerator model's energy are computed, not timed:
    like MACs, a target on them holds for every candidate (each projection is built and
    measured; steered by the MACs-based estimate alone, 4 of 8 random candidates were over a
    60% energy target, by up to 28%). Unreachable ones are refused before any work."""
    config = {"table": tiny_lut, "interpolation": "linear"} if profile == "lut" else {}  # linear: no staircase for the raise-onto-the-target check
    cfg = {**TINY, "profiles": [{"name": "flops"}, {"name": profile, "config": config}], "agent": {"name": agent}, "target": {metric: "90%"}, "budget": {"candidates": 6}}
    run_dir = tmp_path / "run"
    proc = run_cli("search", str(write_config(tmp_path, cfg)), "--run-dir", str(run_dir), "--no-report")
    assert proc.returncode == 0, proc.stderr
    report = build_report(run_dir)
    limit = report["target"][0]["max"]
    values = [c["metrics"][metric] for c in report["candidates"] if c["state"] == "complete"]
    assert len(values) == 6 and all(v <= limit for v in values), (values, limit)
    if agent != "ddpg":
        assert min(values) >= 0.8 * limit  # raised onto the target, not left far under it
    unreachable = {**cfg, "target": {metric: "1%"}}
    assert_user_error(run_cli("search", str(write_config(tmp_path, unreachable)), "--run-dir", str(tmp_path / "r2")), f"target {metric} 1%", "below what the space reaches")


def test_largest_near_settles_on_the_bisections_answer_in_a_few_builds() -> None:
    """What projection uses when every check builds a model: bracket the answer by doubling
    steps from the estimate's guess, then bisect — the same ``s`` as a bisection over the whole
    path (within its tolerance), in a handful of checks when the guess is close."""
    from automc.search import policy_path

    model, x, space = _space("resnet20", "inner_only")
    cost, dims = CostModel(space, "macs"), space.dimensions
    params = space.sample(np.random.default_rng(3))
    checks: list[float] = []

    def ok(p: dict) -> bool:
        checks.append(cost(p))
        return cost(p) <= 0.5

    best = policy_path.largest(dims, params, -1.0, 1.0, ok, 40)
    for guess, hi in ((best - 0.001, 1.0), (best + 0.3, 1.0), (best - 0.4, 1.0), (-0.95, 1.0), (best + 0.1, best - 0.05)):
        checks.clear()
        s = policy_path.largest_near(dims, params, guess, hi, ok)
        answer = min(best, hi)
        assert answer - 2**-7 <= s <= answer and cost(policy_path.at(dims, params, s)) <= 0.5, (guess, hi, s, best)
        if abs(guess - best) < 0.01:
            assert len(checks) <= 4, len(checks)
