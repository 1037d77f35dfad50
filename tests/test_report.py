"""Pareto reports: the data step (front, hypervolume, reference point) without pixels, the
report/compare/export commands, and the HTML page opened in headless Chromium."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from automc.search.candidate import COMPLETE, FAILED, Candidate
from automc.errors import UserError
from automc.config import Constraint, Objective
from automc.results.pareto import hypervolume, non_dominated, pareto_front, reference_point
from automc.results.report import build_report
from automc.run import RunDir
from automc.search.store import Store
from tests.conftest import assert_user_error, run_cli

OBJECTIVES = [{"metric": "accuracy", "direction": "maximize"}, {"metric": "latency_ms", "direction": "minimize"}]


# --- the data step -------------------------------------------------------------------------------


def test_hypervolume_matches_hand_computed_volumes() -> None:
    # staircase of three points under (4, 4): 3x1 + 2x1 + 1x1
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]), np.array([4.0, 4.0])) == pytest.approx(6.0)
    # dominated and out-of-box points add nothing
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0], [5.0, 0.0]]), np.array([4.0, 4.0])) == pytest.approx(6.0)
    # three objectives: two boxes by inclusion-exclusion, 1*2*3 + 2*1*1 - 1*1*1
    pts = np.array([[0.0, 0.0, 0.0], [-1.0, 1.0, 2.0]])
    assert hypervolume(pts, np.array([1.0, 2.0, 3.0])) == pytest.approx(6.0 + 2.0 * 1.0 * 1.0 - 1.0 * 1.0 * 1.0)
    assert hypervolume(np.empty((0, 2)), np.array([1.0, 1.0])) == 0.0


def test_reference_point_rules_and_overrides() -> None:
    objs = [Objective(metric="accuracy", direction="maximize"), Objective(metric="latency_ms", direction="minimize"), Objective(metric="size_bytes", direction="minimize")]
    cands = [Candidate(0, {}, {"accuracy": 0.8, "latency_ms": 2.0, "size_bytes": 50.0}), Candidate(1, {}, {"accuracy": 0.7, "latency_ms": 1.0, "size_bytes": 70.0})]
    ref = reference_point(objs, cands, constraints=[Constraint(metric="accuracy", min=0.6)], base_metrics={"base_latency_ms": 3.0})
    assert ref.values == {"accuracy": 0.6, "latency_ms": 3.0, "size_bytes": 70.0}
    assert ref.sources == {"accuracy": "constraint", "latency_ms": "uncompressed model", "size_bytes": "worst candidate"}
    assert list(ref.scales(objs)) == [1.0, 3.0, 70.0]
    assert reference_point(objs, cands, overrides={"latency_ms": 9.0}).values["latency_ms"] == 9.0
    assert reference_point(objs[:2], cands).values["accuracy"] == 0.0
    with pytest.raises(UserError, match="not an objective"):
        reference_point(objs, cands, overrides={"macs": 1.0})


def _brute_force_front(cands: list[Candidate], objectives: list[dict], constraints: list[dict]) -> set[int]:
    """Non-dominated feasible candidates, by the definition, pairwise, in plain Python."""

    def feasible(c: Candidate) -> bool:
        if c.state != COMPLETE or any(o["metric"] not in c.metrics for o in objectives):
            return False
        for k in constraints:
            v = c.metrics.get(k["metric"])
            if v is None or (k.get("min") is not None and v < k["min"]) or (k.get("max") is not None and v > k["max"]):
                return False
        return True

    def better_or_equal(a: Candidate, b: Candidate, o: dict) -> bool:
        return a.metrics[o["metric"]] >= b.metrics[o["metric"]] if o["direction"] == "maximize" else a.metrics[o["metric"]] <= b.metrics[o["metric"]]

    def dominates(a: Candidate, b: Candidate) -> bool:
        return all(better_or_equal(a, b, o) for o in objectives) and any(not better_or_equal(b, a, o) for o in objectives)

    ok = [c for c in cands if feasible(c)]
    return {c.number for c in ok if not any(dominates(d, c) for d in ok if d is not c)}


# coarse grids make ties and duplicates common, which is where fronts go wrong
_value = st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.8])
_candidate = st.tuples(
    st.sampled_from([COMPLETE, COMPLETE, COMPLETE, FAILED]),
    _value,
    _value,
    _value,
    st.booleans(),  # drop a metric
)


def _make_run(tmp: Path, rows: list[tuple], constraints: list[dict], objectives: list[dict]) -> Path:
    run_dir = tmp / f"run{len(list(tmp.iterdir()))}"
    run_dir.mkdir()
    cfg = {"name": "prop", "objectives": objectives, "constraints": constraints, "storage": None}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    store = Store(RunDir(run_dir).storage_url(None), "prop")
    for state, acc, lat, size, drop in rows:
        metrics = {"accuracy": acc, "latency_ms": lat, "size_bytes": size}
        if drop:
            metrics.pop("latency_ms")
        number = store.next_number()
        store.begin(number, {}, {})
        store.finish(Candidate(number, {"layer1:ratio": acc, "layer2:ratio": lat}, metrics if state == COMPLETE else {}, acc if state == COMPLETE else None, state, None if state == COMPLETE else "boom"))
    return run_dir


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(_candidate, min_size=0, max_size=14),
    constraint=st.sampled_from([[], [{"metric": "size_bytes", "max": 0.5}], [{"metric": "accuracy", "min": 0.3}]]),
    three=st.booleans(),
)
def test_report_front_is_exactly_the_non_dominated_feasible_candidates(tmp_path_factory: pytest.TempPathFactory, rows: list[tuple], constraint: list[dict], three: bool) -> None:
    objectives = OBJECTIVES + ([{"metric": "size_bytes", "direction": "minimize"}] if three else [])
    run_dir = _make_run(tmp_path_factory.mktemp("prop"), rows, constraint, objectives)
    if any(state == COMPLETE for state, *_ in rows) and all(drop for state, *_, drop in rows if state == COMPLETE):
        with pytest.raises(UserError, match="latency_ms was not measured"):  # a misspelt objective, most likely
            build_report(run_dir)
        return
    report = json.loads(json.dumps(build_report(run_dir)))  # exactly what report.json holds
    cands = [Candidate.from_dict(c) for c in report["candidates"]]
    assert set(report["front"]) == _brute_force_front(cands, objectives, constraint)
    assert {c["number"] for c in report["candidates"] if c["on_front"]} == set(report["front"])
    # history ends at the final figure and never decreases
    hv = [h["hypervolume"] for h in report["hypervolume"]["history"]]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(hv))
    assert report["hypervolume"]["final"] == (hv[-1] if hv else 0.0)


def test_non_dominated_keeps_duplicates_and_drops_dominated() -> None:
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [0.5, 3.0]])
    assert list(non_dominated(pts)) == [True, True, False, True]
    res = pareto_front([Candidate(0, {}, {"a": 1.0, "b": 1.0}), Candidate(1, {}, {"a": 1.0}), Candidate(2, {}, {}, state=FAILED)], [Objective(metric="a", direction="maximize"), Objective(metric="b", direction="minimize")])
    assert res.on_front == [True, False, False] and res.violations[1] == ["b missing"] and res.violations[2] == [FAILED]


# --- commands on a real (small) search -------------------------------------------------------------

TINY = {
    "name": "tiny-report",
    "seed": 0,
    "model": {"name": "small_cnn", "kwargs": {"width": 4}, "train": {"epochs": 3}},
    "data": {"dataset": "digits", "calibration_batches": 2, "validation": 120},
    "space": {"name": "channel_pruning", "config": {"lbound": 0.2}},
    "profiles": [{"name": "flops"}, {"name": "onnxruntime-cpu", "config": {"threads": 1, "sessions": 3}}],
    "reward": {"name": "accuracy"},
    "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "macs", "direction": "minimize"}],
    "constraints": [{"metric": "accuracy", "min": 0.2}],
    "agent": {"name": "random"},
    "budget": {"candidates": 8},
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A finished 8-candidate search (the search itself writes its report)."""
    tmp = tmp_path_factory.mktemp("search")
    cfg = tmp / "exp.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run_dir = tmp / "run"
    proc = run_cli("search", str(cfg), "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert f"report: {run_dir / 'report' / 'report.html'}" in proc.stdout
    return run_dir, json.loads((run_dir / "report" / "report.json").read_text())


@pytest.mark.one_pass
def test_search_writes_a_complete_report(searched: tuple[Path, dict]) -> None:
    run_dir, report = searched
    assert report["schema"] == "automc.report/1"
    assert report["run"]["counts"]["complete"] == 8 and len(report["candidates"]) == 8
    assert report["front"] and report["hypervolume"]["final_normalized"] > 0
    assert [o["reference_source"] for o in report["objectives"]] == ["constraint", "uncompressed model"]
    assert {"base_accuracy", "base_macs"} <= set(report["run"]["base_metrics"])
    assert [d["knob"] for d in report["dimensions"]] == ["ratio"] * len(report["dimensions"])
    folder = run_dir / "report"
    for name in ("report.json", "candidates.csv", "report.html", "pareto.png", "hypervolume.png", "policy.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((folder / "candidates.csv").open()))
    assert [int(r["number"]) for r in rows] == [c["number"] for c in report["candidates"]]
    assert {int(r["number"]) for r in rows if r["on_front"] == "1"} == set(report["front"])
    html = (folder / "report.html").read_text()
    assert "<script src=" not in html and "Plotly.newPlot" in html  # plotly.js is inlined
    assert len(html) > 1_000_000


@pytest.mark.one_pass
def test_report_command_with_other_objectives_and_reference(searched: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, _ = searched
    proc = run_cli("report", str(run_dir), "--out", str(tmp_path / "r"), "--objective", "accuracy:max", "--objective", "latency_ms:min", "--reference", "latency_ms=100", "--no-png", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [o["metric"] for o in report["objectives"]] == ["accuracy", "latency_ms"]
    assert report["objectives"][1]["reference"] == 100.0 and report["objectives"][1]["reference_source"] == "given"
    assert out["front"] == report["front"] and not (tmp_path / "r" / "pareto.png").exists()
    assert_user_error(run_cli("report", str(run_dir), "--objective", "energy_mj:min", "--objective", "accuracy:max"), "energy_mj", "not measured")
    assert_user_error(run_cli("report", str(run_dir), "--objective", "accuracy:up"), "--objective", "METRIC:max")
    assert_user_error(run_cli("report", str(tmp_path)), "not a run directory")


@pytest.mark.one_pass
def test_compare_overlays_runs_with_a_common_reference(searched: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, report = searched
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    proc = run_cli("compare", str(run_dir), str(other), "--out", str(tmp_path / "cmp"), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["schema"] == "automc.comparison/1" and len(data["runs"]) == 2
    assert data["runs"][0]["label"] != data["runs"][1]["label"]  # same experiment name: told apart
    assert [o["reference_source"] for o in data["objectives"]] == ["the worst of the runs' (constraint)", "the worst of the runs' (uncompressed model)"]
    hv = [s["hypervolume_normalized"] for s in data["summary"]]
    assert hv[0] == hv[1] == pytest.approx(report["hypervolume"]["final_normalized"])
    for name in ("compare.html", "pareto.png", "hypervolume.png"):
        assert (tmp_path / "cmp" / name).stat().st_size > 0
    assert_user_error(run_cli("compare", str(run_dir), "--out", str(tmp_path / "x")), "at least two")


def test_export_reproduces_a_front_member(searched: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, report = searched
    number = report["front"][0]
    out = tmp_path / "exported"
    proc = run_cli("export", str(run_dir), "--candidate", str(number), "--int8", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    card = json.loads(proc.stdout)
    stored = next(c for c in report["candidates"] if c["number"] == number)["metrics"]
    assert card["reproduction"]["accuracy_exact"] and card["measured_metrics"]["accuracy"] == stored["accuracy"]
    assert card["measured_metrics"]["macs"] == stored["macs"]
    assert card["measured_metrics"]["latency_ms"] > 0  # within 5%: benchmarks/report_resnet20.py (timing is not unit-tested)
    assert card["reload_max_abs_diff"] == 0.0 and card["run"]["on_front"]
    for name in ("model.onnx", "model.int8.onnx", "model.pt", "compression.json"):
        assert (out / name).stat().st_size > 0
    assert card["int8"]["top1_agreement_with_pytorch"] > 0.9
    failed_or_missing = run_cli("export", str(run_dir), "--candidate", "999", "--out", str(tmp_path / "y"))
    assert_user_error(failed_or_missing, "--candidate 999", "front members")


# --- the page in a real browser -------------------------------------------------------------------


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.one_pass
def test_report_html_renders_offline_in_headless_chromium(searched: tuple[Path, dict]) -> None:
    found = _chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (see .ci/run)")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run_dir, report = searched
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                # offline: every host name fails to resolve and no proxy is reachable
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=opts)
    try:
        driver.get((run_dir / "report" / "report.html").resolve().as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length") >= 3)
        counts = driver.execute_script(
            "return {plots: document.querySelectorAll('.js-plotly-plot').length,"
            " points: document.querySelectorAll('#pareto .scatterlayer .point').length,"
            " bars: document.querySelectorAll('#policy .barlayer .point').length,"
            " hv: document.querySelectorAll('#hypervolume .scatterlayer path.js-line').length,"
            " rows: document.querySelectorAll('#candidates tbody tr').length}"
        )
        assert counts["plots"] == 3
        complete = sum(c["state"] == "complete" for c in report["candidates"])
        assert counts["points"] == complete + 1  # every finished candidate once, plus the uncompressed star
        assert counts["bars"] > 0 and counts["hv"] >= 1 and counts["rows"] == len(report["candidates"])
        # clicking a header sorts the table
        header = driver.find_elements(By.CSS_SELECTOR, "#candidates th")[5]  # accuracy
        header.click()
        header.click()  # descending
        first = driver.execute_script("return document.querySelector('#candidates tbody tr').cells[5].textContent")
        assert float(first) == pytest.approx(max(c["metrics"]["accuracy"] for c in report["candidates"] if c["state"] == "complete"), rel=1e-5)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()
