"""Gunicorn config and server: values from Settings, JSON access log, no control socket, metrics
hooks and graceful SIGTERM, against a real gunicorn on a free loopback port."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import gunicorn.config
import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.engine import LinearModel
from service.server import JsonAccessLogger, gunicorn_options
from service.store import LocalStore

from helpers import GunicornServer, child_env, wait_until

pytestmark = pytest.mark.slow  # every test here runs sgdserve or gunicorn in a process

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cr3t-token-never-logged"

ROW = {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}

# A tiny WSGI app where the real one cannot do what a test needs: every worker records its model
# version at import (child_exit test), and a slow endpoint announces when it started (SIGTERM).
STANDIN = textwrap.dedent(
    """
    import os, time
    from service.http.metrics import Metrics

    metrics = Metrics(None)
    metrics.model_loaded("standin-1")

    def app(environ, start_response):
        path = environ["PATH_INFO"]
        headers = [("Content-Type", "text/plain"), ("X-Worker-Pid", str(os.getpid()))]
        if path == "/metrics":
            body, content_type = metrics.render()
            start_response("200 OK", [("Content-Type", content_type)])
            return [body]
        if path == "/slow":
            with open(os.environ["STANDIN_MARK"], "w") as mark:
                mark.write("started")
            time.sleep(1.5)
            start_response("200 OK", headers)
            return [b"finished"]
        metrics.observe_request("/hit", environ["REQUEST_METHOD"], 200, 0.001)
        start_response("200 OK", headers + [("X-Model-Version", "standin-1")])
        return [b"ok"]
    """
)


# --- configuration ---------------------------------------------------------------------------

CONF_DUMP = textwrap.dedent(
    """
    import json
    from service import gunicorn_conf as c
    names = ["bind", "workers", "worker_class", "threads", "timeout", "graceful_timeout",
             "loglevel", "control_socket_disable", "preload_app", "accesslog", "errorlog"]
    print(json.dumps({n: getattr(c, n) for n in names}))
    """
)


def load_conf(env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CONF_DUMP], cwd=ROOT, env=child_env(env),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_conf_defaults_come_from_settings() -> None:
    conf = load_conf({})
    defaults = Settings()
    assert conf["bind"] == [f"{defaults.host}:{defaults.port}"]
    assert conf["workers"] == defaults.workers
    assert conf["worker_class"] == defaults.worker_class
    assert conf["timeout"] == conf["graceful_timeout"] == defaults.timeout
    assert conf["control_socket_disable"] is True
    assert conf["preload_app"] is False
    assert (conf["accesslog"], conf["errorlog"]) == ("-", "-")


def test_conf_follows_environment_variables() -> None:
    conf = load_conf({
        "SGDSERVE_HOST": "0.0.0.0",
        "SGDSERVE_PORT": "9123",
        "SGDSERVE_WORKERS": "3",
        "SGDSERVE_WORKER_CLASS": "gthread",
        "SGDSERVE_THREADS": "4",
        "SGDSERVE_TIMEOUT": "45",
        "SGDSERVE_LOG_LEVEL": "warning",
    })
    assert conf["bind"] == ["0.0.0.0:9123"]
    assert (conf["workers"], conf["worker_class"], conf["threads"]) == (3, "gthread", 4)
    assert (conf["timeout"], conf["graceful_timeout"]) == (45, 45)
    assert conf["loglevel"] == "warning"


def test_ipv6_host_is_bracketed_and_zero_timeout_keeps_a_grace_period() -> None:
    conf = load_conf({"SGDSERVE_HOST": "::1", "SGDSERVE_PORT": "8001", "SGDSERVE_TIMEOUT": "0"})
    assert conf["bind"] == ["[::1]:8001"]
    assert conf["graceful_timeout"] == 30


def test_serve_options_take_cli_overrides_over_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SGDSERVE_PORT", "9000")
    settings = Settings.from_env(port=9555, workers=5, host="127.0.0.2")
    options = gunicorn_options(settings)
    assert options["bind"] == ["127.0.0.2:9555"]
    assert options["workers"] == 5


def test_every_setting_in_the_conf_file_is_a_gunicorn_setting() -> None:
    # gunicorn silently ignores unknown names: a typo would drop a setting without a word.
    options = gunicorn_options(Settings())
    ours = {
        name for name, value in options.items()
        if not name.startswith("_") and name not in ("settings", "annotations", "os", "shutil",
                                                      "Settings", "sgdserve_settings")
    }
    assert ours - set(gunicorn.config.Config().settings) == set()
    assert {"bind", "control_socket_disable", "child_exit", "on_starting"} <= ours


class _Resp:
    status = "404 NOT FOUND"
    sent = 10
    headers = [("Content-Type", "application/json"), ("X-Model-Version", 'v"7'),
               ("X-Request-Id", "req-1"), ("X-Prediction-Id", "p.1")]


class _FixedClockLogger(JsonAccessLogger):
    def now(self) -> str:
        return "2026-01-01T00:00:00.000+00:00"


def render_access_line(access_log_format: str, lean: bool) -> str:
    cfg = gunicorn.config.Config()
    cfg.set("access_log_format", access_log_format)
    logger = _FixedClockLogger(cfg)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": '/a"b\\c', "REMOTE_ADDR": "10.0.0.1",
               "RAW_URI": "/x", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "curl"}
    args = (_Resp, [("USER-AGENT", "curl")], environ, timedelta(microseconds=1234))
    atoms = logger.atoms(*args) if lean else super(JsonAccessLogger, logger).atoms(*args)
    return access_log_format % logger.atoms_wrapper_class(atoms)


def test_lean_access_atoms_render_the_same_line_as_gunicorns() -> None:
    conf_format = gunicorn_options(Settings())["access_log_format"]
    line = render_access_line(conf_format, lean=True)
    assert line == render_access_line(conf_format, lean=False)
    assert json.loads(line) == {
        "time": "2026-01-01T00:00:00.000+00:00", "method": "GET", "path": '/a"b\\c',
        "status": 404, "duration_s": 0.001234, "model_version": 'v"7',
        "request_id": "req-1", "prediction_id": "p.1", "remote_addr": "10.0.0.1",
    }


def test_other_access_log_formats_get_every_atom() -> None:
    line = render_access_line('{"agent": %(a)s, "proto": %(H)s}', lean=True)
    assert json.loads(line) == {"agent": "curl", "proto": "HTTP/1.1"}


# --- a real gunicorn ----------------------------------------------------------------------------


def start_server(
    tmp: Path, *, workers: int = 2, app: str | None = None, **env_extra: str
) -> GunicornServer:
    """serve() in a subprocess on a free port: the real app when ``app`` is None."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "standin_app.py").write_text(STANDIN)
    server = GunicornServer(tmp, workers=workers, app=app, pythonpath=(tmp,), env={
        "HOME": str(tmp / "no-such-home"),  # root could create /nonexistent; this must stay absent
        "STANDIN_MARK": str(tmp / "slow-started"),
        "SGDSERVE_LOG_LEVEL": "debug",
        **env_extra,
    })
    server.home = tmp / "no-such-home"
    server.version = None
    return server.__enter__()  # ready, or stopped and failed with its log


