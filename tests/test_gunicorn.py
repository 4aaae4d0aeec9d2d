"""A real gunicorn with 4 workers: hot reload in every worker, 409, auth, metrics totals.

Which workers serve which version is read from ``sgdserve_model_version_info``: a gauge with
one series per live worker (a ``pid`` label), set by a worker when it swaps its model. So "all
workers switched" is proven per worker, not inferred from sampling.
"""

from __future__ import annotations

import collections
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from service.data import write_houses_csv
from service.store import LocalStore

from helpers import GunicornServer, hand_model, wait_until

WORKERS = 4
TOKEN = "gunicorn-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEATURES = ("sqft", "bedrooms", "bathrooms", "age_years")
ROW = {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}
RELOAD_BOUND = 2.0  # seconds: a promotion must reach every worker within this

pytestmark = pytest.mark.slow


class Traffic:
    """Client threads posting /predict continuously; every response is recorded."""

    def __init__(self, url: str, threads: int = 4):
        self.url = url
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, int, str | None]] = []  # (sent at, status, version)
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self) -> None:
        session = requests.Session()
        while not self.stop_event.is_set():
            sent = time.time()
            try:
                r = session.post(self.url + "/predict", json={"features": ROW}, timeout=30)
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                continue
            body = r.json() if r.status_code == 200 else None
            version = body["model_version"] if body else None
            if r.status_code != 200 or version != r.headers.get("X-Model-Version"):
                with self.lock:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            with self.lock:
                self.results.append((sent, r.status_code, version))

    def count(self) -> int:
        with self.lock:
            return len(self.results)

    def versions_sent_after(self, t: float) -> collections.Counter:
        with self.lock:
            return collections.Counter(v for sent, _, v in self.results if sent >= t)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gunicorn")
    store = LocalStore(tmp / "models", "house-price")
    first = store.save(hand_model(1.0), {"metrics": {}}, parent=None)
    store.activate(first)
    # As a user starts it: `sgdserve serve` runs gunicorn with service/gunicorn_conf.py.
    srv = GunicornServer(tmp, workers=WORKERS, env={
        "SGDSERVE_MODEL_DIR": str(tmp / "models"),
        "SGDSERVE_RELOAD_INTERVAL": "1",
        "SGDSERVE_API_TOKEN": TOKEN,
        "SGDSERVE_METRICS_DIR": str(tmp / "metrics"),
        "SGDSERVE_LOG_LEVEL": "info",
    })
    srv.store = store
    with srv:
        yield srv
    # A retrain child may outlive the server briefly.
    wait_until(lambda: not store.is_locked(), 60, "the store lock to be released")


def promotion_time(store: LocalStore) -> float:
    """Wall-clock time at which CURRENT was last replaced."""
    return os.stat(store.current_file).st_mtime


def check_switch(server: GunicornServer, traffic: Traffic, new: str) -> dict[str, str]:
    serving = server.wait_all_workers_serve(new)
    t0 = promotion_time(server.store)
    cutoff = t0 + RELOAD_BOUND
    # Keep traffic flowing past the bound so every worker answers after it.
    while traffic.versions_sent_after(cutoff).total() < 200:
        time.sleep(0.05)
    late = traffic.versions_sent_after(cutoff)
    assert set(late) == {new}, f"requests sent {RELOAD_BOUND} s after the promotion saw {late}"
    return serving


def test_predictions_from_every_worker(server):
    old = server.store.active_version()
    with Traffic(server.url) as traffic:
        server.wait_all_workers_serve(old)
        while traffic.count() < 100:
            time.sleep(0.05)
    assert traffic.failures == []
    assert {v for _, _, v in traffic.results} == {old}


def test_a_retrain_over_http_reaches_every_worker(server):
    data = write_houses_csv(server.tmp / "houses.csv", 3000, seed=5).read_bytes()
    with Traffic(server.url) as traffic:
        r = requests.post(server.url + "/retrain?target=price&epochs=20", data=data,
                          headers={**AUTH, "Content-Type": "text/csv"}, timeout=30)
        assert r.status_code == 202, r.text
        job_url = server.url + r.headers["Location"]
        deadline = time.monotonic() + 120
        while True:
            job = requests.get(job_url, timeout=10).json()  # any worker answers from the file
            if job["status"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["status"] == "promoted", job
        check_switch(server, traffic, job["version"])
    assert traffic.failures == []


def test_a_promotion_by_the_cli_reaches_every_worker(server):
    data = write_houses_csv(server.tmp / "cli.csv", 2000, seed=7)
    with Traffic(server.url) as traffic:
        while traffic.count() < 50:
            time.sleep(0.05)
        # `sgdserve train` from a shell: another process, same store, no HTTP involved.
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "train", "--data", str(data),
             "--target", "price", "--model-dir", str(server.store.root), "--force", "--json"],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["promoted"] is True
        assert server.store.active_version() == result["version"]
        check_switch(server, traffic, result["version"])
    assert traffic.failures == []


