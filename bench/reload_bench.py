"""Hot reload across replicas: how long a promotion takes to reach every worker, and what polling
costs, on the object store (S3 API, moto on loopback) and on a local directory, side by side.

Two ``sgdserve serve`` replicas (2 workers each) share one store. For each store kind:

1. latency: ``ROUNDS`` times, CURRENT is switched (``store.activate`` in this process) and the
   time until every worker of both replicas reports the new version in /metrics is taken;
   light /predict traffic runs meanwhile (the local store is polled by requests);
2. polling cost: for ``QUIET`` seconds nothing changes and nothing scrapes; requests reaching
   the S3 server are counted (the local store's polls are a stat(2) each, with no server to
   count them: at most one per worker per interval, and none without traffic).

The load of 100 replicas x 4 workers at the default interval is worked out from the measured
per-worker rate. Not a test: run it by hand and record the numbers with the machine.

    python bench/reload_bench.py [--rounds 10] [--quiet 30] [--interval 1]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.engine import LinearModel  # noqa: E402
from service.store import open_location  # noqa: E402

ROW = {"features": {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}}
BUCKET = "bench"


class CountingS3:
    """moto's S3 server on loopback, counting the requests it answers (and the 304s)."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self.requests = 0
        self.not_modified = 0
        lock = threading.Lock()

        def counting(environ, start_response):
            def start(status, headers, *rest):
                if status.startswith("304"):
                    with lock:
                        self.not_modified += 1
                return start_response(status, headers, *rest)

            with lock:
                self.requests += 1
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            return app(environ, start)

        self.server = make_server("127.0.0.1", 0, counting, threaded=True,
                                  request_handler=MotoRequestHandler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def model(intercept: float) -> LinearModel:
    d = 4
    return LinearModel(("sqft", "bedrooms", "bathrooms", "age_years"), "price", np.zeros(d),
                       intercept, np.ones(d), np.ones(d), 0.0, 1.0, np.zeros(d), 0.0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SGDSERVE_")}
        environ.update(env, SGDSERVE_PORT=str(self.port), SGDSERVE_WORKERS="2",
                       PYTHONPATH=str(ROOT))
        self.log = log.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"],
                                     env=environ, stdout=self.log, stderr=self.log,
                                     stdin=subprocess.DEVNULL)

    def serving(self) -> dict[str, str]:
        text = requests.get(self.url + "/metrics", timeout=10).text
        return dict(re.findall(r'sgdserve_model_version_info\{pid="(\d+)",version="([^"]+)"\}',
                               text))

    def wait_up(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError("replica did not become ready")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


def traffic(replicas: list[Replica], stop: threading.Event) -> None:
    session = requests.Session()
    while not stop.is_set():
        for r in replicas:
            try:
                session.post(r.url + "/predict", json=ROW, timeout=5)
            except requests.RequestException:
                pass
        time.sleep(0.005)


def run(kind: str, model_dir: str, env: dict[str, str], rounds: int, quiet: float,
        counter: CountingS3 | None, tmp: Path) -> dict[str, float]:
    store = open_location(model_dir, "house-price", 20)
    v0 = store.save(model(1.0), {}, parent=None)
    store.activate(v0)
    v1 = store.save(model(2.0), {}, parent=v0)
    replicas = [Replica(env, tmp / f"{kind}-{i}.log") for i in range(2)]
    stop = threading.Event()
    try:
        for r in replicas:
            r.wait_up()
        threads = [threading.Thread(target=traffic, args=(replicas, stop), daemon=True)
                   for _ in range(2)]
        for t in threads:
            t.start()
        latencies = []
        target = v1
        for _ in range(rounds):
            time.sleep(0.3)
            store.activate(target)
            changed = time.monotonic()
            while True:
                seen = [r.serving() for r in replicas]
                if all(len(s) == 2 and set(s.values()) == {target} for s in seen):
                    break
                time.sleep(0.01)
            latencies.append(time.monotonic() - changed)
            target = v0 if target == v1 else v1
        stop.set()
        for t in threads:
            t.join()
        per_hour = None
        if counter is not None:
            time.sleep(2.0)  # in-flight polls settle
            before, before_304 = counter.requests, counter.not_modified
            time.sleep(quiet)
            polls = counter.requests - before
            per_hour = polls / 4 / quiet * 3600
            share_304 = (counter.not_modified - before_304) / max(polls, 1)
    finally:
        stop.set()
        for r in replicas:
            r.stop()
    result = {"median": statistics.median(latencies), "max": max(latencies),
              "min": min(latencies)}
    if per_hour is not None:
        result.update(per_worker_hour=per_hour, share_304=share_304)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quiet", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    counter = CountingS3()
    os.environ.update(AWS_ENDPOINT_URL=counter.endpoint, AWS_ACCESS_KEY_ID="bench",
                      AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    interval = {"SGDSERVE_RELOAD_INTERVAL": str(args.interval)}
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        s3_url = f"s3://{BUCKET}/models"
        results["s3"] = run("s3", s3_url, {"SGDSERVE_MODEL_DIR": s3_url, **interval},
                            args.rounds, args.quiet, counter, Path(tmp))
        local = str(Path(tmp) / "models")
        results["local"] = run("local", local, {"SGDSERVE_MODEL_DIR": local, **interval},
                               args.rounds, args.quiet, None, Path(tmp))
    print(f"reload interval {args.interval:g} s, 2 replicas x 2 workers, {args.rounds} switches")
    for kind, r in results.items():
        print(f"{kind:>6}: CURRENT changed -> all 4 workers serving it: median {r['median']:.2f} s"
              f", min {r['min']:.2f}, max {r['max']:.2f}")
    per_hour = results["s3"]["per_worker_hour"]
    print(f"    s3: polling, nothing changing: {per_hour:,.0f} requests per worker per hour "
          f"({results['s3']['share_304']:.0%} answered 304)")
    fleet = per_hour * 400
    print(f"100 replicas x 4 workers: {fleet / 3600:,.0f} requests/s, {fleet:,.0f} per hour, "
          f"{fleet * 24 * 30 / 1e6:,.0f} million per 30 days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