def make_store(root: Path) -> str:
    """A store with one active hand-made model; returns its version id."""
    coef = np.array([150.0, 10_000.0, 5_000.0, -500.0])
    x_scale = np.array([500.0, 1.0, 0.8, 10.0])
    model = LinearModel.numeric(
        feature_names=tuple(ROW), target="price", coef=coef, intercept=50_000.0,
        x_mean=np.array([1500.0, 3.0, 2.0, 20.0]), x_scale=x_scale, y_mean=300_000.0,
        y_scale=80_000.0, coef_std=coef * x_scale / 80_000.0, intercept_std=0.0,
    )
    store = LocalStore(root)
    version = store.save(model, {}, parent=None)
    store.activate(version)
    return version


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """The real app, 2 workers, a model in the store and an API token configured."""
    tmp = tmp_path_factory.mktemp("server")
    version = make_store(tmp / "models")
    running = start_server(tmp, SGDSERVE_MODEL_DIR=str(tmp / "models"), SGDSERVE_API_TOKEN=TOKEN)
    running.version = version
    yield running
    running.stop()


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    running = start_server(tmp_path_factory.mktemp("standin"), app="standin_app:app")
    yield running
    running.stop()


def access_lines(server: GunicornServer, path: str, count: int = 1) -> list[dict]:
    """The access-log lines for ``path``, once at least ``count`` were written (or 5 s passed)."""
    deadline = time.monotonic() + 5
    while True:
        # Every line of stdout must be one JSON object.
        lines = [json.loads(line) for line in server.stdout().splitlines()]
        found = [line for line in lines if line["path"] == path]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_access_log_is_one_json_object_per_request(server: GunicornServer) -> None:
    response = requests.post(server.url + "/predict", json={"features": ROW}, timeout=10)
    assert response.status_code == 200, response.text

    line = access_lines(server, "/predict")[-1]
    assert line["method"] == "POST"
    assert line["status"] == 200
    assert isinstance(line["duration_s"], float) and line["duration_s"] >= 0
    assert line["model_version"] == server.version == response.json()["model_version"]
    assert line["remote_addr"] == "127.0.0.1"
    assert line["time"].endswith("+00:00")


