"""Retraining from feedback: the joined rows before the base data in every format, the gate on
today's rows, provenance, deduplication, and the scheduler's triggers."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from service.cli import main
from service.data import make_houses, write_houses_csv
from service.http import create_app
from service.monitor import Triggers, should_retrain, train_with_feedback
from service.monitor.dataset import write_with_feedback
from service.monitor.join import FeedbackRow, join
from service.monitor.report import store_lookup
from service.store import LocalStore
from service.training import train

pytestmark = pytest.mark.usefixtures("clean_env")

TOKEN = "token-for-the-retrain-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def setup(tmp_path):
    write_houses_csv(tmp_path / "houses.csv", 600, seed=1)
    store = LocalStore(tmp_path / "models")
    first = train(store, tmp_path / "houses.csv", target="price")
    app = create_app({"model_dir": tmp_path / "models", "log_dir": tmp_path / "logs",
                      "api_token": TOKEN})
    return tmp_path, store, first, app.test_client()


def shifted(client, n: int, seed: int, factor: float = 1.5, batch: int = 500) -> np.ndarray:
    """Predict ``n`` fresh rows and send feedback from a market whose prices rose."""
    X, y, names = make_houses(n, seed=seed)
    rows = [dict(zip(names, r, strict=True)) for r in X.tolist()]
    for i in range(0, n, batch):
        ids = client.post("/predict", json={"instances": rows[i:i + batch]}).get_json()[
            "prediction_ids"]
        items = [{"prediction_id": p, "actual": float(a) * factor}
                 for p, a in zip(ids, y[i:i + batch], strict=True)]
        assert client.post("/feedback", json={"feedback": items}, headers=AUTH).status_code == 202
    return y * factor


def test_a_model_trained_with_feedback_fits_todays_prices_and_is_promoted(setup) -> None:
    tmp, store, first, client = setup
    shifted(client, 2000, seed=5)
    result = train_with_feedback(store, tmp / "houses.csv", tmp / "logs", target="price")
    assert result.promoted, result.reason
    assert "recent (feedback) rows" in result.reason
    manifest = store.get(result.version)
    sources = manifest["data"]["sources"]
    assert sources == [
        {"source": "houses.csv", "rows": 600},
        {"source": "feedback", "rows": 2000, "log_dir": str(tmp / "logs"),
         "predicted_rows": 2000, "labelled_rows": 0}]
    assert manifest["data"]["rows"] == 2600
    recent = result.metrics["recent_holdout"]
    assert recent["rows"] >= 300  # about a fifth of the feedback rows are held out
    assert recent["rmse"] < 0.5 * result.metrics["active_recent_holdout"]["rmse"]
    # On fresh data from today's market it beats the old model by far.
    X, y, _ = make_houses(5000, seed=99)
    new, _ = store.load(result.version)
    old, _ = store.load(first.version)
    new_rmse = np.sqrt(np.mean((new.predict(X) - 1.5 * y) ** 2))
    old_rmse = np.sqrt(np.mean((old.predict(X) - 1.5 * y) ** 2))
    assert new_rmse < 0.5 * old_rmse


def test_the_last_value_per_id_wins_and_labelled_rows_come_too(setup) -> None:
    tmp, store, _, client = setup
    row = {"sqft": 1500.0, "bedrooms": 3.0, "bathrooms": 2.0, "age_years": 20.0}
    pid = client.post("/predict", json={"features": row}).get_json()["prediction_id"]
    for actual in (100.0, 200.0, 300.0):
        client.post("/feedback", json={"prediction_id": pid, "actual": actual}, headers=AUTH)
    client.post("/feedback", json={"features": dict(row, sqft=999.0), "actual": 5.0},
                headers=AUTH)
    joined = join(tmp / "logs", store_lookup(store), collect_rows=True)
    by_id = {r.prediction_id: r for r in joined.rows}
    assert len(joined.rows) == 2 and by_id[pid].actual == 300.0
    assert by_id[pid].features == row and by_id[None].features["sqft"] == 999.0


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl", "parquet"])
def test_feedback_rows_go_before_the_base_data_in_its_format(tmp_path, fmt) -> None:
    X, y, names = make_houses(50, seed=3)
    frame = pl.DataFrame({**{n: X[:, j] for j, n in enumerate(names)}, "price": y,
                          "note": ["x"] * 50})
    base = tmp_path / f"base.{fmt}"
    if fmt == "csv.gz":
        base.write_bytes(gzip.compress(frame.write_csv().encode()))
    elif fmt == "csv":
        base.write_text(frame.write_csv())
    elif fmt == "jsonl":
        frame.write_ndjson(base)
    else:
        frame.write_parquet(base)
    rows = [FeedbackRow({"sqft": 1234.5, "bedrooms": 2, "bathrooms": None,
                         "age_years": 7, "price": -1}, 999.0, "p.0", 1.0),
            FeedbackRow({"sqft": 10.0, "bedrooms": 1, "bathrooms": 1.5, "age_years": 1},
                        888.0, None, 2.0)]
    out = write_with_feedback(base, rows, "price", tmp_path / "out")
    read = {"parquet": pl.read_parquet, "jsonl": pl.read_ndjson}.get(
        out.suffix.lstrip("."), pl.read_csv)(out)
    assert read.height == 52
    assert read["price"].to_list()[:2] == [999.0, 888.0]  # the actual value, not the row's
    assert read["sqft"].to_list()[:2] == [1234.5, 10.0]
    assert read["bathrooms"].to_list()[0] is None
    assert read["note"].to_list()[:3] == [None, None, "x"]  # a column the model did not read
    assert read["sqft"].to_list()[2:] == pytest.approx(X[:, 0].tolist())


def test_with_no_feedback_the_base_data_trains_and_says_so(setup) -> None:
    tmp, store, _, _ = setup
    result = train_with_feedback(store, tmp / "houses.csv", tmp / "logs", target="price",
                                 force=True)
    assert store.get(result.version)["data"]["sources"][1]["rows"] == 0
    assert "recent_holdout" not in result.metrics


def test_the_cli_trains_with_feedback(setup, capsys) -> None:
    tmp, store, _, client = setup
    shifted(client, 1000, seed=6)
    code = main(["train", "--data", str(tmp / "houses.csv"), "--target", "price",
                 "--with-feedback", "--model-dir", str(tmp / "models"),
                 "--log-dir", str(tmp / "logs"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["promoted"] and result["metrics"]["recent_holdout"]["rows"] > 100
    code = main(["train", "--data", str(tmp / "houses.csv"), "--target", "price",
                 "--with-feedback", "--model-dir", str(tmp / "models"),
                 "--log-dir", str(tmp / "nowhere")])
    assert code == 2 and "log directory" in capsys.readouterr().err
    code = main(["train", "--data", str(tmp / "houses.csv"), "--target", "bedrooms",
                 "--with-feedback", "--model-dir", str(tmp / "models"),
                 "--log-dir", str(tmp / "logs")])
    err = capsys.readouterr().err
    assert code == 2 and "feedback holds actual values of 'price'" in err


# -- when a scheduled run retrains ---------------------------------------------------------------


def test_triggers_wait_for_new_rows_drift_or_live_rmse(setup) -> None:
    tmp, store, _, client = setup
    logs = tmp / "logs"
    waiting = Triggers(min_new_rows=500)
    go, why, _ = should_retrain(store, logs, waiting, window=None, level=0.9)
    assert not go and why == "not retraining: 0 of 500 new feedback rows"
    shifted(client, 600, seed=7, factor=1.0)  # same market: only the row count moves
    go, why, report = should_retrain(store, logs, waiting, window=None, level=0.9)
    assert go and why.startswith("600 new feedback rows since the active version was trained")
    assert report["feedback"]["new_rows"] == 600
    quality = Triggers(on_drift=0.25, on_rmse=1.25)
    go, why, _ = should_retrain(store, logs, quality, window=None, level=0.9)
    assert not go and "no feature's PSI >= 0.25" in why and "(< 1.25x)" in why
    shifted(client, 3000, seed=8, factor=1.6)
    go, why, _ = should_retrain(store, logs, quality, window=None, level=0.9)
    assert go and "live RMSE" in why and "the holdout's" in why
    X, _, names = make_houses(6000, seed=9)
    X[:, 0] *= 2  # houses twice as big, more of them than all before: drift on sqft
    client.post("/predict", json={"instances": [dict(zip(names, r, strict=True))
                                                for r in X.tolist()]})
    go, why, _ = should_retrain(store, logs, Triggers(on_drift=0.25), window=None, level=0.9)
    assert go and why.startswith("drift on sqft")
    with pytest.raises(ValueError, match="--min-new-rows must be >= 1"):
        Triggers(min_new_rows=0)


def test_a_scheduled_run_with_feedback_skips_then_promotes(setup, capsys) -> None:
    tmp, store, first, client = setup
    argv = ["schedule", "--data", str(tmp / "houses.csv"), "--target", "price", "--every",
            "1h", "--max-runs", "1", "--with-feedback", "--min-new-rows", "1000", "--on-rmse",
            "--model-dir", str(tmp / "models"), "--log-dir", str(tmp / "logs")]
    assert main(argv) == 0
    run = [json.loads(line) for line in capsys.readouterr().out.splitlines()][1]
    assert run["status"] == "skipped" and "0 of 1000 new feedback rows" in run["outcome"][
        "reason"]
    shifted(client, 1500, seed=10)
    assert main(argv) == 0
    run = [json.loads(line) for line in capsys.readouterr().out.splitlines()][1]
    assert run["status"] == "promoted", run
    assert "1500 new feedback rows" in run["outcome"]["trigger"]
    assert store.active_version() == run["outcome"]["version"] != first.version
