"""``automc serve``: the API's checks in process (ASGI test client), and the job queue against
a real uvicorn server — submissions, live events, stop / resume / budget, export, and a
``kill -9`` of the server during two searches."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from automc.config import parse_config
from automc.errors import UserError
from tests.conftest import REPO
from tests.search_support import TINY, trials_of

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SLOW_PROFILE = """
import time
from pathlib import Path
from automc.measure.profiles import DeviceProfile, Measurement


class Slow(DeviceProfile):
    '''Takes a while per candidate; past the fourth measurement (the uncompressed model is
    measured by the dry run and the search, then two candidates) it waits while ROOT/hold exists,
    so a test catches every search mid-way however slow the machine is.'''

    name = "slow"
    metrics = ("wait_ms",)
    measured = 0

    def measure(self, model, example_input):
        Slow.measured += 1  # the uncompressed model first, then one per candidate
        time.sleep(0.1)
        while Slow.measured > 4 and Path("..", "hold").exists():  # run folders sit in the root
            time.sleep(0.05)
        return Measurement({"wait_ms": 100.0}, {}, 1, {"analytic": True})
"""

VICTIM = {**TINY, "profiles": [{"name": "flops"}, {"name": "slowprof:Slow"}], "budget": {"candidates": 8}}

MARKER_MODULE = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("imported")

def reward(metrics, base):
    return 0.0
"""


@pytest.fixture()
def client(tmp_path: Path) -> TestClient:
    from automc.service.app import Settings, create_app

    settings = Settings(root=tmp_path / "root", token=TOKEN, allow_modules=("okrewards",), max_body_bytes=4096)
    return TestClient(create_app(settings, start=False))


