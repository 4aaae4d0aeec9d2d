"""Tests of service.training: the one pipeline (split, fit, metrics, gate, save, promote)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service import data
from service.data import dataset as dataset_module
from service.data import source as source_module
from service.engine import LinearModel
from service.engine.sgd import SGDRegressor
from service.errors import CurrentDamagedError, DataError, DivergenceError, LockHeldError
from service.store import LocalStore
from service.training import TrainResult, train

from helpers import child_env

REPO = Path(__file__).resolve().parent.parent
HOUSES = list(data.HOUSE_FEATURES)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "models")


@pytest.fixture
def houses(tmp_path: Path) -> Path:
    return data.write_houses_csv(tmp_path / "houses.csv", 2000, seed=0)


@pytest.fixture
def regression_csv(tmp_path: Path) -> Path:
    X, y, _, _ = data.make_regression(20_000, 5, seed=1, noise=1.0)
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    columns["y"] = y
    return data.write_csv(tmp_path / "regression.csv", columns)


def snapshot(store: LocalStore) -> tuple[list[str], str | None]:
    """Everything a failed run must leave alone: the version directories and CURRENT."""
    entries = sorted(os.listdir(store.versions_dir)) if store.versions_dir.is_dir() else []
    current = store.current_file.read_text() if store.current_file.exists() else None
    return entries, current


class Rows:
    """A file as pandas reads it (a reference independent of the data layer)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y


def holdout_rows(path: Path, target: str, features=None, fraction=0.2, seed=0):
    """The file read whole (by pandas) and the mask of its holdout rows."""
    frame = pd.read_csv(path)
    names = features or [c for c in frame.columns if c != target]
    ds = Rows(frame[names].to_numpy(dtype=np.float64), frame[target].to_numpy(np.float64))
    return ds, data.holdout_mask(0, len(ds.y), fraction, seed)


def rmse(model: LinearModel, X: np.ndarray, y: np.ndarray) -> float:
    r = y - model.predict(X)
    return float(np.sqrt(np.mean(r * r)))


# -- the gate ------------------------------------------------------------------------------


def test_first_model_is_promoted(store: LocalStore, houses: Path) -> None:
    result = train(store, houses, target="price")
    assert isinstance(result, TrainResult)
    assert result.promoted and result.status == "promoted"
    assert result.active_version is None
    assert "no active model" in result.reason
    assert store.active_version() == result.version
    assert result.metrics["active_holdout"] is None
    assert result.features == HOUSES and result.target == "price"
    # It learned the generator's slopes (sqft is 150 $/sqft; noise is 25,000 $).
    assert result.coefficients["sqft"] == pytest.approx(data.TRUE_COEF["sqft"], rel=0.1)
    assert result.metrics["holdout"]["r2"] > 0.9


def test_not_worse_candidate_is_promoted(store: LocalStore, houses: Path) -> None:
    first = train(store, houses, target="price")
    second = train(store, houses, target="price", seed=0)
    # The same data, seed and parameters give the same model: not worse, so promoted.
    assert second.promoted and second.status == "promoted"
    assert second.reason.startswith("not worse")
    assert second.active_version == first.version
    assert store.active_version() == second.version
    assert second.metrics["holdout"]["rmse"] == pytest.approx(
        second.metrics["active_holdout"]["rmse"], rel=1e-9
    )


def test_worse_candidate_is_kept_as_rejected(store: LocalStore, houses: Path) -> None:
    first = train(store, houses, target="price")
    # One epoch at a tiny step size barely leaves the starting point: clearly worse.
    worse = train(store, houses, target="price", params={"max_iter": 1, "eta0": 1e-4})
    new, old = worse.metrics["holdout"]["rmse"], worse.metrics["active_holdout"]["rmse"]
    assert new > 2 * old
    assert not worse.promoted and worse.status == "rejected"
    assert store.active_version() == first.version
    assert worse.reason.startswith("worse")
    assert f"{new:.6g}" in worse.reason and f"{old:.6g}" in worse.reason
    assert first.version in worse.reason
    # Kept on disk, loadable, marked rejected, with the gate's reasoning.
    manifest = store.get(worse.version)
    assert manifest["status"] == "rejected"
    assert manifest["gate"]["reason"] == worse.reason
    assert manifest["gate"]["compared_with"] == first.version
    model, _ = store.load(worse.version)
    assert model.feature_names == tuple(HOUSES)
    assert [m["id"] for m in store.list()] == [first.version, worse.version]
    # The epoch limit note is recorded, not raised.
    assert any("max_iter=1" in w for w in worse.warnings)
    assert manifest["warnings"] == worse.warnings


