"""Explanations: each feature's contribution, in target units, summing with the base value to
the prediction; numeric features (with gaps), categorical ones, a log model; over HTTP too."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_tabular import house_frame, rows_as_json, skewed_frame

from service.data import write_houses_csv
from service.http import create_app
from service.store import LocalStore
from service.training import train

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A model with numeric features (two with gaps: missing indicators), a boolean and three
    categorical ones."""
    tmp = tmp_path_factory.mktemp("explain")
    frame = house_frame(4000, seed=13)
    frame.to_csv(tmp / "houses.csv", index=False)
    store = LocalStore(tmp / "models")
    result = train(store, tmp / "houses.csv", target="price")
    model, _ = store.load(result.version)
    return tmp, frame, model


def test_contributions_sum_with_the_base_value_to_every_prediction(tabular) -> None:
    _, frame, model = tabular
    rows = rows_as_json(frame.head(500))
    columns = [[row[name] for row in rows] for name in model.feature_names]
    encoded = model.encode(columns)
    predicted = model.predict_design(encoded.values, encoded.codes)
    explainer = model.explainer()
    parts = explainer.explain(encoded.values, encoded.codes)
    assert list(parts) == list(model.feature_names)
    total = explainer.base_value + sum(np.asarray(v) for v in parts.values())
    assert np.allclose(total, predicted, rtol=1e-12, atol=1e-6)
    for row, p in zip(rows[:50], predicted[:50], strict=True):  # one row at a time, too
        one = model.encode([row[name] for name in model.feature_names])
        answer = explainer.row(one.values, one.codes)
        assert answer["base_value"] + math.fsum(answer["contributions"].values()) == \
            pytest.approx(p, rel=1e-12)


def test_a_categorical_feature_contributes_its_levels_weight_less_the_average(tabular) -> None:
    _, frame, model = tabular
    feature = next(f for f in model.schema.features if f.name == "style")
    weights = [model.level_weights()["style"][lv] for lv in feature.levels]
    counts = np.array(feature.counts, dtype=float)
    other = model.level_weights()["style"]["(other)"]
    average = (counts @ np.array(weights) + feature.other_count * other) / (
        counts.sum() + feature.other_count)
    row = rows_as_json(frame.head(1))[0]
    for level in feature.levels:
        row["style"] = level
        one = model.encode([row[name] for name in model.feature_names])
        got = model.explainer().row(one.values, one.codes)["contributions"]["style"]
        assert got == pytest.approx(model.level_weights()["style"][level] - average, abs=1e-6)
    # An unseen level takes "other"'s weight, less the same average.
    row["style"] = "Castle"
    one = model.encode([row[name] for name in model.feature_names])
    got = model.explainer().row(one.values, one.codes)["contributions"]["style"]
    assert got == pytest.approx(other - average, abs=1e-6)


def test_a_numeric_feature_contributes_its_slope_times_its_distance_from_the_mean(tabular):
    _, frame, model = tabular
    names = model.schema.design_names()
    j = names.index("sqft")
    row = rows_as_json(frame.head(1))[0]
    one = model.encode([row[name] for name in model.feature_names])
    got = model.explainer().row(one.values, one.codes)["contributions"]
    assert got["sqft"] == pytest.approx(model.coef[j] * (row["sqft"] - model.x_mean[j]))
    # A gap: the imputed mean's part plus the missing indicator's.
    row["lot"] = None
    one = model.encode([row[name] for name in model.feature_names])
    got = model.explainer().row(one.values, one.codes)["contributions"]["lot"]
    k, m = names.index("lot"), names.index("lot (missing)")
    expected = model.coef[k] * (one.values[k] - model.x_mean[k]) + model.coef[m] * (
        1.0 - model.x_mean[m])
    assert got == pytest.approx(expected)