def test_access_log_escapes_quotes_backslashes_and_newlines(server: GunicornServer) -> None:
    response = requests.get(server.url + "/odd%22quote%5Cslash%0Anewline%01", timeout=10)
    (line,) = access_lines(server, '/odd"quote\\slash\nnewline\x01')
    assert line["status"] == response.status_code == 404


def test_model_version_is_null_without_a_model(server: GunicornServer) -> None:
    requests.get(server.url + "/health", timeout=10)
    lines = access_lines(server, "/health")
    assert lines and all(line["model_version"] is None for line in lines)


def test_token_never_reaches_the_logs(server: GunicornServer) -> None:
    # Accepted by the auth check, then refused for its body: the token went all the way in.
    response = requests.post(server.url + "/retrain", headers={"Authorization": "Bearer " + TOKEN},
                             json={"rows": []}, timeout=10)
    assert response.status_code == 400, response.text
    requests.post(server.url + "/retrain", headers={"Authorization": "Bearer wrong-" + TOKEN},
                  timeout=10)
    # Sorted: two workers write their lines in whichever order they finish.
    statuses = sorted(line["status"] for line in access_lines(server, "/retrain", count=2))
    assert statuses[0] == 400 and statuses[1] in (401, 403)
    assert TOKEN not in server.stdout() + server.stderr()


def test_starts_without_a_home_directory_or_control_socket(server: GunicornServer) -> None:
    # HOME points to a missing directory: no control socket was made there, and none failed.
    assert not server.home.exists()
    # gunicorn's debug line, logged by the master once its first workers are forked.
    deadline = time.monotonic() + 15
    while "Control socket disabled" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Control socket disabled" in server.stderr()
    assert "Failed to start control socket" not in server.stderr()


def test_metrics_add_up_across_workers(server: GunicornServer) -> None:
    before = scrape(server)
    for _ in range(40):
        response = requests.post(server.url + "/predict", json={"features": ROW}, timeout=10)
        assert response.status_code == 200
    after = scrape(server)

    def predicted(samples: list) -> float:
        return sum(s.value for s in samples if s.name == "sgdserve_requests_total"
                   and s.labels["endpoint"] == "/predict" and s.labels["status"] == "200")

    def rows(samples: list) -> float:
        return sum(s.value for s in samples if s.name == "sgdserve_rows_predicted_total")

    # Whichever worker answered each request and each scrape, the totals are exact.
    assert predicted(after) - predicted(before) == 40
    assert rows(after) - rows(before) == 40