def test_force_promotes_a_worse_candidate(store: LocalStore, houses: Path) -> None:
    train(store, houses, target="price")
    forced = train(store, houses, target="price", params={"max_iter": 1, "eta0": 1e-4},
                   force=True)
    assert forced.metrics["holdout"]["rmse"] > forced.metrics["active_holdout"]["rmse"]
    assert forced.promoted and forced.status == "promoted"
    assert forced.reason.startswith("forced although worse")
    assert store.active_version() == forced.version
    assert store.get(forced.version)["gate"]["forced"] is True


def test_tolerance_is_respected(store: LocalStore, houses: Path) -> None:
    train(store, houses, target="price")
    # Strong regularisation: a few percent worse, not hugely.
    mild = {"alpha": 0.03}
    probe = train(store, houses, target="price", params=mild, tolerance=0.0)
    assert not probe.promoted
    ratio = probe.metrics["holdout"]["rmse"] / probe.metrics["active_holdout"]["rmse"] - 1
    assert 0.01 < ratio < 0.5  # worse than the default tolerance of 1%

    rejected = train(store, houses, target="price", params=mild, tolerance=ratio * 0.8)
    assert not rejected.promoted and "worse" in rejected.reason
    default = train(store, houses, target="price", params=mild)
    assert not default.promoted and "(tolerance 1.00%)" in default.reason

    within = train(store, houses, target="price", params=mild, tolerance=ratio * 1.2)
    assert within.promoted and within.reason.startswith("not worse")
    assert within.metrics["holdout"]["rmse"] == pytest.approx(probe.metrics["holdout"]["rmse"])
    assert store.active_version() == within.version
    assert store.get(within.version)["gate"]["tolerance"] == pytest.approx(ratio * 1.2)


def test_different_features_need_force(store: LocalStore, houses: Path) -> None:
    first = train(store, houses, target="price", features=["sqft", "bedrooms"])
    wider = train(store, houses, target="price")
    assert not wider.promoted and wider.status == "rejected"
    assert "differs" in wider.reason and "force" in wider.reason
    # Read as a change: from the active model's features to the candidate's.
    assert f"features ['sqft', 'bedrooms'] -> {HOUSES}" in wider.reason
    assert wider.metrics["active_holdout"] is None
    assert store.active_version() == first.version

    forced = train(store, houses, target="price", force=True)
    assert forced.promoted and forced.reason.startswith("forced")
    assert store.active_version() == forced.version


def test_different_target_needs_force(store: LocalStore, houses: Path) -> None:
    train(store, houses, target="price", features=["sqft", "bedrooms"])
    other = train(store, houses, target="age_years", features=["sqft", "bedrooms"])
    assert not other.promoted and "target 'price' -> 'age_years'" in other.reason


