"""The Dask engine on a real cluster: LocalCluster(n_workers=2, processes=True) on 127.0.0.1.

One cluster serves the module (as dask.distributed's own tests keep one LocalCluster per module
and a client per test); its workers get the loopback S3 server's variables when they start.
Every test here starts processes, so all are marked slow; data is kept small.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from service import cluster as cluster_module
from service.cluster import DaskEngine
from service.data import EncodingOptions, load
from service.errors import ClusterError, DataError
from service.store import LocalStore
from service.training import train

from helpers import child_env, free_port

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_env")]

FEATURES = 8


@pytest.fixture(scope="module")
def dask_cluster(s3_server):
    env = {"AWS_ENDPOINT_URL": s3_server.endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with cluster_module.environ_kept(), distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", env=env, silence_logs=40) as cluster:
        yield cluster


@pytest.fixture
def client(dask_cluster):
    with distributed.Client(dask_cluster) as client:
        client.wait_for_workers(2, timeout=60)
        yield client


def regression_frame(n: int, seed: int = 0, levels: bool = False) -> pl.DataFrame:
    """Badly scaled features, each moving y by 2 to 10 per standard deviation (noise 1): every
    coefficient is well determined, so a relative tolerance on each one means something."""
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.uniform(-1, 3, FEATURES)
    X = rng.standard_normal((n, FEATURES)) * scale + rng.normal(0, 3, FEATURES) * scale
    effect = rng.choice([-1.0, 1.0], FEATURES) * rng.uniform(2, 10, FEATURES)
    y = X @ (effect / scale) + 40.0 + rng.normal(0, 1.0, n)
    frame = pl.DataFrame({f"x{j}": X[:, j] for j in range(FEATURES)})
    if levels:
        rng = np.random.default_rng(seed)
        zone = rng.choice(["a", "b", "c", "d"], n)
        y = y + np.select([zone == "a", zone == "b", zone == "c"], [5.0, -3.0, 1.0], 0.0)
        frame = frame.with_columns(pl.Series("zone", zone))
    return frame.with_columns(pl.Series("y", y))


def write_parts(frame: pl.DataFrame, folder: Path, parts: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, frame.height, parts + 1).astype(int)
    for i in range(parts):
        frame.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])).write_parquet(
            folder / f"part-{i:02d}.parquet")
    return folder


def fit(client, data, store_dir: Path, **kw):
    store = LocalStore(store_dir)
    result = train(store, data, target="y", engine=DaskEngine(client=client), **kw)
    return result, store.get(result.version)


def test_parameter_mixing_reaches_lstsq_on_the_same_rows(client, tmp_path: Path) -> None:
    data = write_parts(regression_frame(48_000), tmp_path / "data", 4)
    result, manifest = fit(client, data, tmp_path / "m", params={"tol": 1e-4})
    rows = load(data, "y", EncodingOptions(), fraction=0.2, seed=0)
    A = np.column_stack([rows.train.X, np.ones(len(rows.train))])
    solution = np.linalg.lstsq(A, rows.train.y, rcond=None)[0]
    coef = np.array([result.coefficients[f"x{j}"] for j in range(FEATURES)])
    np.testing.assert_allclose(coef, solution[:-1], rtol=1e-3)
    best = np.column_stack([rows.holdout.X, np.ones(len(rows.holdout))]) @ solution
    lstsq_mse = float(np.mean((rows.holdout.y - best) ** 2))
    assert result.metrics["holdout"]["rmse"] ** 2 <= 1.001 * lstsq_mse
    assert result.metrics["holdout"]["rows"] == len(rows.holdout)
    engine = manifest["engine"]
    assert engine["name"] == "dask" and engine["partitions"] == 4 and engine["workers"] == 2
    assert engine["rounds"] == engine["epochs"] == result.epochs < 100
    assert set(engine["seconds"]) == {"statistics", "scaler", "rounds", "overhead", "evaluation"}
    assert manifest["data"]["files"] == 4 and manifest["split"]["streamed"] is False


@pytest.mark.parametrize("params, levels", [({}, False), ({"early_stopping": True}, True)])
def test_one_partition_reproduces_the_local_trainer(client, tmp_path: Path, params: dict,
                                                    levels: bool) -> None:
    path = tmp_path / "one.parquet"
    regression_frame(12_000, seed=3, levels=levels).write_parquet(path)
    local = train(LocalStore(tmp_path / "local"), path, target="y", params=params)
    dask, manifest = fit(client, path, tmp_path / "dask", params=params)
    assert dask.coefficients == local.coefficients
    assert dask.intercept == local.intercept
    assert dask.metrics == local.metrics
    assert dask.levels == local.levels
    assert dask.epochs == local.epochs
    local_manifest = LocalStore(tmp_path / "local").get(local.version)
    for key in ("data", "loss_history", "holdout_sample", "inferred", "coefficients"):
        assert manifest[key] == local_manifest[key], key
    assert manifest["engine"]["partitions"] == 1


def test_a_fixed_partitioning_gives_the_same_model_every_time(client, tmp_path: Path) -> None:
    data = write_parts(regression_frame(20_000, seed=1, levels=True), tmp_path / "d", 3)
    first, _ = fit(client, data, tmp_path / "a")
    second, _ = fit(client, data, tmp_path / "b")
    assert second.coefficients == first.coefficients
    assert second.levels == first.levels
    assert second.metrics == first.metrics
    other_seed, _ = fit(client, data, tmp_path / "c", seed=5)
    assert other_seed.coefficients != first.coefficients


def test_a_worker_killed_mid_fit_still_gives_the_model(client, tmp_path: Path) -> None:
    data = write_parts(regression_frame(24_000, seed=2), tmp_path / "d", 4)
    undisturbed, _ = fit(client, data, tmp_path / "a", params={"tol": None, "max_iter": 8})
    before = client.run(os.getpid)
    killed: list[int] = []

    def kill_at_the_third_round(phase: str, done: int, total: int) -> None:
        if phase == "epoch" and done == 2 and not killed:
            holders = client.has_what()
            victim = max(holders, key=lambda w: len(holders[w]))  # the one holding most
            assert holders[victim], "the worker killed holds partitions"
            os.kill(before[victim], signal.SIGKILL)
            killed.append(before[victim])

    result, manifest = fit(client, data, tmp_path / "b", params={"tol": None, "max_iter": 8},
                           progress=kill_at_the_third_round)
    assert killed
    assert result.coefficients == undisturbed.coefficients  # every task is deterministic
    assert result.metrics == undisturbed.metrics
    assert manifest["engine"]["rounds"] == 8
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.run(os.getpid).values()  # the nanny started a new one


def test_an_s3_parquet_dataset_on_the_moto_server(client, s3, tmp_path: Path) -> None:
    frame = regression_frame(15_000, seed=4, levels=True)
    local = write_parts(frame, tmp_path / "d", 3)
    for part in sorted(local.iterdir()):
        s3.client().put_object(Bucket=s3.bucket, Key=f"houses/{part.name}",
                               Body=part.read_bytes())
    url = f"s3://{s3.bucket}/houses/"
    remote, manifest = fit(client, url, tmp_path / "a")
    on_disk, _ = fit(client, local, tmp_path / "b")
    assert remote.coefficients == on_disk.coefficients
    assert manifest["data"]["file"] == url and manifest["data"]["files"] == 3
    assert manifest["data"]["rows"] == 15_000
    local_engine = train(LocalStore(tmp_path / "c"), url, target="y")
    assert remote.metrics["holdout"]["rmse"] == pytest.approx(
        local_engine.metrics["holdout"]["rmse"], rel=1e-3)


def test_a_bad_value_on_a_worker_names_the_file_and_line(client, tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    frame = regression_frame(300)
    frame.head(150).write_csv(folder / "a.csv")
    text = io.StringIO()
    frame.tail(150).write_csv(text)
    lines = text.getvalue().splitlines()
    lines[4] = "oops" + lines[4][lines[4].index(","):]
    (folder / "b.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"^b.csv: column 'x0', line 5: 'oops' is not a number"
                       ) as caught:
        fit(client, folder, tmp_path / "m")
    assert caught.value.line == 5 and caught.value.column == "x0"
    assert LocalStore(tmp_path / "m").version_ids() == []  # nothing half-written


def test_a_local_cluster_leaves_the_environment_as_it_was(tmp_path: Path) -> None:
    before = dict(os.environ)
    path = tmp_path / "one.parquet"
    regression_frame(300).write_parquet(path)
    train(LocalStore(tmp_path / "m"), path, target="y", engine=DaskEngine(workers=1))
    assert dict(os.environ) == before  # no MALLOC_TRIM_THRESHOLD_ or OMP_NUM_THREADS left


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1)
    address = f"tcp://127.0.0.1:{free_port()}"
    path = tmp_path / "one.parquet"
    regression_frame(200).write_parquet(path)
    with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at {address}"):
        train(LocalStore(tmp_path / "m"), path, target="y", engine=DaskEngine(scheduler=address))
    with pytest.raises(ValueError, match="give --scheduler or --workers, not both"):
        DaskEngine(scheduler=address, workers=2)


def test_the_cli_trains_on_a_local_cluster_and_records_the_engine(tmp_path: Path) -> None:
    data = write_parts(regression_frame(6000, seed=6), tmp_path / "d", 3)
    models = tmp_path / "models"
    command = [sys.executable, "-m", "service.cli", "train", "--engine", "dask", "--workers",
               "2", "--data", str(data), "--target", "y", "--model-dir", str(models), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=240)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["promoted"] is True
    assert answer["engine"]["name"] == "dask" and answer["engine"]["partitions"] == 3
    assert answer["engine"]["workers"] == 2
    assert answer["engine"]["scheduler"].startswith("tcp://127.0.0.1:")
    manifest = LocalStore(models).get(answer["version"])
    assert manifest["engine"] == answer["engine"]
    assert done.stderr == ""  # nothing from the cluster's logs

    refused = subprocess.run([*command[:-1], "--scheduler", "tcp://127.0.0.1:1"],
                             capture_output=True, text=True, env=child_env(), timeout=60)
    assert refused.returncode == 2
    assert refused.stderr == ("sgdserve train: error: give --scheduler or --workers, not both: "
                              "--workers starts a local cluster, --scheduler joins one\n")
    local = subprocess.run([sys.executable, "-m", "service.cli", "train", "--workers", "2",
                            "--data", str(data), "--target", "y", "--model-dir", str(models)],
                           capture_output=True, text=True, env=child_env(), timeout=60)
    assert local.returncode == 2
    assert local.stderr == "sgdserve train: error: --workers needs --engine dask\n"


def test_the_cli_refuses_a_bad_address_and_an_empty_glob_in_one_line(tmp_path: Path) -> None:
    data = write_parts(regression_frame(300, seed=7), tmp_path / "d", 2)
    base = [sys.executable, "-m", "service.cli", "train", "--engine", "dask", "--target", "y",
            "--model-dir", str(tmp_path / "models")]
    cases = {
        "nonsense": "sgdserve train: error: bad Dask scheduler address 'nonsense' (write "
                    "tcp://HOST:PORT): missing port number in address 'nonsense'\n",
        "ftp://127.0.0.1:1": "sgdserve train: error: bad Dask scheduler address "
                             "'ftp://127.0.0.1:1' (write tcp://HOST:PORT): unknown address "
                             "scheme 'ftp'",
    }
    for address, expected in cases.items():
        done = subprocess.run([*base, "--scheduler", address, "--data", str(data)],
                              capture_output=True, text=True, env=child_env(), timeout=60)
        assert done.returncode == 2
        assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr
    pattern = str(tmp_path / "d" / "*.csv")
    empty = subprocess.run([*base, "--workers", "1", "--data", pattern],
                           capture_output=True, text=True, env=child_env(), timeout=60)
    assert empty.returncode == 2
    assert empty.stderr == f"sgdserve train: error: no data files match {pattern!r}\n"
    assert not (tmp_path / "models").exists() or LocalStore(tmp_path / "models").version_ids() == []


def test_training_with_feedback_is_refused_on_dask_in_one_line(tmp_path: Path) -> None:
    data = write_parts(regression_frame(300, seed=7), tmp_path / "d", 2)
    base = [sys.executable, "-m", "service.cli", "train", "--target", "y", "--with-feedback",
            "--model-dir", str(tmp_path / "models"), "--log-dir", str(tmp_path)]
    on_dask = subprocess.run([*base, "--engine", "dask", "--workers", "1", "--data",
                              str(data / "*.csv")],
                             capture_output=True, text=True, env=child_env(), timeout=60)
    assert on_dask.returncode == 2
    assert on_dask.stderr == ("sgdserve train: error: --with-feedback runs on the local engine; "
                              "leave out --engine dask\n")
    many = subprocess.run([*base, "--data", str(data)],
                          capture_output=True, text=True, env=child_env(), timeout=60)
    assert many.returncode == 2
    assert many.stderr == ("sgdserve train: error: --with-feedback needs one local --data file "
                           "(the base data the feedback rows are added to)\n")
    assert not (tmp_path / "models").exists() or LocalStore(tmp_path / "models").version_ids() == []


def test_a_dask_trained_model_refuses_an_interval_by_name(client, tmp_path: Path) -> None:
    from service.http.app import create_app

    data = write_parts(regression_frame(2_000, seed=3), tmp_path / "d", 2)
    _, manifest = fit(client, data, tmp_path / "models")
    assert manifest["calibration"] is None
    model = LocalStore(tmp_path / "models").active()[1]
    row = dict.fromkeys(model.feature_names, 1.0)
    client = create_app({"model_dir": tmp_path / "models",
                         "log_dir": tmp_path / "logs"}).test_client()
    assert client.post("/predict", json={"features": row}).status_code == 200
    r = client.post("/predict", json={"features": row, "interval": 0.9})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "interval_unavailable"
    assert "Dask engine" in r.get_json()["error"]["message"]