def test_worker_exit_drops_its_gauges_but_not_its_counts(standin: GunicornServer) -> None:
    for _ in range(10):
        requests.get(standin.url + "/hit", timeout=10)
    total = hits_total(standin)
    deadline = time.monotonic() + 15
    while len(pids := model_info_pids(standin)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the second worker may still be booting
    assert len(pids) == 2  # one series per worker
    victim = sorted(pids)[0]
    os.kill(int(victim), signal.SIGKILL)

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = model_info_pids(standin)
        if victim not in now and len(now) == 2:  # the master replaced it and ran child_exit
            break
        time.sleep(0.1)
    assert victim not in now and len(now) == 2
    assert hits_total(standin) == total
    # Its metric files were folded into the archive and removed (bounded by live workers).
    assert not [p.name for p in metrics_dir(standin).iterdir() if victim in p.name]
    # The kill is reported without guessing at memory.
    line = next(x for x in standin.stderr().splitlines() if f"pid:{victim})" in x)
    assert "was killed (SIGKILL)" in line and "out of memory?" not in line, line


def metrics_dir(server: GunicornServer) -> Path:
    made = [line.rsplit(": ", 1)[1] for line in server.stderr().splitlines()
            if "Prometheus multiprocess directory" in line]
    return Path(made[0])


def test_sighup_reloads_and_the_metrics_dir_is_still_removed_at_exit(tmp_path: Path) -> None:
    running = start_server(tmp_path, workers=1, app="standin_app:app")
    try:
        directory = metrics_dir(running)
        first = requests.get(running.url + "/hit", timeout=10).headers["X-Worker-Pid"]
        running.process.send_signal(signal.SIGHUP)  # re-reads gunicorn_conf.py into a new module

        def replaced() -> bool:
            try:
                return requests.get(running.url + "/hit", timeout=5).headers[
                    "X-Worker-Pid"] != first
            except requests.RequestException:
                return False

        wait_until(replaced, 30, "a new worker after SIGHUP")
        running.process.send_signal(signal.SIGTERM)
        assert running.process.wait(timeout=30) == 0
    finally:
        running.stop()
    assert not directory.exists(), "the metrics directory leaked after SIGHUP"


def scrape(server: GunicornServer) -> list:
    body = requests.get(server.url + "/metrics", timeout=10).text
    return [s for family in text_string_to_metric_families(body) for s in family.samples]


def hits_total(server: GunicornServer) -> float:
    return sum(s.value for s in scrape(server)
               if s.name == "sgdserve_requests_total" and s.labels["endpoint"] == "/hit")


def model_info_pids(server: GunicornServer) -> set[str]:
    return {s.labels["pid"] for s in scrape(server)
            if s.name == "sgdserve_model_version_info" and s.value == 1}


def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path) -> None:
    running = start_server(tmp_path, workers=1, app="standin_app:app")
    try:
        result: dict[str, requests.Response] = {}
        client = threading.Thread(
            target=lambda: result.update(r=requests.get(running.url + "/slow", timeout=30))
        )
        client.start()
        mark = tmp_path / "slow-started"
        deadline = time.monotonic() + 10
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert mark.exists(), "the slow request never started"

        running.process.send_signal(signal.SIGTERM)
        client.join(timeout=30)

        assert result["r"].status_code == 200
        assert result["r"].text == "finished"
        assert running.process.wait(timeout=30) == 0
    finally:
        running.stop()
    # The temporary metrics directory made at startup is gone with the server.
    made = [line.rsplit(": ", 1)[1] for line in running.stderr().splitlines()
            if "Prometheus multiprocess directory" in line]
    assert made and not Path(made[0]).exists()


def test_the_master_tunes_malloc_before_forking(server: GunicornServer) -> None:
    assert ("glibc malloc: mmap threshold 4096 KiB, trim threshold 32768 KiB "
            "(SGDSERVE_MALLOC_MMAP_THRESHOLD)") in server.stderr()


_FAULTS = """
import resource, sys
from service.server import tune_malloc
print(tune_malloc(int(sys.argv[1])))
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def request():  # a few request-sized buffers alive at once, then all freed
    buffers = [bytes(640_000) for _ in range(5)]
    del buffers
for _ in range(3):
    request()
before = faults()
for _ in range(50):
    request()
print((faults() - before) / 50)
"""


def _faults_per_request(threshold: int, **env: str) -> tuple[str, float]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", _FAULTS, str(threshold)], capture_output=True,
                         text=True, check=True, env=dict(environ, **env), cwd=ROOT).stdout
    described, faults = out.splitlines()
    return described, float(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_tuned_malloc_reuses_request_buffers_instead_of_faulting_in_fresh_pages() -> None:
    described, tuned = _faults_per_request(4 * 1024 * 1024)
    assert described.startswith("glibc malloc: mmap threshold 4096 KiB")
    untouched, default = _faults_per_request(0)
    assert untouched == "None"
    assert default > 50  # 3.2 MB freed at the top of the heap is given back every time...
    assert tuned < 5  # ...and kept for the next request once tuned


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_glibcs_own_malloc_variables_win() -> None:
    described, _ = _faults_per_request(4 * 1024 * 1024, MALLOC_TRIM_THRESHOLD_="131072")
    assert described == "None"
    described, _ = _faults_per_request(
        4 * 1024 * 1024, GLIBC_TUNABLES="glibc.malloc.mmap_threshold=65536")
    assert described == "None"


def test_malloc_threshold_setting_is_checked() -> None:
    assert Settings.from_env({}).malloc_mmap_threshold == 4 * 1024 * 1024
    assert Settings.from_env({"SGDSERVE_MALLOC_MMAP_THRESHOLD": "0"}).malloc_mmap_threshold == 0
    with pytest.raises(ValueError, match="SGDSERVE_MALLOC_MMAP_THRESHOLD is out of range"):
        Settings.from_env({"SGDSERVE_MALLOC_MMAP_THRESHOLD": str(64 * 1024 * 1024)})