def test_the_base_value_is_the_prediction_at_the_training_means(tmp_path) -> None:
    write_houses_csv(tmp_path / "h.csv", 2000, seed=2)
    result = train(LocalStore(tmp_path / "m"), tmp_path / "h.csv", target="price")
    model, _ = LocalStore(tmp_path / "m").load(result.version)
    explainer = model.explainer()
    at_means = model.predict_columns(list(model.x_mean))
    assert explainer.base_value == pytest.approx(at_means, rel=1e-12)
    answer = explainer.row(list(model.x_mean), ())
    assert all(abs(v) < 1e-6 for v in answer["contributions"].values())


def test_a_log_model_is_explained_on_the_log_scale(tmp_path) -> None:
    frame = skewed_frame(3000, seed=3)
    frame.to_csv(tmp_path / "s.csv", index=False)
    result = train(LocalStore(tmp_path / "m"), tmp_path / "s.csv", target="price",
                   encoding={"target_transform": "log"})
    model, _ = LocalStore(tmp_path / "m").load(result.version)
    row = frame.drop(columns="price").iloc[0].to_dict()
    one = model.encode([row[name] for name in model.feature_names])
    answer = model.explainer().row(one.values, one.codes)
    assert answer["scale"] == "log"
    total = answer["base_value"] + math.fsum(answer["contributions"].values())
    assert math.exp(total) == pytest.approx(model.predict_design(one.values, one.codes),
                                            rel=1e-9)


# -- over HTTP ----------------------------------------------------------------------------------


@pytest.fixture
def client(tabular, tmp_path):
    tmp, _, _ = tabular
    return create_app({"model_dir": tmp / "models", "log_dir": tmp_path / "logs"}).test_client()


def test_predict_explains_one_row_and_a_batch(client, tabular) -> None:
    _, frame, _ = tabular
    rows = rows_as_json(frame.head(20))
    one = client.post("/predict", json={"features": rows[0], "explain": True}).get_json()
    e = one["explanation"]
    assert e["base_value"] + math.fsum(e["contributions"].values()) == pytest.approx(
        one["prediction"], rel=1e-12)
    batch = client.post("/predict", json={"instances": rows, "explain": True}).get_json()
    assert len(batch["explanations"]) == 20
    for p, e in zip(batch["predictions"], batch["explanations"], strict=True):
        assert set(e["contributions"]) == set(frame.columns) - {"price"}
        assert e["base_value"] + math.fsum(e["contributions"].values()) == pytest.approx(
            p, rel=1e-12)
    assert batch["explanations"][0] == one["explanation"]
    plain = client.post("/predict", json={"features": rows[0], "explain": False}).get_json()
    assert "explanation" not in plain


def test_explain_must_be_a_boolean(client, tabular) -> None:
    _, frame, _ = tabular
    row = rows_as_json(frame.head(1))[0]
    for value in ("yes", 1, None, [True]):
        r = client.post("/predict", json={"features": row, "explain": value})
        assert r.status_code == 400
        assert r.get_json()["error"] == {"code": "invalid_option",
                                         "message": f"'explain' must be true or false, got "
                                         f"{__import__('json').dumps(value)}"}


def test_v2_explains_with_a_contributions_output(tmp_path) -> None:
    write_houses_csv(tmp_path / "h.csv", 2000, seed=2)
    train(LocalStore(tmp_path / "m"), tmp_path / "h.csv", target="price")
    client = create_app({"model_dir": tmp_path / "m", "log_dir": tmp_path / "logs"}
                        ).test_client()
    payload = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                           "data": [1500, 3, 2, 20, 2500, 4, 3, 5]}],
               "parameters": {"explain": True}}
    r = client.post("/v2/models/house-price/infer", json=payload)
    assert r.status_code == 200, r.get_json()
    outputs = {o["name"]: o for o in r.get_json()["outputs"]}
    c = outputs["contributions"]
    assert c["shape"] == [2, 4] and c["parameters"]["features"] == [
        "sqft", "bedrooms", "bathrooms", "age_years"]
    parts = np.array(c["data"]).reshape(2, 4)
    assert parts.sum(axis=1) + c["parameters"]["base_value"] == pytest.approx(
        outputs["predict"]["data"], rel=1e-12)