def test_active_model_is_scored_on_the_candidates_holdout_rows(
    store: LocalStore, houses: Path, tmp_path: Path
) -> None:
    first = train(store, houses, target="price")
    newer = data.write_houses_csv(tmp_path / "newer.csv", 3000, seed=7)
    # Features listed in another order: the active model must get its columns in its order.
    order = list(reversed(HOUSES))
    second = train(store, newer, target="price", features=order, seed=5)

    ds, mask = holdout_rows(newer, "price", HOUSES, seed=5)
    active, _ = store.load(first.version)
    candidate, _ = store.load(second.version)
    assert 0 < mask.sum() < len(mask)
    assert second.metrics["active_holdout"]["rows"] == int(mask.sum())
    assert second.metrics["active_holdout"]["rmse"] == pytest.approx(
        rmse(active, ds.X[mask], ds.y[mask]), rel=1e-9
    )
    assert second.metrics["holdout"]["rows"] == int(mask.sum())
    assert second.metrics["holdout"]["rmse"] == pytest.approx(
        rmse(candidate, ds.X[mask][:, [HOUSES.index(f) for f in order]], ds.y[mask]), rel=1e-9
    )
    assert second.metrics["train"]["rows"] == int((~mask).sum())
    assert second.metrics["train"]["rmse"] == pytest.approx(
        rmse(candidate, ds.X[~mask][:, [HOUSES.index(f) for f in order]], ds.y[~mask]),
        rel=1e-9,
    )
    # Another seed holds out other rows.
    assert not np.array_equal(mask, holdout_rows(newer, "price", seed=6)[1])


# -- what is recorded ----------------------------------------------------------------------


def test_manifest_records_data_parameters_metrics_and_parent(
    store: LocalStore, houses: Path
) -> None:
    first = train(store, houses, target="price")
    params = {"max_iter": 7, "tol": None, "eta0": 0.02, "batch_size": 32}
    second = train(store, houses, target="price", params=params, seed=3, source="upload.csv",
                   force=True)
    manifest = store.get(second.version)

    assert manifest["id"] == second.version
    assert manifest["parent"] == first.version
    assert store.get(first.version)["parent"] is None
    assert manifest["data"] == {
        "file": "houses.csv",
        "rows": 2000,
        "columns": HOUSES + ["price"],
        "sha256": hashlib.sha256(houses.read_bytes()).hexdigest(),
        "format": "csv",
        "source": "upload.csv",
    }
    hyper = manifest["hyperparameters"]
    assert hyper == {**SGDRegressor().get_params(), **params, "random_state": 3}
    # tol=None runs every epoch: one loss per epoch.
    assert manifest["epochs"] == second.epochs == 7
    assert len(manifest["loss_history"]) == 7
    assert all(math.isfinite(v) for v in manifest["loss_history"])
    for part in ("train", "holdout"):
        assert set(manifest["metrics"][part]) >= {"rmse", "mae", "r2", "rows"}
        assert manifest["metrics"][part] == pytest.approx(second.metrics[part])
    assert manifest["split"]["holdout_rows"] + manifest["split"]["train_rows"] == 2000
    assert manifest["split"]["seed"] == 3 and manifest["split"]["streamed"] is False
    assert manifest["coefficients"] == pytest.approx(second.coefficients)
    assert manifest["intercept"] == pytest.approx(second.intercept)
    assert manifest["features"] == HOUSES and manifest["target"] == "price"
    # With the stopping rule on, the history is as long as the epochs actually run.
    first_manifest = store.get(first.version)
    assert len(first_manifest["loss_history"]) == first_manifest["epochs"] == first.epochs
    assert first.epochs < 100


def test_result_is_json_serialisable(store: LocalStore, houses: Path) -> None:
    results = [
        train(store, houses, target="price"),
        train(store, houses, target="price", params={"max_iter": 1, "eta0": 1e-4}),
        train(store, houses, target="price", features=["sqft"]),
    ]
    for result in results:
        text = json.dumps(result.to_dict(), allow_nan=False)
        back = json.loads(text)
        assert back["version"] == result.version
        assert back["promoted"] == result.promoted
        assert set(back["metrics"]["holdout"]) >= {"rmse", "mae", "r2"}
        assert set(back["metrics"]["train"]) >= {"rmse", "mae", "r2"}


# -- the lock ------------------------------------------------------------------------------

@pytest.fixture
def lock_holder(store: LocalStore, hold_store_lock):
    """A separate process holding the store lock until its stdin is closed."""
    with hold_store_lock(store.root, "another trainer") as child:
        yield child


