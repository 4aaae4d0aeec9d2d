"""The container image, built and run for real (``make test-docker``; needs root for Docker).

One image is built per session from the local base image that ``shared/tools/docker-up.sh``
prints, and one container runs for the module, the way Kubernetes runs it: a read-only root
file system with a tmpfs at /tmp, and the image's own /models volume. The container and the
image are removed afterwards, also on failure. ``SGDSERVE_TEST_IMAGE=<tag>`` tests an image
built already (and keeps it).

The tests run in file order; the last one stops the container.
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from helpers import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
# CI clones the repository beside a copy of shared/, as the developers' trees are.
DOCKER_UP = ROOT.parent / "shared" / "tools" / "docker-up.sh"
SAMPLE = ROOT / "service" / "sample_data" / "houses.csv"
ROW = {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}
UID = 10001

# Upper bounds only, on a shared 2-core machine; each is left as soon as the condition holds.
BUILD_TIMEOUT = 1800.0  # every build step copies the file system on the vfs storage driver
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0  # gunicorn's graceful timeout is 30 s


def docker(*args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess:
    """Run a docker command; on failure, fail with its output."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        output = (result.stdout[-4000:] + "\n" + result.stderr[-4000:]).strip()
        pytest.fail(f"docker {args[0]} exited with {result.returncode}:\n{output}")
    return result


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """The image under test: built from the local base image, removed at the end."""
    given = os.environ.get("SGDSERVE_TEST_IMAGE")
    if given:
        yield given
        return
    assert DOCKER_UP.is_file(), f"{DOCKER_UP} is missing: shared/ must sit beside the repository"
    up = subprocess.run(
        ["bash", str(DOCKER_UP)], capture_output=True, text=True, timeout=1200, check=False
    )
    if up.returncode != 0:
        pytest.fail(f"docker-up.sh exited with {up.returncode}:\n{up.stderr[-4000:]}")
    base = up.stdout.strip().splitlines()[-1]
    tag = f"sgdserve-test:{secrets.token_hex(4)}"
    # The build stage is tagged too, so that removing both tags leaves no dangling layers.
    build_tag = tag + "-build"
    build = ["build", "--network", "host", "--force-rm", "--build-arg", f"BASE_IMAGE={base}"]
    try:
        docker(*build, "--target", "build", "--tag", build_tag, str(ROOT), timeout=BUILD_TIMEOUT)
        docker(*build, "--tag", tag, str(ROOT), timeout=BUILD_TIMEOUT)  # reuses the build stage
        yield tag
    finally:
        docker("rmi", "--force", tag, build_tag, check=False)


@dataclass
class Container:
    name: str
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.name).stdout.strip()

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr


