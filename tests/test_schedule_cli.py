"""`sgdserve schedule` end to end: gated ticks, a live gunicorn follows, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from service.data import write_houses_csv
from service.store import LocalStore

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGDSERVE_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(SGDSERVE_MODEL_DIR=str(tmp / "models"), SGDSERVE_RELOAD_INTERVAL="1",
               SGDSERVE_METRICS_DIR=str(tmp / "metrics"), SGDSERVE_LOG_LEVEL="warning")
    return env


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_schedule_ticks_gate_promote_reach_gunicorn_and_stop_on_sigterm(tmp_path):
    data = write_houses_csv(tmp_path / "houses.csv", 2_000, seed=4)
    env = clean_env(tmp_path)
    store = LocalStore(tmp_path / "models", "house-price")
    port = free_port()
    server_log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=server_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    scheduler = None
    try:
        url = f"http://127.0.0.1:{port}"

        def health():
            try:
                return requests.get(f"{url}/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(health, 60, "gunicorn to answer /health")
        assert requests.get(f"{url}/ready", timeout=5).status_code == 503  # no model yet

        scheduler = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "schedule", "--data", str(data),
             "--target", "price", "--every", "2s"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True,
        )
        wait_for(lambda: len(store.list()) >= 2, 60, "two scheduled versions")
        first, second = store.list()[:2]
        assert first["status"] == "promoted" and first["parent"] is None
        # the second tick was gated against the first: same data, same seed, not worse
        assert second["parent"] == first["id"]
        assert second["gate"]["compared_with"] == first["id"]
        assert second["status"] == "promoted"
        assert second["metrics"]["active_holdout"]["rows"] == second["metrics"]["holdout"]["rows"]

        # the live gunicorn follows the scheduler's promotions, with no restart
        def served_version():
            latest = store.active_version()
            body = requests.post(f"{url}/predict", json={"features": {
                "sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}, timeout=5).json()
            return body.get("model_version") == latest and latest

        assert wait_for(served_version, 5, "gunicorn to serve the newest version")

        time.sleep(0.3)  # between ticks: the scheduler is waiting
        started = time.monotonic()
        scheduler.send_signal(signal.SIGTERM)
        code = scheduler.wait(timeout=10)
        elapsed = time.monotonic() - started
        out, err = scheduler.communicate()
        assert code == 0, err
        assert elapsed < 3.0, f"SIGTERM took {elapsed:.2f} s"  # about 0.1 s when idle
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        runs = [e for e in events if e.get("event") == "retrain"]
        assert len(runs) >= 2
        assert runs[0]["status"] == "promoted"
        assert first["id"] in runs[1]["outcome"]["reason"]
        assert "Traceback" not in err
    finally:
        if scheduler is not None and scheduler.poll() is None:
            scheduler.kill()
            scheduler.wait()
        server.terminate()
        server.wait(timeout=30)
        server_log.close()


def test_malformed_schedule_is_one_line_error_at_start(tmp_path):
    data = write_houses_csv(tmp_path / "houses.csv", 50)
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "schedule", "--data", str(data), "--target",
         "price", "--cron", "0 25 * * *"],
        env=clean_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "hour" in result.stderr and "25" in result.stderr
    assert result.stdout == ""