@pytest.mark.slow
def test_lock_held_by_another_process(store: LocalStore, houses: Path, lock_holder) -> None:
    before = snapshot(store)
    with pytest.raises(LockHeldError, match=rf"pid {lock_holder.pid} \(another trainer\)"):
        train(store, houses, target="price")
    with pytest.raises(LockHeldError, match=r"\(waited 0\.2 s\)$"):
        train(store, houses, target="price", wait_lock=0.2)
    assert snapshot(store) == before
    lock_holder.stdin.close()
    lock_holder.wait(timeout=60)
    assert train(store, houses, target="price").promoted


# -- streamed training ---------------------------------------------------------------------


def test_streamed_training_matches_in_memory(
    tmp_path: Path, regression_csv: Path, monkeypatch
) -> None:
    whole = train(LocalStore(tmp_path / "whole"), regression_csv, target="y", stream=False)
    # Small chunks: 20 of them, so chunk offsets and the per-row holdout rule are exercised.
    monkeypatch.setattr(source_module, "BLOCK_BYTES", 20_000)  # about 20 chunks
    streamed_store = LocalStore(tmp_path / "streamed")
    streamed = train(streamed_store, regression_csv, target="y", stream=True)

    m_whole = LocalStore(tmp_path / "whole").get(whole.version)
    m_streamed = streamed_store.get(streamed.version)
    assert m_streamed["split"]["streamed"] is True and m_whole["split"]["streamed"] is False
    assert m_streamed["data"] == m_whole["data"]
    assert m_streamed["split"] == {**m_whole["split"], "streamed": True}

    # The same holdout rows: the streamed model's reported numbers match a manual computation.
    ds, mask = holdout_rows(regression_csv, "y")
    model, _ = streamed_store.load(streamed.version)
    assert streamed.metrics["holdout"]["rows"] == whole.metrics["holdout"]["rows"] == mask.sum()
    assert streamed.metrics["holdout"]["rmse"] == pytest.approx(
        rmse(model, ds.X[mask], ds.y[mask]), rel=1e-9)
    assert streamed.metrics["train"]["rmse"] == pytest.approx(
        rmse(model, ds.X[~mask], ds.y[~mask]), rel=1e-9)
    assert streamed.metrics["train"]["rows"] == int((~mask).sum())

    # A close model: the noise is 1.0, both reach it.
    assert streamed.metrics["holdout"]["rmse"] == pytest.approx(
        whole.metrics["holdout"]["rmse"], rel=0.02)
    assert streamed.metrics["holdout"]["rmse"] < 1.1
    for name, coef in whole.coefficients.items():
        assert streamed.coefficients[name] == pytest.approx(coef, rel=0.02, abs=1e-3)

    # The page's sample of holdout pairs: the same rows either way, each a real holdout row.
    a, b = m_whole["holdout_sample"], m_streamed["holdout_sample"]
    assert a["actual"] == b["actual"] and len(a["actual"]) == len(a["predicted"]) > 0
    assert a["of_rows"] == b["of_rows"] == mask.sum()
    assert set(a["actual"]) <= set(ds.y[mask].tolist())
    assert b["predicted"] == pytest.approx(model.predict(ds.X[mask])[
        np.isin(ds.y[mask], b["actual"])].tolist())


def test_the_holdout_sample_is_bounded_and_seeded(tmp_path: Path) -> None:
    path = data.write_houses_csv(tmp_path / "big.csv", 30_000, seed=3)
    store = LocalStore(tmp_path / "models")
    first = store.get(train(store, path, target="price").version)["holdout_sample"]
    again = store.get(train(store, path, target="price").version)["holdout_sample"]
    other = store.get(train(store, path, target="price", seed=1).version)["holdout_sample"]
    assert len(first["actual"]) == 2000 < first["of_rows"]  # about 6,000 held out
    assert first == again and first["actual"] != other["actual"]


