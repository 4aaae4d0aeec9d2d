"""Split conformal prediction intervals: the residuals a version keeps, the levels they support,
coverage on fresh data from the same distribution, and the intervals /predict and /v2 answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_tabular import house_frame, rows_as_json, skewed_frame

from service.data import make_houses, write_houses_csv
from service.engine import CALIBRATION_ROWS, Calibration, LevelError
from service.http import create_app
from service.store import LocalStore
from service.training import train

pytestmark = pytest.mark.usefixtures("clean_env")


# -- the numerics ---------------------------------------------------------------------------


def test_the_quantile_is_the_ceil_n_plus_one_level_th_residual() -> None:
    cal = Calibration(np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0, 10.0]))
    assert cal.residuals.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    # n = 10: level 0.5 -> k = ceil(11 * 0.5) = 6; 0.9 -> ceil(9.9) = 10; 0.5454 -> ceil(5.99) = 6
    assert cal.half_width(0.5) == 6.0
    assert cal.half_width(0.9) == 10.0
    assert cal.half_width(0.09) == 1.0  # ceil(0.99) = 1
    assert cal.interval(100.0, 0.5) == (94.0, 106.0)
    lower, upper = cal.interval(np.array([0.0, 10.0]), 0.9)
    assert lower.tolist() == [-10.0, 0.0] and upper.tolist() == [10.0, 20.0]


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, math.nan, math.inf, True, "0.9", None])
def test_a_level_outside_zero_one_is_refused(level) -> None:
    with pytest.raises(LevelError, match="between 0 and 1"):
        Calibration(np.arange(100.0)).check(level)


def test_a_level_beyond_what_n_residuals_support_is_refused_naming_the_most() -> None:
    cal = Calibration(np.arange(1.0, 20.0))  # 19 residuals: levels up to 19/20 = 0.95
    assert cal.max_level == 0.95
    assert cal.half_width(0.95) == 19.0
    with pytest.raises(LevelError, match=r"needs at least 99 .* has 19, enough for levels up to "
                                         r"0\.95"):
        cal.check(0.99)


def test_residuals_on_the_log_scale_give_intervals_in_target_units() -> None:
    cal = Calibration(np.array([0.1] * 9 + [0.2]), scale="log")
    lower, upper = cal.interval(1000.0, 0.5)
    assert lower == pytest.approx(1000 * math.exp(-0.1))
    assert upper == pytest.approx(1000 * math.exp(0.1))


def test_the_state_round_trips() -> None:
    cal = Calibration(np.array([3.0, 1.0, 2.0]), scale="log", of_rows=7)
    again = Calibration.from_state(cal.to_state())
    assert again.residuals.tolist() == [1.0, 2.0, 3.0] and again.scale == "log"
    assert again.of_rows == 7


# -- what training keeps, and the coverage it gives ---------------------------------------------


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("intervals")
    write_houses_csv(tmp / "houses.csv", 20_000, seed=11)
    store = LocalStore(tmp / "models")
    result = train(store, tmp / "houses.csv", target="price")
    model, manifest = store.load(result.version)
    return tmp, store, model, manifest


def test_a_version_keeps_the_sorted_residuals_of_its_holdout_rows(houses) -> None:
    tmp, store, model, manifest = houses
    cal = model.calibration
    holdout = manifest["metrics"]["holdout"]
    assert cal.n == holdout["rows"] == cal.of_rows  # under the sampling bound: every row
    assert np.all(np.diff(cal.residuals) >= 0)
    # They are the holdout residuals: their RMS is the holdout RMSE.
    assert math.sqrt(np.mean(cal.residuals ** 2)) == pytest.approx(holdout["rmse"], rel=1e-9)
    assert manifest["calibration"]["residuals"] == cal.n
    assert manifest["calibration"]["half_width_90"] == cal.half_width(0.9)


@pytest.mark.parametrize("level", [0.5, 0.8, 0.9, 0.95])
def test_intervals_cover_their_level_on_fresh_data(houses, level) -> None:
    """Split conformal's promise: on new rows from the same distribution, a 90% interval
    covers about 90% (88-92% here, over 20,000 fresh rows and ~4,000 residuals)."""
    _, _, model, _ = houses
    X, y, _ = make_houses(20_000, seed=12345)  # never seen by training
    covered = model.calibration.covers(y, model.predict(X), level).mean()
    assert level - 0.02 <= covered <= level + 0.02


def test_intervals_of_a_log_model_cover_too(tmp_path) -> None:
    frame = skewed_frame(8000, seed=21)
    frame.to_csv(tmp_path / "skewed.csv", index=False)
    store = LocalStore(tmp_path / "models")
    result = train(store, tmp_path / "skewed.csv", target="price",
                   encoding={"target_transform": "log"})
    model, _ = store.load(result.version)
    assert model.calibration.scale == "log"
    fresh = skewed_frame(20_000, seed=22)
    predicted = np.asarray(model.predict_columns([fresh[c].tolist() for c in
                                                  model.feature_names]))
    covered = model.calibration.covers(fresh.price.to_numpy(), predicted, 0.9).mean()
    assert 0.88 <= covered <= 0.92
    lower, upper = model.calibration.interval(predicted, 0.9)
    assert np.all(lower > 0) and np.all(upper / predicted > predicted / lower - 1e-9)


def test_a_streamed_file_keeps_the_same_residuals_as_one_read_whole(tmp_path) -> None:
    write_houses_csv(tmp_path / "h.csv", 3000, seed=4)
    whole = train(LocalStore(tmp_path / "a"), tmp_path / "h.csv", target="price", stream=False)
    streamed = train(LocalStore(tmp_path / "b"), tmp_path / "h.csv", target="price",
                     stream=True)
    a = LocalStore(tmp_path / "a").load(whole.version)[0].calibration.residuals
    b = LocalStore(tmp_path / "b").load(streamed.version)[0].calibration.residuals
    assert len(a) == len(b) and np.allclose(a, b, rtol=1e-9)


def test_residuals_are_sampled_down_to_the_bound(tmp_path, monkeypatch) -> None:
    import service.training

    monkeypatch.setattr(service.training, "CALIBRATION_ROWS", 500)
    write_houses_csv(tmp_path / "h.csv", 5000, seed=4)
    result = train(LocalStore(tmp_path / "m"), tmp_path / "h.csv", target="price")
    cal = LocalStore(tmp_path / "m").load(result.version)[0].calibration
    assert cal.n == 500 and cal.of_rows == result.metrics["holdout"]["rows"] > 500
    assert CALIBRATION_ROWS == 100_000


# -- over HTTP ----------------------------------------------------------------------------------

ROW = {"sqft": 1500, "bedrooms": 3, "bathrooms": 2, "age_years": 20}


@pytest.fixture
def client(houses, tmp_path):
    tmp, _, _, _ = houses
    return create_app({"model_dir": tmp / "models", "log_dir": tmp_path / "logs",
                       "reload_interval": 0}).test_client()


def test_predict_answers_an_interval_per_row(client, houses) -> None:
    _, _, model, _ = houses
    r = client.post("/predict", json={"features": ROW, "interval": 0.9})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    q = model.calibration.half_width(0.9)
    assert body["interval"] == {"lower": pytest.approx(body["prediction"] - q),
                                "upper": pytest.approx(body["prediction"] + q), "level": 0.9}
    r = client.post("/predict", json={"instances": [ROW, dict(ROW, sqft=2500)], "interval": 0.8})
    body = r.get_json()
    q = model.calibration.half_width(0.8)
    assert [i["level"] for i in body["intervals"]] == [0.8, 0.8]
    for p, i in zip(body["predictions"], body["intervals"], strict=True):
        assert i["lower"] == pytest.approx(p - q) and i["upper"] == pytest.approx(p + q)
    assert "intervals" not in client.post("/predict", json={"instances": [ROW]}).get_json()


@pytest.mark.parametrize("interval, message", [
    (0.9999, "needs at least 9999 calibration residuals"),
    (1, "between 0 and 1"), (0, "between 0 and 1"), ("0.9", "between 0 and 1"),
    (True, "between 0 and 1"), (None, "between 0 and 1"), ([0.9], "between 0 and 1"),
])
def test_a_level_the_calibration_cannot_support_is_a_400(client, interval, message) -> None:
    for body in ({"features": ROW, "interval": interval},
                 {"instances": [ROW], "interval": interval}):
        r = client.post("/predict", json=body)
        assert r.status_code == 400
        assert r.get_json()["error"]["code"] == "invalid_interval"
        assert message in r.get_json()["error"]["message"]


def test_a_version_trained_before_intervals_says_to_retrain(tmp_path) -> None:
    from helpers import hand_model

    store = LocalStore(tmp_path / "models")
    store.activate(store.save(hand_model(), {}, parent=None, status="promoted"))
    client = create_app({"model_dir": tmp_path / "models"}).test_client()
    r = client.post("/predict", json={"features": ROW, "interval": 0.9})
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "interval_unavailable"
    assert "retrain" in r.get_json()["error"]["message"]
    assert client.post("/predict", json={"features": ROW}).status_code == 200


def test_categorical_rows_get_intervals_on_both_decoding_paths(tmp_path, monkeypatch) -> None:
    from service.http.rows import MixedDecoder

    frame = house_frame(3000, seed=8)
    frame.to_csv(tmp_path / "h.csv", index=False)
    train(LocalStore(tmp_path / "models"), tmp_path / "h.csv", target="price")
    client = create_app({"model_dir": tmp_path / "models",
                         "log_dir": tmp_path / "logs"}).test_client()
    rows = rows_as_json(frame.head(5))
    bodies = [{"instances": rows, "interval": 0.9}, {"features": rows[1], "interval": 0.5}]
    typed = [client.post("/predict", json=b).get_json() for b in bodies]
    monkeypatch.setattr(MixedDecoder, "decode", lambda *args: None)
    general = [client.post("/predict", json=b).get_json() for b in bodies]
    assert typed[0]["intervals"] == general[0]["intervals"]
    assert typed[0]["predictions"] == general[0]["predictions"]
    assert typed[1]["interval"] == general[1]["interval"]


def test_v2_takes_the_interval_in_its_parameters(client, houses) -> None:
    _, _, model, _ = houses
    payload = {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                           "data": [1500, 3, 2, 20, 2500, 4, 3, 5]}],
               "parameters": {"interval": 0.9}}
    r = client.post("/v2/models/house-price/infer", json=payload)
    assert r.status_code == 200, r.get_json()
    outputs = {o["name"]: o for o in r.get_json()["outputs"]}
    q = model.calibration.half_width(0.9)
    predicted = outputs["predict"]["data"]
    assert outputs["interval_lower"]["data"] == pytest.approx([p - q for p in predicted])
    assert outputs["interval_upper"]["data"] == pytest.approx([p + q for p in predicted])
    assert outputs["interval_lower"]["parameters"] == {"level": 0.9}
    payload["parameters"] = {"interval": 1.5}
    r = client.post("/v2/models/house-price/infer", json=payload)
    assert r.status_code == 400 and "parameters: interval" in r.get_json()["error"]
