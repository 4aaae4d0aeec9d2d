"""Prediction ids, the append-only logs (rotation, the bound on disk, torn lines, a read-only
or full directory) and POST /feedback, through the Flask test client and the log code itself."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from service.data import write_houses_csv
from service.http import create_app
from service.monitor.ids import IdIssuer
from service.monitor.logfiles import LogStats, LogWriter, list_files, read_lines, segment_bytes
from service.store import LocalStore
from service.training import train

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "token-for-the-loop-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROW = {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("loop")
    write_houses_csv(tmp / "houses.csv", 1000, seed=1)
    train(LocalStore(tmp / "models"), tmp / "houses.csv", target="price")
    return tmp / "models"


def app_for(models: Path, logs: Path, **more):
    return create_app({"model_dir": models, "log_dir": logs, "api_token": TOKEN, **more})


@pytest.fixture
def client(models, tmp_path):
    return app_for(models, tmp_path / "logs").test_client()


def records(logs: Path, kind: str = "predictions") -> list[dict]:
    return list(read_lines(logs, kind))


# -- ids ----------------------------------------------------------------------------------------


def test_ids_verify_with_their_key_only_and_name_their_rows() -> None:
    issuer = IdIssuer(b"k" * 32)
    single, batch = issuer.issue(), issuer.issue(3)
    assert len(single) == len(batch) == 32 and single != batch
    assert issuer.parse(single).row is None
    assert issuer.parse(f"{batch}.2").row == 2 and issuer.parse(f"{batch}.2").base == batch
    for bad in (f"{batch}.3", f"{batch}.02", f"{batch}.-1", batch, f"{single}.0", single[:-1],
                single[:-2] + ("A" if single[-2] != "A" else "B") + single[-1], "", 7, None,
                single.replace("-", "+").replace("_", "/") if ("-" in single or "_" in single)
                else single + "x"):
        assert issuer.parse(bad) is None, bad
    assert IdIssuer(b"other key" * 4).parse(single) is None  # a forged or foreign id
    assert abs(issuer.parse(single).issued_ms / 1000 - __import__("time").time()) < 60


def test_ids_are_unique_in_a_process_and_after_a_fork(tmp_path) -> None:
    issuer = IdIssuer(b"k" * 32)
    ids = {issuer.issue() for _ in range(20_000)}
    assert len(ids) == 20_000
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker does after the master forked it
        os.close(read)
        os.write(write, "\n".join(issuer.issue() for _ in range(1000)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        child = set(f.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {issuer.issue() for _ in range(1000)}
    assert len(child) == 1000 and not child & parent and not child & ids


def test_every_prediction_has_an_id_and_the_client_request_id_is_echoed(client) -> None:
    r = client.post("/predict", json={"features": ROW})
    pid = r.get_json()["prediction_id"]
    assert r.headers["X-Prediction-Id"] == r.headers["X-Request-Id"] == pid
    r = client.post("/predict", json={"instances": [ROW] * 3},
                    headers={"X-Request-Id": "order-42/attempt-1"})
    body = r.get_json()
    base = r.headers["X-Prediction-Id"]
    assert body["prediction_ids"] == [f"{base}.0", f"{base}.1", f"{base}.2"]
    assert r.headers["X-Request-Id"] == "order-42/attempt-1"
    for bad in ("", "x" * 201, "has space", "tab\there", "caf\u00e9"):
        r = client.post("/predict", json={"features": ROW}, headers={"X-Request-Id": bad})
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_request_id"


# -- the prediction log -------------------------------------------------------------------------


def test_what_was_predicted_is_logged_after_the_answer(client, tmp_path) -> None:
    one = client.post("/predict", json={"features": ROW, "interval": 0.9}).get_json()
    many = client.post("/predict", data=b'{"instances": [\n' + orjson.dumps(ROW) + b",\n"
                       + orjson.dumps(dict(ROW, sqft=2000)) + b"\n]}",
                       content_type="application/json",
                       headers={"X-Request-Id": "r-7"}).get_json()
    logged = records(tmp_path / "logs")
    assert len(logged) == 2
    single, batch = logged
    assert single["id"] == one["prediction_id"] and single["v"] == one["model_version"]
    assert single["x"] == [1500, 3, 2, 20] and single["y"] == one["prediction"]
    assert single["iv"]["level"] == 0.9
    assert single["iv"]["half_width"] == pytest.approx(
        one["prediction"] - one["interval"]["lower"])
    assert batch["id"] == many["prediction_ids"][0].split(".")[0] and batch["n"] == 2
    assert batch["rid"] == "r-7" and batch["y"] == many["predictions"]
    assert batch["request"]["instances"][1]["sqft"] == 2000  # the body, newlines and all
    assert "rid" not in single and "iv" not in batch


def test_a_batch_is_logged_once_its_answer_has_been_sent(models, tmp_path) -> None:
    """A batch's line (its whole body) is written when the server closes the sent response,
    not before the answer leaves; a single row's before. Flask's own client, unbuffered, keeps
    the response open the way a server does while it sends."""
    from flask.testing import FlaskClient

    app = app_for(models, tmp_path / "logs")
    raw = FlaskClient(app)
    one = raw.post("/predict", json={"features": ROW})
    assert len(records(tmp_path / "logs")) == 1  # a row: logged with the answer
    one.close()
    many = raw.post("/predict", json={"instances": [ROW, dict(ROW, sqft=2000)]})
    assert many.status_code == 200 and len(records(tmp_path / "logs")) == 1
    answered = time.time()
    time.sleep(0.01)
    many.close()  # what gunicorn does once the bytes are out
    logged = records(tmp_path / "logs")
    assert len(logged) == 2 and logged[1]["n"] == 2
    assert logged[1]["y"] == many.get_json()["predictions"]
    assert logged[1]["t"] <= answered  # the time of the prediction, not of the write


def test_batches_up_to_the_row_limit_are_logged_whole(client, tmp_path) -> None:
    rows = [dict(ROW, sqft=1000 + i) for i in range(1000)]
    answer = client.post("/predict", json={"instances": rows}).get_json()
    (logged,) = records(tmp_path / "logs")
    assert logged["n"] == 1000 and logged["request"]["instances"] == rows
    assert logged["y"] == answer["predictions"]


def test_the_log_can_be_switched_off(models, tmp_path) -> None:
    client = app_for(models, tmp_path / "logs", prediction_log=False).test_client()
    assert client.post("/predict", json={"features": ROW}).get_json()["prediction_id"]
    assert records(tmp_path / "logs") == []


def test_logs_rotate_and_stay_within_their_bound(tmp_path) -> None:
    logs = tmp_path / "logs"
    bound = 1024 * 1024
    segment = segment_bytes(bound)
    assert segment == 64 * 1024
    writers = [LogWriter(logs, kind, bound) for kind in ("predictions", "predictions",
                                                           "feedback")]
    line = orjson.dumps({"id": "x", "t": 1.0, "v": "v", "x": [1.0] * 40, "y": 2.0}) + b"\n"
    written = 0
    for i in range(30_000):
        assert writers[i % 3].write(line)
        written += len(line)
        total = sum(f.size for f in list_files(logs))
        assert total <= bound
    assert written > 4 * bound  # the bound was reached many times over
    files = list_files(logs)
    assert len({f.writer for f in files}) == 3
    assert all(f.size <= segment for f in files)
    kept = list(read_lines(logs, "predictions"))
    assert kept and all(r["id"] == "x" for r in kept)
    # The oldest went first: what is left of each writer is its newest files.
    for writer in {f.writer for f in files}:
        seqs = sorted(f.seq for f in files if f.writer == writer)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_a_torn_last_line_is_skipped_counted_and_the_rest_read(tmp_path) -> None:
    logs = tmp_path / "logs"
    writer = LogWriter(logs, "predictions", 1024 * 1024)
    for i in range(3):
        writer.write(orjson.dumps({"id": f"p{i}", "t": 1.0, "v": "v", "x": [1], "y": 1}) + b"\n")
    (path,) = [f.path for f in list_files(logs)]
    with open(path, "ab") as f:  # what a worker killed in the middle of write(2) leaves
        f.write(b'{"id": "p3", "t": 1.0, "v": "v", "x": [1')
    writer.write(b'{"id": "p4", "t": 1.0, "v": "v", "x": [1], "y": 1}\n')  # joins the torn line
    stats = LogStats()
    ids = [r["id"] for r in read_lines(logs, "predictions", stats)]
    assert ids == ["p0", "p1", "p2"] and stats.torn_lines == 1
    assert stats.torn_files == [path.name]


def test_a_full_disk_is_counted_logged_once_and_prediction_goes_on(client, tmp_path, caplog):
    assert client.post("/predict", json={"features": ROW}).status_code == 200
    loop = client.application.extensions["sgdserve"].loop
    writer = loop.predictions
    # Every later write(2) of this writer goes to /dev/full: ENOSPC from the kernel.
    os.close(writer._fd)
    writer._fd = os.open("/dev/full", os.O_WRONLY)
    for _ in range(5):
        r = client.post("/predict", json={"features": ROW})
        assert r.status_code == 200 and r.get_json()["prediction"]
    assert writer.failures == 5
    errors = [rec for rec in caplog.records if "predictions log" in rec.getMessage()]
    assert len(errors) == 1 and "No space left" in errors[0].getMessage()
    metrics = client.get("/metrics").data.decode()
    assert 'sgdserve_log_write_failures_total{log="predictions",operation="write"} 5.0' in metrics


@contextlib.contextmanager
def read_only_directory(path: Path):
    """A directory nothing can be written into, even by root: a read-only tmpfs (when this
    process may mount), else a directory without write permission."""
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs",
                                  str(path)], capture_output=True).returncode == 0
        if mounted:
            try:
                yield path
            finally:
                subprocess.run(["umount", str(path)], check=True)
            return
        pytest.skip("root without mount: cannot make a directory read-only for this test")
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


@pytest.mark.slow  # mount(8) is a process
def test_a_read_only_log_directory_never_fails_predict(models, tmp_path) -> None:
    with read_only_directory(tmp_path / "ro") as logs:
        client = app_for(models, logs).test_client()
        for body in ({"features": ROW}, {"instances": [ROW, ROW]}):
            r = client.post("/predict", json=body)
            assert r.status_code == 200
        loop = client.application.extensions["sgdserve"].loop
        assert loop.predictions.failures == 1  # opening failed; retried only after a pause
        assert "open failed" in loop.last_error
        assert list_files(logs) == []
        # Feedback, unlike a prediction log line, is a promise: it is refused when not kept.
        pid = client.post("/predict", json={"features": ROW}).get_json()["prediction_id"]
        r = client.post("/feedback", json={"prediction_id": pid, "actual": 1.0}, headers=AUTH)
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "feedback_not_stored"
        # /monitoring still answers (from nothing), though it cannot keep its report.
        r = client.get("/monitoring")
        assert r.status_code == 200 and r.get_json()["predictions"] == 0


def test_a_log_that_cannot_be_created_is_retried_after_a_pause(tmp_path) -> None:
    (tmp_path / "file").write_text("not a directory")
    failures: list[tuple[str, str, int]] = []
    writer = LogWriter(tmp_path / "file" / "logs", "predictions", 1024 * 1024,
                       lambda kind, what, exc: failures.append((kind, what, exc.errno)))
    assert not writer.write(b"{}\n") and not writer.write(b"{}\n")
    assert failures == [("predictions", "open", errno.ENOTDIR)]  # the second waits its turn


# -- feedback -----------------------------------------------------------------------------------


def test_feedback_needs_the_token(client) -> None:
    assert client.post("/feedback", json={"prediction_id": "x", "actual": 1}).status_code == 401
    assert client.post("/feedback", json={"prediction_id": "x", "actual": 1},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_feedback_with_known_unknown_and_repeated_ids(client, tmp_path) -> None:
    batch = client.post("/predict", json={"instances": [ROW] * 3}).get_json()["prediction_ids"]
    single = client.post("/predict", json={"features": ROW}).get_json()["prediction_id"]
    r = client.post("/feedback", json={"prediction_id": single, "actual": 300_000},
                    headers=AUTH)
    assert r.status_code == 202
    assert r.get_json() == {"accepted": 1, "unknown": 0, "unknown_ids": [], "labelled": 0}
    forged = single[:-1] + ("A" if single[-1] != "A" else "B")
    items = [{"prediction_id": batch[0], "actual": 1.0}, {"prediction_id": batch[2], "actual": 2},
             {"prediction_id": "never-issued", "actual": 3.0},
             {"prediction_id": forged, "actual": 4.0},
             {"prediction_id": batch[0], "actual": 5.0},  # repeated: the last value wins
             {"prediction_id": single, "actual": 310_000}]
    r = client.post("/feedback", json={"feedback": items}, headers=AUTH)
    assert r.status_code == 202
    assert r.get_json() == {"accepted": 4, "unknown": 2, "unknown_ids": ["never-issued", forged],
                            "labelled": 0}
    kept = records(tmp_path / "logs", "feedback")
    assert [k["ids"] for k in kept] == [[single], [batch[0], batch[2], batch[0], single]]
    from service.monitor.join import join
    joined = join(tmp_path / "logs", lambda v: None)
    assert joined.feedback_ids == 3 and joined.matched == 3
    stats = next(iter(joined.versions.values()))
    assert sorted(stats.actual) == [2.0, 5.0, 310_000.0]  # batch[0]: 5.0 (the last), single:
    metrics = client.get("/metrics").data.decode()  # its second value
    assert 'sgdserve_feedback_rows_total{outcome="accepted"} 5.0' in metrics
    assert 'sgdserve_feedback_rows_total{outcome="unknown"} 2.0' in metrics


def test_labelled_rows_never_predicted_are_accepted_and_checked(client, tmp_path) -> None:
    r = client.post("/feedback", json={"feedback": [{"features": ROW, "actual": 320_000},
                                                    {"features": dict(ROW, price=1),
                                                     "actual": 1.0}]}, headers=AUTH)
    assert r.status_code == 202 and r.get_json()["labelled"] == 2
    assert r.get_json()["accepted"] == 2
    (kept,) = records(tmp_path / "logs", "feedback")
    assert kept["rows"][0] == ROW and kept["row_actual"] == [320_000, 1.0]
    r = client.post("/feedback", json={"feedback": [{"features": ROW, "actual": 1},
                                                    {"features": {"sqft": 1}, "actual": 1}]},
                    headers=AUTH)
    assert r.status_code == 400
    assert r.get_json()["error"]["message"] == "feedback[1]: feature 'bedrooms' is missing"
    assert len(records(tmp_path / "logs", "feedback")) == 1  # nothing of a refused request


@pytest.mark.parametrize("body, message", [
    ([], "request body must be a JSON object, got a list"),
    ({"feedback": "x"}, "'feedback' must be a list, got a string"),
    ({"feedback": []}, "'feedback' is empty"),
    ({"feedback": [], "extra": 1}, "unknown key 'extra' beside 'feedback'"),
    ({"prediction_id": "x"}, "'actual' is missing"),
    ({"prediction_id": "x", "actual": "3"}, "'actual' must be a number, got \"3\""),
    ({"prediction_id": "x", "actual": True}, "'actual' must be a number, got true"),
    (b'{"prediction_id": "x", "actual": 1e400}', "number is infinity"),
    ({"prediction_id": 7, "actual": 1}, "'prediction_id' must be a string, got 7"),
    ({"actual": 1}, "'prediction_id' (or 'features', for a row never predicted) is missing"),
    ({"prediction_id": "x", "features": ROW, "actual": 1}, "not both"),
    ({"prediction_id": "x", "actual": 1, "price": 2}, "unknown key 'price'"),
    ({"feedback": [{"prediction_id": "x", "actual": 1}, 3]},
     "feedback[1]: each item must be an object"),
])
def test_bad_feedback_is_a_400_naming_the_problem(client, body, message) -> None:
    r = client.post("/feedback", data=body if type(body) is bytes else orjson.dumps(body),
                    content_type="application/json", headers=AUTH)
    assert r.status_code == 400, r.get_json()
    assert message in r.get_json()["error"]["message"]
    assert r.get_json()["error"]["code"] in ("invalid_feedback", "empty_batch", "invalid_json")


def test_feedback_past_the_row_limit_is_refused(models, tmp_path) -> None:
    client = app_for(models, tmp_path / "logs", max_batch_rows=3).test_client()
    r = client.post("/feedback", json={"feedback": [{"prediction_id": "x", "actual": 1}] * 4},
                    headers=AUTH)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "too_many_rows"


def test_unknown_ids_listed_are_bounded(client) -> None:
    items = [{"prediction_id": f"nope-{i}", "actual": 1} for i in range(150)]
    body = client.post("/feedback", json={"feedback": items}, headers=AUTH).get_json()
    assert body["unknown"] == 150 and len(body["unknown_ids"]) == 100
    assert body["unknown_ids_truncated"] is True


def test_an_id_issued_by_another_worker_with_the_same_token_is_known(models, tmp_path) -> None:
    first = app_for(models, tmp_path / "a").test_client()
    second = app_for(models, tmp_path / "b").test_client()  # another process, same settings
    pid = first.post("/predict", json={"features": ROW}).get_json()["prediction_id"]
    body = second.post("/feedback", json={"prediction_id": pid, "actual": 1.0},
                       headers=AUTH).get_json()
    assert body["accepted"] == 1
    other_key = create_app({"model_dir": models, "log_dir": tmp_path / "c", "api_token": TOKEN,
                            "id_key": "a-key-of-its-own-for-ids"}).test_client()
    body = other_key.post("/feedback", json={"prediction_id": pid, "actual": 1.0},
                          headers=AUTH).get_json()
    assert body["unknown"] == 1