def test_large_files_stream_by_default(
    store: LocalStore, regression_csv: Path, monkeypatch
) -> None:
    first = train(store, regression_csv, target="y")
    assert store.get(first.version)["split"]["streamed"] is False
    monkeypatch.setattr(dataset_module, "STREAM_THRESHOLD_BYTES", 1024)
    second = train(store, regression_csv, target="y")
    assert store.get(second.version)["split"]["streamed"] is True
    # The gate works the same when streaming: the active model on the same holdout rows.
    ds, mask = holdout_rows(regression_csv, "y")
    active, _ = store.load(first.version)
    assert second.metrics["active_holdout"]["rmse"] == pytest.approx(
        rmse(active, ds.X[mask], ds.y[mask]), rel=1e-9)


def test_streamed_training_reads_in_bounded_chunks(
    store: LocalStore, regression_csv: Path, monkeypatch
) -> None:
    def no_whole_read(*args, **kwargs):
        raise AssertionError("the streamed path read the file whole")

    biggest: list[int] = []
    batches = source_module.Source.batches

    def counting(self, *args, **kwargs):
        for frame in batches(self, *args, **kwargs):
            biggest.append(frame.height)
            yield frame

    monkeypatch.setattr(source_module, "BLOCK_BYTES", 20_000)
    monkeypatch.setattr(source_module.Source, "read", no_whole_read)
    monkeypatch.setattr(source_module.Source, "batches", counting)
    result = train(store, regression_csv, target="y", stream=True)
    assert result.promoted
    # Every pass went through the chunks: the schema's, the scaler's, each epoch's, the
    # evaluation's.
    # (and the first chunk once more, for the step-size bound).
    chunks_per_pass = (len(biggest) - 1) // (result.epochs + 3)
    assert chunks_per_pass > 10 and len(biggest) == chunks_per_pass * (result.epochs + 3) + 1
    # Training sees chunks, never the file (the RSS test below checks the memory itself).
    row_bytes = regression_csv.stat().st_size / result.metrics["train"]["rows"] / 1.25
    assert max(biggest) * row_bytes < 2 * 20_000


RSS_CHILD = textwrap.dedent("""
    import json, resource, sys, threading, time
    from service.store import LocalStore
    from service.training import train

    def anon():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("RssAnon"))

    peak_anon = [anon()]
    done = threading.Event()

    def sample():
        while not done.wait(0.005):
            peak_anon[0] = max(peak_anon[0], anon())

    before = peak_anon[0]
    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    result = train(LocalStore(sys.argv[2]), sys.argv[1], target="y", stream=True,
                   params={"max_iter": 1, "tol": None})
    done.set()
    print(json.dumps({"before": before, "peak": max(peak_anon[0], anon()),
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "seconds": time.perf_counter() - started,
                      "rows": result.metrics["train"]["rows"] + result.metrics["holdout"]["rows"]}))
""")