def test_every_endpoint_but_health_wants_the_token(client: TestClient) -> None:
    assert client.get("/api/health").json()["ok"] is True
    for method, url in (("get", "/api/experiments"), ("post", "/api/experiments"), ("get", "/api/plugins"), ("get", "/api/experiments/x/events"), ("post", "/api/experiments/x/stop"), ("delete", "/api/experiments/x")):
        assert getattr(client, method)(url).status_code == 401, url
        assert getattr(client, method)(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
    listed = client.get("/api/experiments", headers=AUTH)
    assert listed.status_code == 200 and listed.json() == []
    plugins = client.get("/api/plugins", headers=AUTH).json()
    assert "random" in plugins["agent"] and "resnet20" in plugins["model"] and "onnxruntime-cpu" in plugins["device profile"]


def test_the_polled_list_is_served_from_one_serialisation_and_revalidates_with_its_etag(client: TestClient, tmp_path: Path) -> None:
    from automc.service.views import json_bytes

    first = client.get("/api/experiments", headers=AUTH)
    etag = first.headers["etag"]
    again = client.get("/api/experiments", headers={**AUTH, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    run = tmp_path / "root" / "cli-run"  # a folder a command-line search made
    run.mkdir()
    (run / "config.yaml").write_text("name: cli-run\n")
    client.app.state.views.refresh()
    changed = client.get("/api/experiments", headers={**AUTH, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert [e["id"] for e in changed.json()] == ["cli-run"]
    detail = client.get("/api/experiments/cli-run", headers=AUTH).json()
    assert detail["id"] == "cli-run" and detail["config"] is None
    assert json.loads(json_bytes({"reward": -math.inf, "xs": [math.nan, 1.5]})) == {"reward": None, "xs": [None, 1.5]}


def test_user_code_not_on_the_allow_list_is_refused_before_it_is_imported(client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "evilrewards.py").write_text(MARKER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for where in ({"reward": {"name": "evilrewards:reward"}}, {"model": {"name": "evilrewards:reward"}}, {"agent": {"name": "evilrewards.sub:Agent"}}):
        r = client.post("/api/experiments", json={**TINY, **where}, headers=AUTH)
        assert r.status_code == 403, r.text
        detail = r.json()["detail"]
        assert "evilrewards" in detail and "--allow-module" in detail and "\n" not in detail
    assert not (tmp_path / "imported.marker").exists() and "evilrewards" not in sys.modules
    # an allow-listed module passes this check (and fails later, here: it does not exist)
    r = client.post("/api/experiments", json={**TINY, "name": "ok", "reward": {"name": "okrewards.sub:reward"}}, headers=AUTH)
    assert r.status_code == 422 and "okrewards" in r.json()["detail"]


def test_names_and_paths_stay_in_the_root(client: TestClient, tmp_path: Path) -> None:
    for name in ("../escape", "a/b", ".hidden", ""):
        r = client.post("/api/experiments", json={**TINY, "name": name}, headers=AUTH)
        assert r.status_code == 422 and "name" in r.json()["detail"], (name, r.text)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.pt").write_bytes(b"x")
    root = tmp_path / "root"
    (root / "link").symlink_to(outside)  # a symlink inside the root that leads out of it
    for path in ("../../outside/w.pt", "/etc/passwd", "../link/w.pt", "~/w.pt"):
        r = client.post("/api/experiments", json={**TINY, "model": {**TINY["model"], "weights": path}}, headers=AUTH)
        assert r.status_code == 422 and "outside the folders this server reads" in r.json()["detail"], (path, r.text)
    r = client.post("/api/experiments", json={**TINY, "storage": "sqlite:////tmp/elsewhere.db"}, headers=AUTH)
    assert r.status_code == 422 and "outside" in r.json()["detail"]
    assert client.get("/api/experiments/..%2Fescape", headers=AUTH).status_code in (404, 422)


def test_bad_fields_get_the_clis_one_line_message_and_big_bodies_413(client: TestClient) -> None:
    bad = {**TINY, "budget": {"candidates": 0}}
    with pytest.raises(UserError) as cli:
        parse_config(bad, "experiment")
    r = client.post("/api/experiments", json=bad, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"] == cli.value.message
    r = client.post("/api/experiments", content=b"name: [unclosed", headers={**AUTH, "content-type": "application/yaml"})
    assert r.status_code == 422 and "not valid YAML" in r.json()["detail"]
    r = client.post("/api/experiments", content=b"x" * 5000, headers={**AUTH, "content-type": "application/yaml"})
    assert r.status_code == 413

    def chunks():  # no content-length: counted as it arrives
        for _ in range(10):
            yield b"# " + b"x" * 1000 + b"\n"

    r = client.post("/api/experiments", content=chunks(), headers={**AUTH, "content-type": "application/yaml"})
    assert r.status_code == 413


def test_weights_uploads_are_checked_in_a_child_never_unpickled_and_written_once(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from automc.models import build_model
    from automc.service.app import Settings, create_app

    settings = Settings(root=tmp_path / "root", token=TOKEN, max_upload_bytes=1 << 20)
    client = TestClient(create_app(settings, start=False))
    state = build_model("small_cnn", num_classes=10, in_channels=1, kwargs={"width": 4}).state_dict()
    torch.save(state, tmp_path / "net.pt")
    save_file(state, str(tmp_path / "net.safetensors"))
    up = client.put("/api/weights/net.pt", content=(tmp_path / "net.pt").read_bytes(), headers=AUTH)
    assert up.status_code == 201, up.text
    assert up.json()["path"] == "../_weights/net.pt" and up.json()["tensors"] == len(state) and up.json()["created"]
    again = client.put("/api/weights/net.pt", content=(tmp_path / "net.pt").read_bytes(), headers=AUTH)
    assert again.status_code == 200 and not again.json()["created"]
    torch.save({k: v + 1 for k, v in state.items()}, tmp_path / "other.pt")
    assert client.put("/api/weights/net.pt", content=(tmp_path / "other.pt").read_bytes(), headers=AUTH).status_code == 409
    assert client.put("/api/weights/net.safetensors", content=(tmp_path / "net.safetensors").read_bytes(), headers=AUTH).status_code == 201

    class Hostile:  # a pickle that would run code if it were ever unpickled
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.write_text, (tmp_path / "pwned", "ran"))

    torch.save({"w": torch.zeros(1), "x": Hostile()}, tmp_path / "hostile.pt")
    r = client.put("/api/weights/hostile.pt", content=(tmp_path / "hostile.pt").read_bytes(), headers=AUTH)
    assert r.status_code == 422 and "never unpickles" in r.json()["detail"] and "\n" not in r.json()["detail"]
    assert not (tmp_path / "pwned").exists()
    for name in ("evil.exe", ".hidden.pt", "..pt"):
        assert client.put(f"/api/weights/{name}", content=b"x", headers=AUTH).status_code == 422, name
    assert client.put("/api/weights/big.pt", content=b"x" * (2 << 20), headers=AUTH).status_code == 413
    assert client.put("/api/weights/net.pt", content=b"x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert sorted(p.name for p in (settings.root / "_weights").iterdir()) == ["net.pt", "net.safetensors"]  # nothing staged left
    assert [w["name"] for w in client.get("/api/weights", headers=AUTH).json()] == ["net.pt", "net.safetensors"]
    # a submission names the upload by the path it was given (and the dry run loads it)
    r = client.post("/api/experiments", json={**TINY, "model": {"name": "small_cnn", "kwargs": {"width": 4}, "weights": up.json()["path"]}}, headers=AUTH)
    assert r.status_code == 201, r.text


# -- a real server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(root: Path, port: int, plugin_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-m", "automc", "serve", "--root", str(root), "--port", str(port), "--token", TOKEN, "--max-concurrent", "2", "--allow-module", "slowprof"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(root.parent / f"server-{port}.log", "ab"))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start: " + (root.parent / f"server-{port}.log").read_text()[-2000:])


def _held_server(tmp_path: Path) -> tuple[Path, int, subprocess.Popen[bytes]]:
    """A server whose searches may use the slow profile, with ROOT/hold in place."""
    root, port = tmp_path / "root", _free_port()
    return root, port, _serve(root, port, _held_root(tmp_path, root))


def _held_root(tmp_path: Path, root: Path) -> Path:
    """``root`` made with ROOT/hold in place, and the folder of the slow-profile plugin."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "slowprof.py").write_text(SLOW_PROFILE)
    root.mkdir()
    (root / "hold").touch()
    return tmp_path / "plugins"


def _held_queue(tmp_path: Path, root: Path) -> Any:
    """A one-at-a-time queue over a held ``root`` with ``victim`` submitted: 8 candidates
    under the slow profile."""
    from automc.service.jobs import JobQueue

    plugins = _held_root(tmp_path, root)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO)])}
    queue = JobQueue(root, max_concurrent=1, env=env, poll_s=0.2)
    queue.submit("victim", {**VICTIM, "name": "victim"})
    return queue


def _wait(api: httpx.Client, job_id: str, until: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        e = api.get(f"/api/experiments/{job_id}").json()
        if until(e):
            return e
        time.sleep(0.3)
    raise AssertionError(f"{job_id} never got there: {e}")


def _complete(run: Path) -> dict[int, tuple]:
    try:
        return {t[0]: t for t in trials_of(run) if t[1] == "COMPLETE"}
    except sqlite3.OperationalError:
        return {}


def test_server_killed_during_two_searches_resumes_both_losing_and_repeating_nothing(tmp_path: Path) -> None:
    root, port, server = _held_server(tmp_path)  # every search holds after its second candidate
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=120)
    try:
        for name in ("one", "two"):
            exp = {**TINY, "name": name, "profiles": [{"name": "flops"}, {"name": "slowprof:Slow"}], "budget": {"candidates": 16}}
            r = api.post("/api/experiments", json=exp)
            assert r.status_code == 201, r.text
        for name in ("one", "two"):
            _wait(api, name, lambda e: e["state"] == "running" and e["progress"]["finished"] >= 2)
        before = {name: _complete(root / name) for name in ("one", "two")}
        pids = [json.loads((root / n / "service.json").read_text())["pid"] for n in ("one", "two")]
        server.send_signal(signal.SIGKILL)
        server.wait()
        deadline = time.time() + 10  # the searches die with the server
        while any(Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2] for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{p}").exists() and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2] for p in pids)
        assert all(len(b) == 2 for b in before.values()), before  # both held mid-way

        (root / "hold").unlink()
        server = _serve(root, port, tmp_path / "plugins")
        for name in ("one", "two"):
            final = _wait(api, name, lambda e: e["state"] in ("finished", "failed"))
            assert final["state"] == "finished" and final["progress"]["finished"] == 16, final
            after = _complete(root / name)
            assert all(row in after.values() for row in before[name].values())  # kept, untouched
            from automc.search.store import Store

            evaluated = Store(f"sqlite:///{root / name / 'study.db'}", name).candidates()
            assert len({tuple(sorted(c.params.items())) for c in evaluated}) == len(evaluated) == 16  # nothing evaluated twice
            assert json.loads((root / name / "service.json").read_text())["runs"] == 2
        listed = api.get("/api/experiments").json()
        assert [e["id"] for e in listed] == ["one", "two"] and all(e["source"] == "service" for e in listed)
    finally:
        server.kill()
        server.wait()


def test_dashboard_submits_follows_stops_resumes_and_exports_in_headless_chromium(tmp_path: Path) -> None:
    """The dashboard in a real browser, offline: sign in, submit an experiment from the form,
    watch its front grow from the event stream, stop, resume, export a front member."""
    import shutil

    import yaml

    browser, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (browser and driver_path):
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium and chromium-driver (see .ci/run)")
        pytest.skip("headless Chromium not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    root, port, server = _held_server(tmp_path)  # every search holds after its second candidate
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    wait = WebDriverWait(driver, 180)
    state = "return document.getElementById('status').dataset.state"
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_element(By.ID, "login").is_displayed())
        driver.find_element(By.ID, "token").send_keys("wrong")
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda d: "wrong token" in d.find_element(By.ID, "login-error").text)
        driver.find_element(By.ID, "token").clear()
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda d: d.find_element(By.ID, "app").is_displayed())
        # a bad experiment: the validation message inline
        driver.execute_script("document.getElementById('yaml').value = arguments[0]", yaml.safe_dump({**TINY, "budget": {"candidates": 0}}))
        driver.find_element(By.CSS_SELECTOR, "#submit-form button").click()
        wait.until(lambda d: "budget.candidates" in d.find_element(By.ID, "submit-error").text)
        exp = {**TINY, "name": "browser", "profiles": [{"name": "flops"}, {"name": "slowprof:Slow"}], "objectives": [{"metric": "accuracy", "direction": "maximize"}, {"metric": "macs", "direction": "minimize"}], "budget": {"candidates": 14}}
        driver.execute_script("document.getElementById('yaml').value = arguments[0]", yaml.safe_dump(exp))
        driver.find_element(By.CSS_SELECTOR, "#submit-form button").click()
        points = "return +(document.getElementById('front-plot').dataset.points || 0)"
        wait.until(lambda d: d.execute_script(points) >= 1)
        wait.until(lambda d: d.execute_script(points) == 2)  # it grows live, up to the hold
        driver.find_element(By.ID, "stop").click()
        wait.until(lambda d: d.execute_script(state) == "stopped")
        assert json.loads((root / "browser" / "service.json").read_text())["state"] == "stopped"
        (root / "hold").unlink()
        driver.find_element(By.ID, "resume").click()
        wait.until(lambda d: d.execute_script(state) == "finished")
        assert int(driver.execute_script("return document.getElementById('front-plot').dataset.points")) == 14
        if os.environ.get("AUTOMC_DASHBOARD_SCREENSHOT"):  # the README's picture
            driver.save_screenshot(os.environ["AUTOMC_DASHBOARD_SCREENSHOT"])
        front = httpx.get(f"http://127.0.0.1:{port}/api/experiments/browser/front", headers=AUTH).json()["front"]
        driver.find_element(By.ID, "export-candidate").send_keys(str(front[0]["number"]))
        driver.find_element(By.CSS_SELECTOR, "#export-form button").click()
        wait.until(lambda d: any(a.text.endswith("model.onnx") for a in d.find_elements(By.CSS_SELECTOR, "#downloads a")))
        link = next(a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a") if a.text.endswith("model.onnx"))
        import onnx

        model = onnx.load_from_string(httpx.get(link, headers=AUTH).content)  # a whole ONNX model came down
        assert len(model.graph.node) > 0
        expected = ("status of 401", "status of 422")  # before signing in; the bad submission above
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and not any(x in e["message"] for x in expected)]
        assert errors == [], errors
    except Exception:
        print("browser log:", driver.get_log("browser"))
        raise
    finally:
        driver.quit()
        server.kill()
        server.wait()


def test_client_and_cli_against_a_server_submit_follow_extend_report_export_archive(tmp_path: Path) -> None:
    """The Python client and the CLI's --server path on one experiment, end to end."""
    from automc.client import Client, ServiceError
    from tests.conftest import run_cli

    (tmp_path / "plugins").mkdir()
    root, port = tmp_path / "root", _free_port()
    root.mkdir()
    server = _serve(root, port, tmp_path / "plugins")
    url = f"http://127.0.0.1:{port}"
    exp_file = tmp_path / "exp.yaml"
    exp_file.write_text(json.dumps({**TINY, "name": "cli", "budget": {"candidates": 6}}))  # JSON is YAML
    try:
        with Client(url, TOKEN) as c:
            with pytest.raises(ServiceError) as denied:
                Client(url, "nope").list()
            assert denied.value.status == 401
            job = c.submit({**TINY, "name": "py", "budget": {"candidates": 6}})
            assert job["state"] == "queued"
            kinds = [e["event"] for e in c.events("py")]  # ends when the job does
            assert kinds.count("candidate") == 6 and kinds[-1] in ("state", "progress")
            done = c.wait("py", timeout=120)
            assert done["state"] == "finished" and done["progress"]["finished"] == 6
            ranked = c.candidates("py", sort="-reward")
            assert [r["reward"] for r in ranked] == sorted((r["reward"] for r in ranked), reverse=True) and len(ranked) == 6
            with pytest.raises(ServiceError) as smaller:
                c.raise_budget("py", candidates=6)
            assert smaller.value.status == 422 and "must exceed" in smaller.value.detail
            assert c.raise_budget("py", candidates=9)["state"] == "queued"
            assert c.wait("py", timeout=120)["progress"]["finished"] == 9
            assert b"<html" in c.report_html("py")[:500].lower()
            with pytest.raises(ServiceError) as unconfirmed:
                c._call("DELETE", "/api/experiments/py")  # noqa: SLF001 - archive() always confirms
            assert unconfirmed.value.status == 409 and "confirm=py" in unconfirmed.value.detail
            # the CLI, with the token from the environment
            env = {"AUTOMC_SERVICE_TOKEN": TOKEN}
            sub = run_cli("submit", str(exp_file), "--server", url, "--wait", "--json", env=env)
            assert sub.returncode == 0, sub.stderr
            assert json.loads(sub.stdout)["state"] == "finished"
            status = run_cli("status", "cli", "--server", url, "--json", env=env)
            assert status.returncode == 0 and json.loads(status.stdout)["progress"]["finished"] == 6
            best = c.front("cli")["front"][0]["number"]
            out = tmp_path / "deploy"
            exported = run_cli("export", "cli", "--candidate", str(best), "--int8", "--int8-scheme", "s8s8", "--out", str(out), "--server", url, env=env)
            assert exported.returncode == 0, exported.stderr
            assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
            assert json.loads((out / "compression.json").read_text())["int8"]["scheme"] == "s8s8"  # the scheme travels in the request
            missing = run_cli("status", "nothere", "--server", url, env=env)
            assert missing.returncode == 2 and "404" in missing.stderr and "Traceback" not in missing.stderr
            archived = c.archive("py")["archived"]
            assert archived.startswith("_archive/py-") and (root / archived).is_dir() and not (root / "py").exists()
            assert [e["id"] for e in c.list()] == ["cli"]
    finally:
        server.kill()
        server.wait()


def test_a_killed_search_process_fails_its_job_alone_and_resumes(tmp_path: Path) -> None:
    """An experiment's process killed from outside (as the OOM killer would): its job is
    failed with a one-line reason, the queue goes on, and a resume finishes it from its store."""
    root = tmp_path / "root"
    queue = _held_queue(tmp_path, root)
    queue.submit("next", {**VICTIM, "name": "next"})
    queue.start()
    try:
        deadline = time.time() + 240
        while len(_complete(root / "victim")) < 2 and time.time() < deadline:
            time.sleep(0.2)
        os.kill(queue.get("victim").pid, signal.SIGKILL)
        while queue.get("victim").state == "running" and time.time() < deadline:
            time.sleep(0.1)
        victim = queue.get("victim")
        assert victim.state == "failed" and "SIGKILL" in victim.message and "\n" not in victim.message
        while queue.get("next").state != "running" and time.time() < deadline:
            time.sleep(0.1)
        (root / "hold").unlink()
        queue.resume("victim")
        while {queue.get(n).state for n in ("victim", "next")} != {"finished"} and time.time() < deadline:
            time.sleep(0.2)
        assert queue.get("victim").state == "finished" and len(_complete(root / "victim")) == 8
    finally:
        queue.close()


def _small_disk(where: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` at ``where`` (a disk that fills), or skip where not root."""
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a small tmpfs (a disk to fill) needs root: {proc.stderr.strip()}")


def test_a_full_disk_fails_the_search_alone_keeps_queue_and_api_up_and_resume_finishes(tmp_path: Path) -> None:
    from automc.service.app import Settings, create_app
    from automc.service.records import Job

    disk = tmp_path / "disk"
    _small_disk(disk, "64m")
    try:
        root = disk / "root"
        queue = _held_queue(tmp_path, root)
        queue.start()
        try:
            deadline = time.time() + 240
            while len(_complete(root / "victim")) < 2 and time.time() < deadline:
                time.sleep(0.2)
            before = _complete(root / "victim")
            assert len(before) == 2
            with open(disk / "filler", "wb", buffering=0) as f:  # the disk fills while the search holds (unbuffered: nothing left to flush at close)
                with pytest.raises(OSError):
                    while True:
                        f.write(b"\0" * (1 << 16))
                        f.flush()
            api = TestClient(create_app(Settings(root=root, token=TOKEN), start=False))
            r = api.post("/api/experiments", json={**TINY, "name": "late"}, headers=AUTH)
            assert r.status_code == 507 and "disk is full" in r.json()["detail"] and "\n" not in r.json()["detail"], r.text
            assert not (root / "late").exists()
            assert api.get("/api/experiments", headers=AUTH).status_code == 200
            (root / "hold").unlink()
            while queue.get("victim").state == "running" and time.time() < deadline:
                time.sleep(0.2)
            victim = queue.get("victim")  # its end is known, perhaps not yet on the full disk
            assert victim is not None and victim.state == "failed", victim
            assert "disk" in victim.message and "full" in victim.message and "\n" not in victim.message
            # service.json stayed whole: still "running", or "failed" where the dead search's
            # SQLite write-ahead log, removed as it exited, left room to record its end at once
            on_disk = Job.load(root / "victim")
            assert on_disk.state == "running" or (on_disk.state, on_disk.message) == ("failed", victim.message), on_disk
            assert queue._thread is not None and queue._thread.is_alive()
            (disk / "filler").unlink()
            while Job.load(root / "victim").state != "failed" and time.time() < deadline:
                time.sleep(0.2)  # written once the disk has room
            queue.resume("victim")
            while queue.get("victim").state != "finished" and time.time() < deadline:
                time.sleep(0.2)
            after = _complete(root / "victim")
            assert queue.get("victim").state == "finished" and len(after) == 8
            assert all(after[n] == before[n] for n in before)  # finished before the fault: kept, not redone
        finally:
            queue.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_job_resumed_before_its_failure_reached_the_disk_stays_resumed(tmp_path: Path) -> None:
    from automc.service.jobs import JobQueue
    from automc.service.records import Job

    queue = JobQueue(tmp_path, max_concurrent=0)  # schedules nothing: only the records matter
    queue.submit("x", {**TINY, "name": "x"})
    queue.unsaved["x"] = Job("x", state="failed", seq=1, message="the disk … is full")  # as a full disk leaves it
    assert queue.get("x").state == "failed" and Job.load(tmp_path / "x").state == "queued"
    queue.resume("x")
    queue.tick()  # would write the held failure over the resumption if it were still held
    assert queue.get("x").state == "queued" and Job.load(tmp_path / "x").state == "queued" and not queue.unsaved
