"""POST /retrain and GET /retrain/<job_id>: the three input forms, ?wait, 409, job files."""

from __future__ import annotations

import io
import time

import numpy as np
import orjson
import pytest

from service import retrain as jobs
from service.data import make_houses, write_houses_csv
from service.engine import LinearModel
from service.http import create_app
from service.params import TrainingSpec, parse_training_params
from service.store import LocalStore

TOKEN = "jobs-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEATURES = ("sqft", "bedrooms", "bathrooms", "age_years")


pytestmark = pytest.mark.usefixtures("clean_env")  # tests/conftest.py


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path / "models", "house-price")
    yield store
    # A job's child process may still run: let it finish before tmp_path goes away.
    deadline = time.monotonic() + 60
    while store.is_locked() and time.monotonic() < deadline:
        time.sleep(0.05)


def build(tmp_path, **overrides):
    config = {"model_dir": tmp_path / "models", "reload_interval": 0, "api_token": TOKEN}
    config.update(overrides)
    return create_app(config)


@pytest.fixture
def app(tmp_path, store):
    return build(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def csv_bytes(tmp_path) -> bytes:
    return write_houses_csv(tmp_path / "houses.csv", 2000, seed=1).read_bytes()


def seed_model(store: LocalStore) -> str:
    """An active, deliberately poor model, so any trained candidate is promoted."""
    model = LinearModel.numeric(
        feature_names=FEATURES, target="price", coef=np.zeros(4), intercept=1.0,
        x_mean=np.ones(4), x_scale=np.ones(4), y_mean=0.0, y_scale=1.0,
        coef_std=np.zeros(4), intercept_std=0.0,
    )
    version = store.save(model, {"metrics": {}}, parent=None)
    store.activate(version)
    return version


def wait_final(client, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/retrain/{job_id}")
        assert r.status_code == 200, r.data
        body = r.get_json()
        if body["status"] in ("promoted", "rejected", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


def houses_rows(n: int, seed: int = 2) -> list[dict]:
    X, y, names = make_houses(n, seed=seed)
    return [dict(zip([*names, "price"], [*map(float, x), float(p)], strict=True))
            for x, p in zip(X, y, strict=True)]


# -- the three input forms ----------------------------------------------------------------------


@pytest.mark.slow
def test_retrain_from_a_multipart_upload(client, store, csv_bytes):
    old = seed_model(store)
    r = client.post(
        "/retrain",
        data={"file": (io.BytesIO(csv_bytes), "houses.csv"), "target": "price", "epochs": "20",
              "seed": "3"},
        content_type="multipart/form-data",
        headers=AUTH,
    )
    assert r.status_code == 202, r.data
    body = r.get_json()
    job_id = body["job_id"]
    assert body == {"job_id": job_id, "status": "queued", "status_url": f"/retrain/{job_id}"}
    assert r.headers["Location"].endswith(f"/retrain/{job_id}")
    result = wait_final(client, job_id)
    assert result["status"] == "promoted", result
    assert result["promoted"] is True
    assert result["request"]["target"] == "price"
    assert result["request"]["params"]["max_iter"] == 20
    assert result["metrics"]["holdout"]["r2"] > 0.5
    new = result["version"]
    assert store.active_version() == new != old
    assert store.get(new)["parent"] == old
    predicted = client.post("/predict", json={"features": dict.fromkeys(FEATURES, 2)})
    assert predicted.get_json()["model_version"] == new
    assert not store.jobs.directory(job_id).joinpath(jobs.DATA_FILE).exists()  # upload removed


@pytest.mark.slow
def test_retrain_from_a_csv_body_with_query_parameters_and_wait(client, store, csv_bytes):
    r = client.post(
        "/retrain?target=price&features=sqft,bedrooms,bathrooms,age_years&loss=huber&wait=25",
        data=csv_bytes, content_type="text/csv", headers=AUTH,
    )
    if r.status_code == 202:  # a loaded machine: the job outlived the wait
        result = wait_final(client, r.get_json()["job_id"])
    else:
        assert r.status_code == 200, r.data
        result = r.get_json()
    assert result["status"] == "promoted", result  # the first model is always promoted
    assert result["request"]["features"] == list(FEATURES)
    assert result["request"]["params"]["loss"] == "huber"
    assert store.active_version() == result["version"]
    assert client.get("/model").get_json()["features"] == list(FEATURES)


@pytest.mark.slow
def test_retrain_from_json_rows_takes_the_target_from_the_active_model(client, store):
    seed_model(store)
    r = client.post(
        "/retrain?wait=25", json={"rows": houses_rows(500), "epochs": 30, "force": True},
        headers=AUTH,
    )
    result = r.get_json() if r.status_code == 200 else wait_final(client, r.get_json()["job_id"])
    assert result["status"] == "promoted", result
    assert result["request"]["target"] == "price"
    assert result["request"]["force"] is True
    assert result["request"]["data"]["format"] == "json"


@pytest.mark.slow
def test_a_worse_candidate_is_rejected_with_both_numbers(client, store, csv_bytes):
    r = client.post("/retrain?target=price&wait=25", data=csv_bytes, content_type="text/csv",
                    headers=AUTH)
    good = r.get_json() if r.status_code == 200 else wait_final(client, r.get_json()["job_id"])
    assert good["status"] == "promoted"
    # One epoch with a tiny step barely leaves the starting point: a far worse candidate.
    r = client.post("/retrain?target=price&wait=25&epochs=1&learning_rate=1e-6", data=csv_bytes,
                    content_type="text/csv", headers=AUTH)
    bad = r.get_json() if r.status_code == 200 else wait_final(client, r.get_json()["job_id"])
    assert bad["status"] == "rejected", bad
    assert bad["promoted"] is False
    holdout = bad["metrics"]["holdout"]["rmse"]
    live = bad["metrics"]["active_holdout"]["rmse"]
    assert holdout > live
    assert f"{holdout:,.0f}"[:3] in bad["reason"] or str(round(holdout))[:3] in bad["reason"]
    assert store.active_version() == good["version"]


@pytest.mark.slow
def test_a_failing_job_ends_failed_with_the_reason(client, store):
    data = b"sqft,price\n1000,1\nlots,2\n1200,3\n"
    r = client.post("/retrain?target=price&wait=25", data=data, content_type="text/csv",
                    headers=AUTH)
    result = r.get_json() if r.status_code == 200 else wait_final(client, r.get_json()["job_id"])
    assert result["status"] == "failed"
    assert "lots" in result["reason"] or "sqft" in result["reason"]
    assert store.active_version() is None


# -- 409 ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_retrain_while_one_runs_is_409_naming_the_job(client, store, csv_bytes):
    big = write_houses_csv(store.root.parent / "big.csv", 20_000, seed=4).read_bytes()
    first = client.post("/retrain?target=price&epochs=50", data=big, content_type="text/csv",
                        headers=AUTH)
    assert first.status_code == 202
    job_id = first.get_json()["job_id"]
    # The handler took the lock before answering, so the job holds it now.
    second = client.post("/retrain?target=price", data=csv_bytes, content_type="text/csv",
                         headers=AUTH)
    assert second.status_code == 409
    error = error_of(second)
    assert error == {"code": "retrain_in_progress", "message": f"retrain job {job_id} is running",
                     "job_id": job_id}
    assert wait_final(client, job_id)["status"] == "promoted"


@pytest.mark.parametrize("kind", ["multipart", "csv", "json"])
def test_retrain_is_409_while_a_job_holds_the_lock(client, store, csv_bytes, kind):
    running = store.jobs.new_id()
    held = jobs.acquire_lock(store, running)
    try:
        r = post_retrain(client, kind, csv_bytes)
    finally:
        held.release()
    assert r.status_code == 409
    assert error_of(r)["job_id"] == running
    assert list_job_dirs(store) == []


def test_retrain_is_409_while_the_cli_trains(client, store, csv_bytes):
    with store.lock(owner="sgdserve train"):
        r = post_retrain(client, "csv", csv_bytes)
    assert r.status_code == 409
    error = error_of(r)
    assert error["code"] == "retrain_in_progress"
    assert "sgdserve train" in error["message"]
    assert "job_id" not in error


def post_retrain(client, kind: str, csv_bytes: bytes, query: str = "target=price"):
    if kind == "multipart":
        return client.post(f"/retrain?{query}", data={"file": (io.BytesIO(csv_bytes), "d.csv")},
                           content_type="multipart/form-data", headers=AUTH)
    if kind == "csv":
        return client.post(f"/retrain?{query}", data=csv_bytes, content_type="text/csv",
                           headers=AUTH)
    return client.post(f"/retrain?{query}", json={"rows": houses_rows(10)}, headers=AUTH)


def list_job_dirs(store: LocalStore) -> list[str]:
    """Job directories (uploads) present; finished and refused jobs leave none."""
    return sorted(p.name for p in store.jobs.dir.glob("job-*") if p.is_dir())


# -- validation -----------------------------------------------------------------------------------

BAD_QUERIES = [
    ("epochs=0", "epochs", "epochs must be between 1 and"),
    ("epochs=ten", "epochs", "epochs must be an integer, got 'ten'"),
    ("epochs=1.5", "epochs", "epochs must be an integer"),
    ("learning_rate=-0.1", "learning_rate", "learning_rate must be > 0, got -0.1"),
    ("learning_rate=0", "learning_rate", "learning_rate must be > 0, got 0"),
    ("learning_rate=nan", "learning_rate", "learning_rate must be a finite number"),
    ("batch_size=0", "batch_size", "batch_size must be >= 1, got 0"),
    ("loss=cubic", "loss", "loss must be one of"),
    ("penalty=l3", "penalty", "penalty must be one of"),
    ("alpha=-1", "alpha", "alpha must be >= 0, got -1"),
    ("seed=-1", "seed", "seed must be between 0 and"),
    ("force=maybe", "force", "force must be true or false, got 'maybe'"),
    ("features=", "features", "features must be"),
    ("features=a,a", "features", "features must be unique"),
    ("features=[1,2", "features", "features is not a valid JSON list"),
    ("colour=red", "colour", "unknown parameter 'colour'"),
    ("wait=1000", "wait", "wait must be between 0 and 25"),
    ("wait=-1", "wait", "wait must be between 0 and"),
    ("wait=soon", "wait", "wait must be between 0 and"),
    ("target=nope", "target", "target 'nope' is not a column of the data"),
    ("features=sqft,pool", "features", "feature 'pool' is not a column of the data"),
]


@pytest.mark.parametrize(("query", "parameter", "message"), BAD_QUERIES)
def test_bad_parameters_are_400_naming_the_parameter(client, store, csv_bytes, query, parameter,
                                                     message):
    q = query if query.startswith("target=") else f"target=price&{query}"
    r = post_retrain(client, "csv", csv_bytes, q)
    assert r.status_code == 400, r.data
    error = error_of(r)
    assert error["code"] == "invalid_parameter"
    assert error["parameter"] == parameter
    assert message in error["message"]
    assert list_job_dirs(store) == []
    assert store.is_locked() is None


BAD_JSON = [
    ({"rows": []}, "rows", "'rows' must be a non-empty list"),
    ({"rows": "a,b"}, "rows", "'rows' must be a non-empty list"),
    ({"target": "price"}, "rows", "'rows' must be a non-empty list"),
    ({"rows": [{"a": 1}], "epochs": "10"}, "epochs", "epochs must be an integer, got '10'"),
    ({"rows": [{"a": 1}], "epochs": True}, "epochs", "epochs must be an integer, got True"),
    ({"rows": [{"a": 1}], "force": "yes"}, "force", "force must be true or false"),
    ({"rows": [{"a": 1}], "features": ["a", 3]}, "features", "features must be a non-empty string"),
    ({"rows": [{"a": 1}], "extra": 1}, "extra", "unknown parameter 'extra'"),
    ({"rows": [{"a": 1}]}, "target", "target is required: there is no active model"),
]


@pytest.mark.parametrize(("payload", "parameter", "message"), BAD_JSON)
def test_bad_json_parameters_are_400(client, store, payload, parameter, message):
    r = client.post("/retrain", json=payload, headers=AUTH)
    assert r.status_code == 400, r.data
    error = error_of(r)
    assert error["parameter"] == parameter
    assert message in error["message"]
    assert list_job_dirs(store) == []


def test_inconsistent_json_rows_are_400(client, store):
    rows = [{"sqft": 1, "price": 2}, {"sqft": 1}]
    r = client.post("/retrain", json={"rows": rows, "target": "price"}, headers=AUTH)
    assert r.status_code == 400
    assert error_of(r) == {"code": "invalid_data", "message": "rows[1]: key 'price' is missing"}


def test_a_parameter_given_twice_is_400(client, store, csv_bytes):
    r = client.post("/retrain?epochs=5", json={"rows": houses_rows(5), "target": "price",
                                                "epochs": 6}, headers=AUTH)
    assert r.status_code == 400
    assert "given both in the query and in the body" in error_of(r)["message"]


def test_multipart_without_a_file_is_400(client, store):
    r = client.post("/retrain", data={"target": "price"}, content_type="multipart/form-data",
                    headers=AUTH)
    assert r.status_code == 400
    assert error_of(r)["parameter"] == "file"
    r = client.post("/retrain", data={"file": "sqft,price\n1,2\n"},
                    content_type="multipart/form-data", headers=AUTH)
    assert r.status_code == 400
    assert "must be a file upload" in error_of(r)["message"]
    assert list_job_dirs(store) == []


@pytest.mark.parametrize(
    "data", [b"\x17#\xc3\xb5\r\xc3\x81%8", b'"unterminated,price\n1,2\n', b"\xff\xfe\n1\n"]
)
def test_garbage_data_is_400_not_500(client, store, data):
    r = client.post("/retrain?target=price", data=data, content_type="text/csv", headers=AUTH)
    assert r.status_code == 400, r.data
    assert error_of(r)["code"] in ("invalid_data", "invalid_parameter")
    assert list_job_dirs(store) == []


def test_an_empty_upload_is_400(client, store):
    r = client.post("/retrain?target=price", data=b"", content_type="text/csv", headers=AUTH)
    assert r.status_code == 400
    assert error_of(r)["message"] == "the uploaded data is empty"


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
def test_retrain_refuses_other_content_types(client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    r = client.post("/retrain", data=b"sqft,price\n1,2\n", headers=AUTH, **kwargs)
    assert r.status_code == 415
    assert "multipart/form-data" in error_of(r)["message"]


@pytest.mark.slow
def test_uploads_have_their_own_limit(tmp_path, store, csv_bytes):
    client = build(tmp_path, max_body_bytes=1000, max_upload_bytes=len(csv_bytes) + 1000)
    client = client.test_client()
    seed_model(store)
    # A CSV far over the body limit is fine as an upload...
    r = post_retrain(client, "csv", csv_bytes, "target=price&epochs=1")
    assert r.status_code == 202, r.data
    wait_final(client, r.get_json()["job_id"])
    r = post_retrain(client, "multipart", csv_bytes, "target=price&epochs=1")
    assert r.status_code == 202, r.data
    wait_final(client, r.get_json()["job_id"])
    # ...but not over the upload limit, and JSON rows keep the body limit.
    too_big = csv_bytes + b"\n" * 2000
    for kind in ("csv", "multipart"):
        r = post_retrain(client, kind, too_big)
        assert r.status_code == 413, (kind, r.data)
        assert error_of(r)["code"] == "body_too_large"
    r = client.post("/retrain", json={"rows": houses_rows(50)}, headers=AUTH)
    assert r.status_code == 413
    assert list_job_dirs(store) == []


@pytest.mark.slow
def test_a_multipart_upload_is_written_straight_into_the_job_dir(client, store, csv_bytes,
                                                                 monkeypatch):
    import service.http.app

    made = []
    real = service.http.app.tempfile.NamedTemporaryFile

    def spy(*args, **kwargs):
        made.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(service.http.app.tempfile, "NamedTemporaryFile", spy)
    r = post_retrain(client, "multipart", csv_bytes)
    assert r.status_code == 202
    job_id = r.get_json()["job_id"]
    assert made == [str(store.jobs.dir / job_id)]
    wait_final(client, job_id)


# -- job status -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_job_status_is_read_from_the_file_by_any_worker(tmp_path, store, csv_bytes):
    first = build(tmp_path).test_client()
    other = build(tmp_path).test_client()  # another worker: shares nothing but the disk
    r = post_retrain(first, "csv", csv_bytes)
    job_id = r.get_json()["job_id"]
    result = wait_final(other, job_id)
    record = store.jobs.read(job_id)
    expected = {k: v for k, v in record.items() if k not in ("id", "pid")}
    assert result == {**expected, "job_id": job_id, "status_url": f"/retrain/{job_id}"}
    assert result["status"] == "promoted"


@pytest.mark.parametrize(
    "job_id", ["job-20240101T000000.000000Z-abcdef", "nope", "..", "job-../../etc"]
)
def test_an_unknown_job_is_404(client, store, job_id):
    r = client.get(f"/retrain/{job_id}")
    assert r.status_code == 404
    assert error_of(r)["code"] in ("job_not_found", "not_found")


def test_a_job_whose_process_died_is_reported_failed(client, store):
    job_id = store.jobs.new_id()
    store.jobs.write(job_id, {"status": "running", "request": {}})
    body = client.get(f"/retrain/{job_id}").get_json()
    assert body["status"] == "failed"
    assert "ended without a result" in body["reason"]
    assert store.jobs.read(job_id)["status"] == "failed"


def test_a_running_job_holding_the_lock_is_reported_running(client, store):
    job_id = store.jobs.new_id()
    store.jobs.write(job_id, {"status": "running", "request": {}})
    held = jobs.acquire_lock(store, job_id)
    try:
        assert client.get(f"/retrain/{job_id}").get_json()["status"] == "running"
    finally:
        held.release()


@pytest.mark.slow
def test_finished_jobs_are_counted_in_metrics(client, store, csv_bytes):
    r = post_retrain(client, "csv", csv_bytes)
    wait_final(client, r.get_json()["job_id"])
    deadline = time.monotonic() + 10  # the reaper thread counts it once the child exits
    while time.monotonic() < deadline:
        text = client.get("/metrics").data.decode()
        if 'sgdserve_retrain_jobs_total{outcome="promoted"} 1.0' in text:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(text)


# -- parameters (unit) ----------------------------------------------------------------------------


def test_parse_params_maps_names_onto_the_regressor():
    spec = parse_training_params(
        {"target": "price", "features": '["a", "b"]', "epochs": "7", "eta0": "0.5",
         "learning_rate": "constant", "batch_size": "64", "loss": "huber", "penalty": "none",
         "alpha": "0", "seed": "9", "force": "yes"},
        typed=False,
    )
    assert (spec.target, spec.features, spec.force, spec.seed) == ("price", ["a", "b"], True, 9)
    assert spec.sgd == {"max_iter": 7, "eta0": 0.5, "learning_rate": "constant",
                        "batch_size": 64, "loss": "huber", "penalty": "none", "alpha": 0.0}
    record = orjson.loads(orjson.dumps(spec.to_dict()))  # stored in the job file as JSON
    assert TrainingSpec.from_dict(record) == spec


def test_a_training_process_that_cannot_start_is_503_and_releases_the_lock(
    client, store, csv_bytes, monkeypatch
):
    def no_fork(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(jobs.subprocess, "Popen", no_fork)
    r = post_retrain(client, "csv", csv_bytes)
    assert r.status_code == 503
    error = error_of(r)
    assert error["code"] == "unavailable"
    assert "Resource temporarily unavailable" in error["message"]
    assert store.jobs.read(error["job_id"])["status"] == "failed"
    assert store.is_locked() is None
    assert list_job_dirs(store) == []


@pytest.mark.slow
def test_a_job_that_has_finished_but_not_yet_exited_does_not_block_the_next(
    client, store, csv_bytes
):
    import threading

    done = store.jobs.new_id()
    store.jobs.write(done, {"status": "promoted", "request": {}})
    held = jobs.acquire_lock(store, done)  # its process is still exiting
    threading.Timer(0.3, held.handed_over).start()  # closed, its holder record still there
    r = post_retrain(client, "csv", csv_bytes)
    assert r.status_code == 202, r.data
    wait_final(client, r.get_json()["job_id"])


@pytest.mark.slow
def test_the_old_spelling_of_the_step_size_is_read_and_noted(client, store):
    r = client.post("/retrain?learning_rate=0.02", headers=AUTH, json={
        "rows": houses_rows(300), "target": "price", "epochs": 5})
    assert r.status_code == 202, r.data
    note = ("learning_rate=0.02 is the old spelling of eta0=0.02; learning_rate now names the "
            "schedule (constant, invscaling, adaptive)")
    assert r.get_json()["notes"] == [note]
    result = wait_final(client, r.get_json()["job_id"])
    assert result["request"]["params"] == {"eta0": 0.02, "max_iter": 5}
    assert result["request"]["notes"] == [note]
    assert store.get(result["version"])["hyperparameters"]["eta0"] == 0.02