def test_a_rollback_by_another_process_reaches_every_worker(server):
    store = server.store
    candidate = store.save(hand_model(2.0), {"metrics": {}}, parent=store.active_version())
    with Traffic(server.url) as traffic:
        while traffic.count() < 50:
            time.sleep(0.05)
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "models", "activate", candidate,
             "--model-dir", str(store.root)],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        previous = done.stdout.split("(was ")[1].rstrip(")\n")
        serving = check_switch(server, traffic, candidate)
    assert traffic.failures == []
    # Every worker logged its reload, from -> to, in gunicorn's error log.
    for pid in serving:
        wait_until(lambda pid=pid: f"[{pid}] [INFO] serving model version {candidate} (was "
                   f"{previous})" in server.stderr(), 10, f"worker {pid}'s reload line")


def test_a_concurrent_retrain_is_409(server):
    data = write_houses_csv(server.tmp / "big.csv", 20_000, seed=6).read_bytes()
    headers = {**AUTH, "Content-Type": "text/csv"}
    first = requests.post(server.url + "/retrain?target=price&epochs=50", data=data,
                          headers=headers, timeout=30)
    assert first.status_code == 202, first.text
    job_id = first.json()["job_id"]
    second = requests.post(server.url + "/retrain?target=price", data=data[:5000].rsplit(
        b"\n", 1)[0], headers=headers, timeout=30)
    assert second.status_code == 409, second.text
    assert second.json()["error"] == {
        "code": "retrain_in_progress",
        "message": f"retrain job {job_id} is running",
        "job_id": job_id,
    }
    deadline = time.monotonic() + 120
    while requests.get(server.url + f"/retrain/{job_id}", timeout=10).json()["status"] in (
        "queued", "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": TOKEN}])
def test_write_endpoints_refuse_without_the_token(server, headers):
    version = server.store.active_version()
    r = requests.post(server.url + "/retrain", data=b"a,b\n1,2\n",
                      headers={**headers, "Content-Type": "text/csv"}, timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.json()["error"]["code"] == "unauthorized"
    r = requests.post(server.url + f"/models/{version}/activate", headers=headers, timeout=10)
    assert r.status_code == 401
    assert TOKEN not in server.logs()


def test_metrics_totals_add_up_across_workers(server):
    def predict_count() -> float:
        text = requests.get(server.url + "/metrics", timeout=10).text
        total = 0.0
        for _status, value in re.findall(
            r'sgdserve_requests_total\{endpoint="/predict",method="POST",status="(\d+)"\} (\S+)',
            text,
        ):
            total += float(value)
        rows = re.search(r"^sgdserve_rows_predicted_total (\S+)$", text, re.M)
        return total, float(rows.group(1))

    before, rows_before = predict_count()
    ok = bad = 0
    with requests.Session() as session:
        for i in range(300):
            payload = {"instances": [ROW] * 3} if i % 3 else {"features": {"sqft": True}}
            r = session.post(server.url + "/predict", json=payload, timeout=10)
            ok += r.status_code == 200
            bad += r.status_code == 400
    assert ok + bad == 300
    after, rows_after = predict_count()
    assert after - before == 300
    assert rows_after - rows_before == 3 * ok


def test_large_chunked_and_truncated_bodies(server):
    """/predict reads a declared length in one go and a chunked body to its end; a body that
    stops short of its Content-Length is a 400, and the worker goes on serving."""
    rows = [dict(ROW, sqft=1000.5 + i) for i in range(10_000)]  # 0.7 MB: many recv() calls
    body = json.dumps({"instances": rows}).encode()
    headers = {"Content-Type": "application/json"}
    r = requests.post(server.url + "/predict", data=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(rows)

    def pieces():  # no Content-Length: requests sends Transfer-Encoding: chunked
        for start in range(0, len(body), 100_000):
            yield body[start:start + 100_000]

    r = requests.post(server.url + "/predict", data=pieces(), headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == len(rows)

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n" + body[:5000])
        s.shutdown(socket.SHUT_WR)  # the client gives up before the declared length
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:300]
    assert json.loads(payload)["error"]["code"] == "bad_request"
    assert requests.post(server.url + "/predict", json={"features": ROW}, timeout=10).ok


def test_open_inference_protocol_through_gunicorn(server):
    version = server.store.active_version()
    assert requests.get(server.url + "/v2/health/ready", timeout=10).json() == {"ready": True}
    meta = requests.get(server.url + "/v2/models/house-price", timeout=10).json()
    assert [t["name"] for t in meta["inputs"]] == list(FEATURES)
    payload = {"id": "r1", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                                       "data": [[1500, 3, 2, 20], [900, 1, 1, 60]]}]}
    r = requests.post(server.url + "/v2/models/house-price/infer", json=payload, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "r1" and body["model_version"] in (version, server.store.active_version())
    assert body["outputs"][0]["shape"] == [2]
    r = requests.post(server.url + "/v2/models/house-price/infer", json={"inputs": []}, timeout=10)
    assert r.status_code == 400 and set(r.json()) == {"error", "code"}
