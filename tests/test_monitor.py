"""The join and the monitoring report: live quality against the holdout, interval coverage,
drift per feature (numeric deciles, categorical levels, unseen and missing shares), windows,
the cache, /monitoring, /metrics and ``sgdserve monitor``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_tabular import house_frame, rows_as_json

from service.data import make_houses, write_houses_csv
from service.engine import NumericReference, psi
from service.http import create_app
from service.monitor.report import REPORT_FILE, compute_report, read_report
from service.store import LocalStore
from service.training import train

from helpers import child_env

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "token-for-the-monitor-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def house_rows(n: int, seed: int, sqft_scale: float = 1.0) -> tuple[list[dict], np.ndarray]:
    X, y, names = make_houses(n, seed=seed)
    X[:, 0] *= sqft_scale
    return [dict(zip(names, r, strict=True)) for r in X.tolist()], y


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monitor")
    write_houses_csv(tmp / "houses.csv", 5000, seed=1)
    store = LocalStore(tmp / "models")
    result = train(store, tmp / "houses.csv", target="price")
    return tmp, store, result


@pytest.fixture
def app(houses, tmp_path):
    tmp, _, _ = houses
    return create_app({"model_dir": tmp / "models", "log_dir": tmp_path / "logs",
                       "api_token": TOKEN, "monitor_refresh": 3600})


def predict_and_feed(client, rows, actual, batch: int = 500) -> list[str]:
    ids = []
    for i in range(0, len(rows), batch):
        answer = client.post("/predict", json={"instances": rows[i:i + batch]}).get_json()
        ids.extend(answer["prediction_ids"])
    for i in range(0, len(ids), 1000):
        items = [{"prediction_id": p, "actual": float(a)}
                 for p, a in zip(ids[i:i + 1000], actual[i:i + 1000], strict=True)]
        assert client.post("/feedback", json={"feedback": items}, headers=AUTH).status_code == 202
    return ids


# -- the numbers --------------------------------------------------------------------------------


def test_psi_is_zero_for_the_reference_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    train_values = rng.normal(0, 1, 50_000)
    ref = NumericReference.from_values(train_values)
    assert len(ref.cuts) == 9 and sum(ref.shares) == pytest.approx(1.0)
    assert ref.psi(rng.normal(0, 1, 20_000)) < 0.01
    assert 0.1 < ref.psi(rng.normal(0.5, 1, 20_000)) < 0.25 < ref.psi(rng.normal(1, 1, 20_000))
    # A hand computation over two bins.
    assert psi(np.array([0.5, 0.5]), np.array([80, 20])) == pytest.approx(
        (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5))


def test_deciles_of_a_feature_with_few_values_keep_exact_shares() -> None:
    values = np.array([1.0] * 70 + [2.0] * 20 + [3.0] * 10)
    ref = NumericReference.from_values(values)
    assert len(ref.cuts) < 9 and list(ref.cuts) == sorted(set(ref.cuts))  # ties collapse
    # The shares are counted with the same bins the live values go into: exact, not 10% each.
    assert ref.counts(values).tolist() == [round(s * 100) for s in ref.shares]
    assert ref.psi(np.array([1.0] * 7 + [2.0] * 2 + [3.0])) == pytest.approx(0.0, abs=1e-9)


def test_live_quality_coverage_and_drift_for_unchanged_data(app, houses) -> None:
    _, store, result = houses
    client = app.test_client()
    rows, y = house_rows(4000, seed=77)
    predict_and_feed(client, rows, y)
    report = client.get("/monitoring").get_json()
    assert report["model_version"] == result.version and report["active"] is True
    assert report["predictions"] == report["rows_with_feedback"] == 4000
    holdout = result.metrics["holdout"]
    assert report["holdout"]["rmse"] == pytest.approx(holdout["rmse"])
    assert report["live"]["rmse"] == pytest.approx(holdout["rmse"], rel=0.1)
    assert report["interval_coverage"]["level"] == 0.9
    assert 0.87 <= report["interval_coverage"]["observed"] <= 0.93
    for name, d in report["drift"].items():
        assert d["psi"] < 0.05 and d["status"] == "ok", name
        assert d["missing_share"] == 0.0 and d["unseen_share"] < 0.01
    assert report["alerts"] == []


def test_a_price_shift_and_a_feature_shift_are_seen(app) -> None:
    client = app.test_client()
    rows, y = house_rows(3000, seed=78, sqft_scale=1.5)  # bigger houses...
    predict_and_feed(client, rows, y * 1.4)  # ...and prices 40% up
    report = client.get("/monitoring").get_json()
    assert report["live"]["rmse"] > 1.25 * report["holdout"]["rmse"]
    assert report["interval_coverage"]["observed"] < 0.75
    assert report["drift"]["sqft"]["psi"] > 0.25 and report["drift"]["sqft"]["status"] == "act"
    assert report["drift"]["sqft"]["unseen_share"] > 0.03  # beyond the training range
    for name in ("bedrooms", "bathrooms", "age_years"):
        assert report["drift"][name]["psi"] < 0.1
    alerts = " | ".join(report["alerts"])
    assert "live RMSE" in alerts and "drift on sqft" in alerts and "intervals covered" in alerts


def test_categorical_drift_unseen_levels_and_missing_values(tmp_path) -> None:
    frame = house_frame(4000, seed=31)
    frame.to_csv(tmp_path / "h.csv", index=False)
    store = LocalStore(tmp_path / "models")
    train(store, tmp_path / "h.csv", target="price")
    app = create_app({"model_dir": tmp_path / "models", "log_dir": tmp_path / "logs",
                      "api_token": TOKEN})
    client = app.test_client()
    same = rows_as_json(house_frame(2000, seed=32))
    assert client.post("/predict", json={"instances": same}).status_code == 200
    report = compute_report(store, tmp_path / "logs", window=None, level=0.9)
    assert report["drift"]["hood"]["psi"] < 0.05 and report["drift"]["hood"]["kind"] == \
        "categorical"
    changed = rows_as_json(house_frame(2000, seed=33))
    for i, row in enumerate(changed):
        row["hood"] = "hood00" if i % 2 else "brand-new-estate"  # one level, or an unseen one
        row["lot"] = None if i % 4 == 0 else row["lot"]  # a quarter missing
    assert client.post("/predict", json={"instances": changed}).status_code == 200
    report = compute_report(store, tmp_path / "logs", window=None, level=0.9)
    hood = report["drift"]["hood"]
    assert hood["unseen_share"] == pytest.approx(0.25, abs=0.01)  # half of the newer half
    assert hood["psi"] > 0.25 and hood["status"] == "act"
    # 8% of lots were empty in the data; a quarter more of the newer half.
    assert report["drift"]["lot"]["missing_share"] == pytest.approx(
        (0.08 + 0.25 + 0.75 * 0.08) / 2, abs=0.02)
    assert report["drift"]["alley"]["missing_share"] > 0.8  # text: null is the empty level


def test_a_window_keeps_only_its_predictions(app, houses) -> None:
    _, store, _ = houses
    client = app.test_client()
    rows, y = house_rows(10, seed=79)
    predict_and_feed(client, rows, y)
    logs = app.extensions["sgdserve"].settings.logs_path
    now = time.time()
    assert compute_report(store, logs, window=60, level=0.9)["predictions"] == 10
    assert compute_report(store, logs, window=60, level=0.9,
                          end=now + 3600)["predictions"] == 0
    assert compute_report(store, logs, window=None, level=0.9,
                          end=now + 3600)["predictions"] == 10


def test_the_report_is_cached_until_refreshed_and_feeds_metrics(app, houses) -> None:
    client = app.test_client()
    logs = app.extensions["sgdserve"].settings.logs_path
    rows, y = house_rows(100, seed=80)
    predict_and_feed(client, rows, y)
    first = client.get("/monitoring").get_json()
    assert read_report(logs)["generated_at"] == first["generated_at"]
    predict_and_feed(client, rows, y)
    assert client.get("/monitoring").get_json()["predictions"] == 100  # cached
    fresh = client.get("/monitoring?refresh=true").get_json()
    assert fresh["predictions"] == 200
    assert client.get("/monitoring?window=all").get_json()["predictions"] == 200
    assert client.get("/monitoring?level=0.8").get_json()["interval_coverage"]["level"] == 0.8
    metrics = client.get("/metrics").data.decode()
    version = fresh["model_version"]
    assert f'sgdserve_rows_with_feedback{{version="{version}"}}' in metrics
    assert f'sgdserve_live_rmse{{version="{version}"}}' in metrics
    assert f'sgdserve_feature_psi{{feature="sqft",version="{version}"}}' in metrics
    assert 'sgdserve_interval_coverage{level="0.8"' in metrics  # the last report written


@pytest.mark.parametrize("query, message", [
    ("window=soon", "window:"), ("level=1", "level must be"), ("level=x", "level must be"),
    ("refresh=maybe", "refresh must be"), ("version=1", "unknown parameter 'version'"),
])
def test_bad_monitoring_parameters_are_a_400(app, query, message) -> None:
    r = app.test_client().get(f"/monitoring?{query}")
    assert r.status_code == 400 and message in r.get_json()["error"]["message"]


def test_a_version_gone_from_the_store_still_has_its_live_numbers(app, houses, tmp_path):
    client = app.test_client()
    rows, y = house_rows(50, seed=81)
    predict_and_feed(client, rows, y)
    logs = app.extensions["sgdserve"].settings.logs_path
    other = LocalStore(tmp_path / "empty-store")
    report = compute_report(other, logs, window=None, level=0.9, write=False)
    (gone,) = report["versions"]
    assert gone["in_store"] is False and gone["rows_with_feedback"] == 50
    assert gone["live"]["rmse"] > 0 and gone["drift"] == {}
    assert not (logs / REPORT_FILE).exists() or read_report(logs)["versions"][0]["in_store"]


def test_torn_lines_are_counted_and_never_stop_the_join(app, houses) -> None:
    _, store, _ = houses
    client = app.test_client()
    rows, y = house_rows(20, seed=82)
    predict_and_feed(client, rows, y, batch=10)
    logs = app.extensions["sgdserve"].settings.logs_path
    for path in sorted(logs.glob("*.jsonl")):
        with path.open("ab") as f:
            f.write(b'{"id": "torn", "t": 1.0, "v":')  # a worker killed mid-write
    report = compute_report(store, logs, window=None, level=0.9)
    assert report["rows_with_feedback"] == 20
    assert report["logs"]["predictions"]["torn_lines"] == 1
    assert report["logs"]["feedback"]["torn_lines"] == 1


@pytest.mark.slow
def test_sgdserve_monitor_prints_the_same_json_as_get_monitoring(app, houses) -> None:
    tmp, _, _ = houses
    client = app.test_client()
    rows, y = house_rows(200, seed=83)
    predict_and_feed(client, rows, y)
    logs = app.extensions["sgdserve"].settings.logs_path
    web = client.get("/monitoring?refresh=1").get_json()
    cli = subprocess.run(
        [sys.executable, "-m", "service.cli", "monitor", "--json", "--model-dir",
         str(tmp / "models"), "--log-dir", str(logs)],
        capture_output=True, text=True, env=child_env(), timeout=120)
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    for report in (web, printed):
        for key in ("generated_at", "generated_unix", "window"):
            report.pop(key)
    assert printed == web
    text = subprocess.run(
        [sys.executable, "-m", "service.cli", "monitor", "--model-dir", str(tmp / "models"),
         "--log-dir", str(logs)], capture_output=True, text=True, env=child_env(), timeout=120)
    assert text.returncode == 0, text.stderr
    assert "with feedback 200" in text.stdout and "sqft" in text.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "service.cli", "monitor", "--model-dir", str(tmp / "models"),
         "--log-dir", str(Path(logs) / "nope")], capture_output=True, text=True,
        env=child_env(), timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "log directory" in missing.stderr and "does not exist" in missing.stderr