def wait_ready(container: Container) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if requests.get(container.url + "/ready", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if container.inspect("{{.State.Running}}") != "true":
            pytest.fail(f"the container stopped while starting:\n{container.logs()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"/ready not 200 after {START_TIMEOUT:.0f} s:\n{container.logs()[-4000:]}")


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    """The image running with the settings Kubernetes uses, on a free port of the host."""
    running = Container(f"sgdserve-test-{secrets.token_hex(4)}", free_port(), secrets.token_hex(16))
    try:
        docker(
            "run", "--detach", "--name", running.name, "--network", "host",
            # As deploy/kubernetes: nothing but /models (the image's volume) and /tmp writable.
            "--read-only", "--tmpfs", "/tmp",
            # Probe every second so the health status settles within seconds.
            "--health-interval", "1s", "--health-timeout", "3s", "--health-retries", "3",
            # The host network is shared: listen on loopback only.
            "--env", "SGDSERVE_HOST=127.0.0.1",
            "--env", f"SGDSERVE_PORT={running.port}",
            "--env", f"SGDSERVE_API_TOKEN={running.token}",
            image,
            timeout=START_TIMEOUT,
        )  # fmt: skip
        wait_ready(running)
        yield running
    finally:
        print(running.logs()[-8000:])  # shown by pytest when a test of this module fails
        docker("rm", "--force", "--volumes", running.name, check=False)


def predict(container: Container) -> dict:
    response = requests.post(container.url + "/predict", json={"features": ROW}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def sample_prices() -> list[float]:
    with SAMPLE.open(newline="") as handle:
        return [float(row["price"]) for row in csv.DictReader(handle)]


def test_image_configuration(image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Cmd"] == ["sgdserve", "serve"] and not config.get("Entrypoint")
    assert set(config["ExposedPorts"]) == {"8000/tcp"}
    assert set(config["Volumes"]) == {"/models", "/logs"}
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["SGDSERVE_HOST"] == "0.0.0.0" and env["SGDSERVE_PORT"] == "8000"
    assert env["SGDSERVE_MODEL_DIR"] == "/models" and env["SGDSERVE_LOG_DIR"] == "/logs"
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python3"]


def test_predicts_at_once_with_the_model_trained_at_build(container: Container) -> None:
    body = predict(container)
    assert body["model_version"]
    ready = requests.get(container.url + "/ready", timeout=10).json()
    assert ready["model_version"] == body["model_version"]
    # Trained on the bundled sample: a typical house is priced within the sample's range.
    prices = sample_prices()
    assert math.isfinite(body["prediction"])
    assert min(prices) < body["prediction"] < max(prices)


def test_runs_as_the_image_user_and_owns_the_models(container: Container) -> None:
    assert docker("exec", container.name, "id", "-u").stdout.strip() == str(UID)
    # Docker copied the image's /models and /logs, with their owner, into the new volumes.
    owners = docker(
        "exec", container.name, "python3", "-c",
        "import os; print(os.stat('/models').st_uid, os.stat('/logs').st_uid)"
    )
    assert owners.stdout.split() == [str(UID), str(UID)]
    # A prediction is logged there (after its answer), for the feedback loop.
    predict(container)
    logged = docker("exec", container.name, "python3", "-c",
                    "import os, time; time.sleep(0.5); print(sorted(os.listdir('/logs')))")
    assert "predictions-" in logged.stdout, logged.stdout


def test_retrain_needs_the_token_and_promotes_or_rejects(container: Container) -> None:
    data = SAMPLE.read_bytes()
    headers = {"Content-Type": "text/csv"}
    refused = requests.post(container.url + "/retrain", data=data, headers=headers, timeout=10)
    assert refused.status_code == 401
    before = predict(container)["model_version"]

    headers["Authorization"] = f"Bearer {container.token}"
    response = requests.post(
        container.url + "/retrain?wait=20", data=data, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] in ("promoted", "rejected"), job
    if job["status"] == "rejected":
        assert job["reason"]
        assert predict(container)["model_version"] == before
        return
    # Every worker follows CURRENT within about a second: soon all answers carry the new version.
    deadline = time.monotonic() + 30
    streak = 0
    while streak < 8:
        assert time.monotonic() < deadline, f"version {job['version']} is not served everywhere"
        streak = streak + 1 if predict(container)["model_version"] == job["version"] else 0
    assert job["version"] != before


def test_healthcheck_becomes_healthy(container: Container) -> None:
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline:
        status = container.inspect("{{.State.Health.Status}}")
        if status in ("healthy", "unhealthy"):
            break
        time.sleep(0.5)
    assert status == "healthy", container.inspect("{{json .State.Health.Log}}")


def send_request_head(container: Container, body: bytes) -> socket.socket:
    """Open a /predict request and send all of it but the last byte of the body."""
    connection = socket.create_connection(("127.0.0.1", container.port), timeout=STOP_TIMEOUT)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{container.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    connection.sendall(head + body[:-1])
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the one response on ``connection`` (the server closes it)."""
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_sigterm_lets_the_request_in_flight_finish(container: Container) -> None:
    body = json.dumps({"features": ROW}).encode()
    expected = predict(container)["prediction"]
    with send_request_head(container, body) as connection:
        # A sync worker is now inside the request, waiting for the last byte of its body.
        time.sleep(1.0)
        docker("kill", "--signal", "TERM", container.name)
        deadline = time.monotonic() + 30
        while "Handling signal: term" not in container.logs():
            assert time.monotonic() < deadline, "gunicorn did not log the SIGTERM"
            time.sleep(0.2)
        # Shutdown has begun and the request is still open; now let it complete.
        connection.sendall(body[-1:])
        status, answer = read_response(connection)
    assert status == 200, answer
    assert answer["prediction"] == pytest.approx(expected)

    exit_code = docker("wait", container.name, timeout=STOP_TIMEOUT).stdout.strip()
    assert exit_code == "0", container.logs()[-4000:]
    assert container.inspect("{{.State.OOMKilled}}") == "false"