@pytest.mark.slow
def test_streamed_training_memory_stays_well_below_the_file_size(tmp_path: Path) -> None:
    # A ~200 MB file made by repeating a generated block (writing 2M fresh rows takes minutes).
    X, y, _, _ = data.make_regression(20_000, 8, seed=2)
    columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
    columns["y"] = y
    block = data.write_csv(tmp_path / "block.csv", columns, default_format="%.7g").read_bytes()
    header, body = block.split(b"\n", 1)
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:
        fh.write(header + b"\n")
        while fh.tell() < 200_000_000:
            fh.write(body)
    size = big.stat().st_size

    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(big), str(tmp_path / "models")],
        capture_output=True, text=True, env=child_env(), timeout=600, check=True,
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    grown = report["peak"] - report["before"]
    # Anonymous memory only: polars maps the file, and mapped file pages count in RSS but are
    # the page cache's, which the kernel takes back under pressure. Reading the file whole
    # takes about 1.7x its size; streaming keeps one chunk at a time, so half the file is a
    # generous bound (not a constant: the chunks grow with the number of columns).
    assert report["rows"] == body.count(b"\n") * ((size - len(header) - 1) // len(body))
    assert grown < 0.5 * size, report


# -- bad input leaves the store unchanged --------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"params": {"learning_rat": 0.1}}, ValueError, "unknown training parameter"),
        ({"params": {"eta0": -0.1}}, ValueError, r"eta0 must be > 0\.0, got -0\.1"),
        ({"params": {"max_iter": 0}}, ValueError, "max_iter must be >= 1, got 0"),
        ({"holdout_fraction": 0.0}, ValueError, "holdout_fraction must be between 0 and 1"),
        ({"holdout_fraction": 1.0}, ValueError, "holdout_fraction must be between 0 and 1"),
        ({"holdout_fraction": float("nan")}, ValueError, "holdout_fraction"),
        ({"tolerance": -0.01}, ValueError, "tolerance must be >= 0"),
        ({"target": "nope"}, DataError, "target column 'nope' is missing"),
        ({"features": ["sqft", "nope"]}, DataError, "feature column 'nope' is missing"),
        ({"features": []}, DataError, "the list of features is empty"),
    ],
)
def test_bad_input_leaves_the_store_unchanged(
    store: LocalStore, houses: Path, kwargs, error, match
) -> None:
    first = train(store, houses, target="price")
    before = snapshot(store)
    kwargs = {"target": "price", **kwargs}
    with pytest.raises(error, match=match):
        train(store, houses, **kwargs)
    assert snapshot(store) == before
    assert store.active_version() == first.version
    assert store.is_locked() is None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "content, match",
    [
        ("a,b,y\n1,2,3\n3,3,5\n2,4,7\n4,x,9\n7,6,11\n", r"column 'b', line 5: 'x' is not a number"),
        ("a,b,y\n1,2,3\n2,3\n", "line 3 has 2 fields, the header has 3"),
        ("", "is empty"),
        ("a,b,y\n1,2,3\n2,3,5\n", "at least 3 data rows|too small to hold out"),
    ],
    ids=["bad-value", "short-row", "empty", "two-rows"],
)
def test_bad_data_leaves_the_store_unchanged(
    store: LocalStore, houses: Path, tmp_path: Path, content: str, match: str, stream: bool
) -> None:
    train(store, houses, target="price")
    before = snapshot(store)
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    with pytest.raises(DataError, match=match):
        train(store, bad, target="y", stream=stream)
    with pytest.raises(DataError, match="does not exist"):
        train(store, tmp_path / "missing.csv", target="y", stream=stream)
    assert snapshot(store) == before


# -- a damaged CURRENT ---------------------------------------------------------------------------


def test_a_damaged_current_is_reported_and_force_repairs_it(store: LocalStore,
                                                           houses: Path) -> None:
    first = train(store, houses, target="price")
    store.current_file.write_text("\x00\x00 half a write\n")
    with pytest.raises(CurrentDamagedError, match="CURRENT is damaged.*nothing was trained"):
        train(store, houses, target="price")
    assert store.version_ids() == [first.version]  # refused before fitting or saving
    repaired = train(store, houses, target="price", force=True)
    assert repaired.promoted and "damaged" in repaired.reason
    assert store.active_version() == repaired.version
    assert store.get(repaired.version)["parent"] is None  # no active model to descend from


def test_divergence_leaves_the_store_unchanged(store: LocalStore, houses: Path,
                                               monkeypatch) -> None:
    import service.engine.sgd as sgd

    first = train(store, houses, target="price")
    before = snapshot(store)
    monkeypatch.setattr(sgd, "_STABLE", np.inf)  # without the step caps eta0=1e9 diverges
    monkeypatch.setattr(sgd, "_ROW_STABLE", np.inf)
    with pytest.raises(DivergenceError, match="diverged"):
        train(store, houses, target="price", params={"eta0": 1e9, "learning_rate": "constant"})
    assert snapshot(store) == before and store.active_version() == first.version


def test_a_step_above_the_stable_one_is_capped_with_a_notice(store: LocalStore,
                                                            houses: Path) -> None:
    result = train(store, houses, target="price",
                   params={"eta0": 1e9, "learning_rate": "constant"})
    assert result.metrics["holdout"]["r2"] > 0.9
    assert any(n.startswith("eta0 1e+09 is above the stable step") for n in result.notices)

