"""`sgdserve schedule` end to end: gated ticks, a live gunicorn follows, SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from service.data import write_houses_csv
from service.store import LocalStore

from helpers import GunicornServer, child_env, wait_until

pytestmark = pytest.mark.slow


def settings(tmp: Path) -> dict[str, str]:
    return {"SGDSERVE_MODEL_DIR": str(tmp / "models"), "SGDSERVE_RELOAD_INTERVAL": "1",
            "SGDSERVE_METRICS_DIR": str(tmp / "metrics"), "SGDSERVE_LOG_LEVEL": "warning"}


def test_schedule_ticks_gate_promote_reach_gunicorn_and_stop_on_sigterm(tmp_path):
    data = write_houses_csv(tmp_path / "houses.csv", 2_000, seed=4)
    env = child_env(settings(tmp_path))
    store = LocalStore(tmp_path / "models", "house-price")
    server = GunicornServer(tmp_path / "server", env=settings(tmp_path))
    scheduler = None
    try:
        url = server.url
        server.wait_ready()
        assert requests.get(f"{url}/ready", timeout=5).status_code == 503  # no model yet

        scheduler = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "schedule", "--data", str(data),
             "--target", "price", "--every", "2s"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True,
        )
        wait_until(lambda: len(store.list()) >= 2, 60, "two scheduled versions")
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

        assert wait_until(served_version, 5, "gunicorn to serve the newest version")

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
        server.stop()


def test_malformed_schedule_is_one_line_error_at_start(tmp_path):
    data = write_houses_csv(tmp_path / "houses.csv", 50)
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "schedule", "--data", str(data), "--target",
         "price", "--cron", "0 25 * * *"],
        env=child_env(settings(tmp_path)), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "hour" in result.stderr and "25" in result.stderr
    assert result.stdout == ""
