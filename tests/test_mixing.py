"""service.engine.mixing: iterative parameter mixing, run in-process (tests/test_dask.py runs it
on a real cluster).

One partition is SGDRegressor.fit bit for bit; several are deterministic and reach lstsq; the
merges behind the statistics pass equal one pass over all rows.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from service.engine import RegressionSums, SGDRegressor
from service.engine.mixing import Mixing, local_epoch, partition_stats, sample_stride
from service.engine.sgd import ScalerStats


def problem(n: int, d: int = 5, seed: int = 0, noise: float = 1.0, levels: int = 0):
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.normal(size=(n, d)) * rng.uniform(1, 50, d) + rng.uniform(-9, 9, d))
    coef = rng.uniform(-3, 3, d)
    y = X @ coef + 7.0 + rng.normal(0, noise, n)
    codes = None
    if levels:
        codes = rng.integers(0, levels, size=(n, 2)).astype(np.int32)
        effects = rng.normal(0, 5, size=(2, levels))
        y += effects[0, codes[:, 0]] + effects[1, codes[:, 1]]
    return X, y, codes


def split(X, y, codes, parts: int):
    bounds = np.linspace(0, len(y), parts + 1).astype(int)
    return [(X[a:b], y[a:b], None if codes is None else codes[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def roundtrip(value):
    """What crossing to a worker and back does to a value (Dask pickles task arguments)."""
    return pickle.loads(pickle.dumps(value, protocol=5))


def mixed_fit(params: dict, parts, n_levels=(), pickled: bool = True) -> tuple[SGDRegressor,
                                                                              Mixing]:
    n_train = sum(len(p[1]) for p in parts)
    stride = sample_stride(n_train)
    firsts = np.cumsum([0] + [len(p[1]) for p in parts[:-1]])
    stats = [partition_stats(X, y, c, n_levels, first_row=int(f), stride=stride)
             for (X, y, c), f in zip(parts, firsts, strict=True)]
    reg = SGDRegressor(**params)
    mixing = Mixing(reg)
    mixing.start([roundtrip(s) for s in stats] if pickled else stats, parts[0][0].shape[1],
                 n_levels)

    def run(shared, carries):
        if pickled:
            shared, carries = roundtrip(shared), roundtrip(carries)
        results = [local_epoch(X, y, c, shared, carry)
                   for (X, y, c), carry in zip(parts, carries, strict=True)]
        return roundtrip(results) if pickled else results

    mixing.fit(run)
    return reg, mixing


def assert_same_fit(a: SGDRegressor, b: SGDRegressor) -> None:
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.intercept_ == b.intercept_
    assert a.n_iter_ == b.n_iter_
    assert a.loss_history_ == b.loss_history_
    assert a.validation_history_ == b.validation_history_
    for x, y in zip(getattr(a, "level_coef_", []), getattr(b, "level_coef_", []), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("params, n, levels", [
    ({}, 6000, 0),
    ({"early_stopping": True}, 6000, 0),
    ({"average": True, "learning_rate": "invscaling", "max_iter": 12}, 6000, 0),
    ({"eta0": 0.5}, 6000, 0),  # above the stable step: the curvature bound is computed
    ({"eta0": 0.5}, 45_000, 0),  # the bound's sample is every 4th row
    ({"penalty": "elasticnet", "alpha": 1e-3}, 6000, 6),
    ({"early_stopping": True, "eta0": 0.4}, 8000, 4),
])
def test_one_partition_is_a_local_fit_bit_for_bit(params: dict, n: int, levels: int) -> None:
    X, y, codes = problem(n, levels=levels)
    n_levels = (levels, levels) if levels else ()
    params = {"random_state": 3, **params}
    local = SGDRegressor(**params).fit(X, y, codes=codes, n_levels=n_levels or None)
    mixed, mixing = mixed_fit(params, [(X, y, codes)], n_levels)
    assert_same_fit(mixed, local)
    assert mixed.step_scale_ == local.step_scale_
    assert mixing.rounds >= mixed.n_iter_


def test_several_partitions_reach_lstsq_and_repeat_themselves() -> None:
    X, y, _ = problem(40_000, d=8, seed=1)
    parts = split(X, y, None, 4)
    first, mixing = mixed_fit({"random_state": 0, "tol": 1e-4}, parts)
    again, _ = mixed_fit({"random_state": 0, "tol": 1e-4}, parts)
    assert_same_fit(first, again)
    A = np.column_stack([X, np.ones(len(y))])
    solution = np.linalg.lstsq(A, y, rcond=None)[0]
    np.testing.assert_allclose(first.coef_, solution[:-1], rtol=1e-3)
    mse = float(np.mean((y - first.predict(X)) ** 2))
    best = float(np.mean((y - A @ solution) ** 2))
    assert mse <= best * 1.001
    assert mixing.rounds == first.n_iter_ < 100  # a few rounds, not an epoch per update
    other, _ = mixed_fit({"random_state": 1, "tol": 1e-4}, parts)
    assert not np.array_equal(other.coef_, first.coef_)  # the seed is used


def test_partitions_of_different_sizes_and_levels_mix_by_rows() -> None:
    X, y, codes = problem(20_000, levels=5, seed=2)
    bounds = [0, 2000, 2100, 11_000, 20_000]  # one tiny partition among large ones
    parts = [(X[a:b], y[a:b], codes[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    reg, _ = mixed_fit({"random_state": 0, "early_stopping": True}, parts, (5, 5))
    local = SGDRegressor(random_state=0).fit(X, y, codes=codes, n_levels=(5, 5))
    r2_mixed, r2_local = reg.score(X, y, codes), local.score(X, y, codes)
    assert r2_mixed == pytest.approx(r2_local, abs=1e-3)
    assert reg.validation_history_  # stopped on held-out batches of every partition


def test_pickling_changes_nothing() -> None:
    X, y, codes = problem(6000, levels=3)
    parts = split(X, y, codes, 3)
    a, _ = mixed_fit({"random_state": 0}, parts, (3, 3), pickled=True)
    b, _ = mixed_fit({"random_state": 0}, parts, (3, 3), pickled=False)
    assert_same_fit(a, b)


def test_a_round_must_answer_for_every_partition() -> None:
    X, y, _ = problem(2000)
    parts = split(X, y, None, 2)
    reg = SGDRegressor(random_state=0)
    mixing = Mixing(reg)
    mixing.start([partition_stats(*p, (), first_row=0, stride=1) for p in parts], 5, ())
    with pytest.raises(RuntimeError, match="returned 1 results for 2 partitions"):
        mixing.fit(lambda shared, carries: [local_epoch(*parts[0], shared, carries[0])])


# -- the merges behind the statistics pass -----------------------------------------------------


def test_merged_scaler_statistics_equal_one_pass() -> None:
    X, _, _ = problem(10_000)
    whole = ScalerStats(5)
    whole.update(X)
    merged = ScalerStats(5)
    for lo, hi in ((0, 3000), (3000, 3001), (3001, 7000), (7000, 10_000)):
        part = ScalerStats(5)
        part.update(X[lo:hi])
        merged.merge(part)
    merged.merge(ScalerStats(5))  # an empty partition changes nothing
    assert merged.count == whole.count
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-11)
    # (extremes are found shifted by a block's mean: equal to the last bit or so)
    np.testing.assert_allclose(merged.minimum, whole.minimum, rtol=1e-15)
    np.testing.assert_allclose(merged.maximum, whole.maximum, rtol=1e-15)
    alone = ScalerStats(5).merge(whole)  # into an empty one: a copy, bit for bit
    np.testing.assert_array_equal(alone.mean, whole.mean)
    np.testing.assert_array_equal(alone.m2, whole.m2)


def test_merged_regression_sums_equal_one_pass() -> None:
    rng = np.random.default_rng(0)
    y, pred = rng.normal(3e5, 5e4, 9000), rng.normal(3e5, 5e4, 9000)
    whole = RegressionSums().add(y, pred).metrics()
    merged = RegressionSums()
    for lo, hi in ((0, 10), (10, 5000), (5000, 9000)):
        merged.merge(RegressionSums().add(y[lo:hi], pred[lo:hi]))
    merged.merge(RegressionSums())
    for key, value in whole.items():
        assert merged.metrics()[key] == pytest.approx(value, rel=1e-12)
    assert RegressionSums().merge(RegressionSums().add(y, pred)).metrics() == whole
