"""SGDRegressor against references: finite differences, a hand step, lstsq and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from service.engine import LOSSES, PENALTIES, SGDRegressor, r2_score
from service.errors import ConvergenceWarning, DivergenceError

# ---------------------------------------------------------------------------------------------
# Data


def linear_data(n=20_000, d=5, noise=1.0, seed=0):
    """Features on very different raw scales and offsets, as users have them."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(-1, 3, d)
    X = rng.normal(size=(n, d)) * scales + rng.uniform(-100, 100, d)
    coef = rng.normal(size=d) * 10 / scales
    y = X @ coef + 7.0 + rng.normal(0, noise, n)
    return X, y, coef, 7.0


def lstsq_fit(X, y):
    A = np.c_[X, np.ones(len(X))]
    sol = np.linalg.lstsq(A, y, rcond=None)[0]
    return sol[:-1], sol[-1]


def mse(y, p):
    return float(np.mean((y - p) ** 2))


# ---------------------------------------------------------------------------------------------
# Gradients by finite differences


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_derivative_matches_finite_differences(name):
    loss = LOSSES[name](0.3)
    r = np.array([-2.1, -0.5, -0.2, 0.05, 0.17, 0.45, 1.3, 4.0])  # away from the kinks at +-0.3
    h = 1e-6
    numeric = (loss.value(r + h) - loss.value(r - h)) / (2 * h)
    np.testing.assert_allclose(loss.dloss(r), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(PENALTIES))
def test_penalty_gradient_matches_finite_differences(name):
    penalty = PENALTIES[name](alpha=0.7, l1_ratio=0.4)
    w = np.array([-1.5, -0.3, 0.2, 0.9, 2.5])  # no zeros: L1 is differentiable here
    h = 1e-6
    numeric = np.array(
        [(penalty.value(w + h * e) - penalty.value(w - h * e)) / (2 * h) for e in np.eye(len(w))]
    )
    np.testing.assert_allclose(penalty.gradient(w), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["l1", "elasticnet"])
def test_l1_prox_is_soft_thresholding(name):
    penalty = PENALTIES[name](alpha=1.0, l1_ratio=0.5)
    w = np.array([-2.0, -0.1, 0.0, 0.1, 2.0])
    penalty.prox(w, step=0.4)
    t = 0.4 if name == "l1" else 0.2  # step * alpha (* l1_ratio for the elastic net)
    np.testing.assert_allclose(w, [-2.0 + t, 0.0, 0.0, 0.0, 2.0 - t])


def test_one_hand_computed_step_and_a_second():
    """Two full-batch steps equal gradient descent on the standardised problem, computed by hand."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 3)) * [1000.0, 2.0, 0.01] + [5000.0, 3.0, 0.0]
    y = X @ [0.1, -3.0, 200.0] + 12 + rng.normal(size=50)
    eta, alpha = 0.1, 0.01
    reg = SGDRegressor(
        learning_rate="constant", eta0=eta, alpha=alpha, batch_size=50, shuffle=False,
        max_iter=2, tol=None,
    ).fit(X, y)

    Xs = (X - X.mean(0)) / X.std(0)
    ys = (y - y.mean()) / y.std()
    w, b = np.zeros(3), 0.0
    history = []
    for _ in range(2):
        r = Xs @ w + b - ys
        w, b = w - eta * (Xs.T @ r / 50 + alpha * w), b - eta * r.mean()
        # an epoch's loss: the data term as the batches met it, plus the penalty at its end
        history.append(np.mean(0.5 * r * r) + 0.5 * alpha * w @ w)
    np.testing.assert_allclose(reg.coef_std_, w, rtol=1e-10, atol=1e-12)
    assert reg.intercept_std_ == pytest.approx(b, abs=1e-12)
    # and the same model in original units
    np.testing.assert_allclose(reg.predict(X), (Xs @ w + b) * y.std() + y.mean(), rtol=1e-10)
    np.testing.assert_allclose(reg.loss_history_, history, rtol=1e-12)


def test_batch_gradient_matches_finite_differences_of_the_objective():
    """The update folds scaling into the weights; check it against J(w) by differences."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 3)) * [300.0, 1.0, 20.0] + [1000.0, 0.0, -50.0]
    y = rng.normal(size=40) * 50
    reg = SGDRegressor(loss="huber", epsilon=0.5, penalty="l2", alpha=0.1,
                       learning_rate="constant", eta0=1e-3, batch_size=40, shuffle=False,
                       max_iter=1, tol=None)
    reg.fit(X, y)  # one step from w = 0 of size eta0: gradient = -(w1 - w0) / eta0
    grad_from_step = -reg.coef_std_ / 1e-3
    Xs = (X - X.mean(0)) / X.std(0)
    ys = (y - y.mean()) / y.std()
    loss, pen = LOSSES["huber"](0.5), PENALTIES["l2"](0.1, 0.15)

    def objective(w):
        return loss.value(Xs @ w - ys).mean() + pen.value(w)

    h = 1e-6
    numeric = np.array([(objective(h * e) - objective(-h * e)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(grad_from_step, numeric, rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Against references


def test_holdout_mse_within_one_percent_of_lstsq_and_coefficients_close():
    X, y, coef, intercept = linear_data(n=40_000)
    Xtr, Xte, ytr, yte = X[:32_000], X[32_000:], y[:32_000], y[32_000:]
    reg = SGDRegressor(random_state=0).fit(Xtr, ytr)
    c, i = lstsq_fit(Xtr, ytr)
    assert mse(yte, reg.predict(Xte)) <= 1.01 * mse(yte, Xte @ c + i)
    np.testing.assert_allclose(reg.coef_, coef, rtol=0.02)
    assert reg.intercept_ == pytest.approx(intercept, abs=3.0)


def test_agrees_with_scikit_learn_on_the_same_standardised_data():
    sklearn = pytest.importorskip("sklearn.linear_model")
    X, y, _, _ = linear_data(n=20_000, seed=1)
    Xs = (X - X.mean(0)) / X.std(0)
    ys = (y - y.mean()) / y.std()
    ref = sklearn.SGDRegressor(alpha=1e-6, random_state=0, tol=1e-6, max_iter=50).fit(Xs, ys)
    ours = SGDRegressor(random_state=0).fit(X, y)
    np.testing.assert_allclose(ours.coef_std_, ref.coef_, rtol=0.01, atol=2e-3)
    assert ours.intercept_std_ == pytest.approx(ref.intercept_[0], abs=2e-3)


def test_raw_house_data_with_defaults_matches_lstsq_where_sklearn_defaults_fail():
    from service.data import make_houses

    X, y, _ = make_houses(5_000, seed=2)
    Xte, yte, _ = make_houses(2_000, seed=3)
    c, i = lstsq_fit(X, y)
    reg = SGDRegressor(random_state=0).fit(X, y)
    assert reg.score(Xte, yte) >= r2_score(yte, Xte @ c + i) - 0.005

    sklearn = pytest.importorskip("sklearn.linear_model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow and convergence warnings are the point
        ref = sklearn.SGDRegressor(random_state=0).fit(X, y)
        ref_r2 = r2_score(yte, ref.predict(Xte))
    assert not (ref_r2 > 0.5), "scikit-learn's defaults on raw data are not expected to work"


def test_rows_sorted_by_the_target_still_converge():
    """Batches are contiguous slices in random order: sorted files must not break the fit."""
    from service.data import make_houses

    X, y, _ = make_houses(20_000, seed=1)
    Xte, yte, _ = make_houses(5_000, seed=2)
    order = np.argsort(y)
    c, i = lstsq_fit(X, y)
    reg = SGDRegressor(random_state=0).fit(X[order], y[order])
    assert reg.score(Xte, yte) >= r2_score(yte, Xte @ c + i) - 0.001


def test_partial_fit_over_chunks_is_close_to_fit():
    X, y, _, _ = linear_data(n=30_000, seed=5)
    full = SGDRegressor(random_state=0).fit(X, y)
    chunked = SGDRegressor(random_state=0, batch_size=117)
    for chunk in np.array_split(np.arange(len(X)), 7):  # first pass: statistics only
        chunked.partial_fit_scaler(X[chunk], y[chunk])
    chunked.freeze_scaler()
    np.testing.assert_allclose(chunked.x_mean_, X.mean(0), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(chunked.x_scale_, X.std(0), rtol=1e-10)
    for _ in range(3):
        for chunk in np.array_split(np.arange(len(X)), 7):
            chunked.partial_fit(X[chunk], y[chunk])
    assert mse(y, chunked.predict(X)) <= 1.01 * mse(y, full.predict(X))
    np.testing.assert_allclose(chunked.coef_, full.coef_, rtol=0.02)


def test_partial_fit_merges_statistics_chunk_by_chunk():
    X, y, _, _ = linear_data(n=9_000, seed=6)
    reg = SGDRegressor(random_state=0)
    for chunk in np.array_split(np.arange(len(X)), 5):
        reg.partial_fit(X[chunk], y[chunk])
    np.testing.assert_allclose(reg.x_mean_, X.mean(0), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(reg.x_scale_, X.std(0), rtol=1e-10)
    assert reg.y_mean_ == pytest.approx(y.mean())
    assert reg.score(X, y) > 0.99


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    X, y, _, _ = linear_data(n=5_000, seed=7)
    a = SGDRegressor(random_state=42).fit(X, y)
    b = SGDRegressor(random_state=42).fit(X, y)
    c = SGDRegressor(random_state=43).fit(X, y)
    assert np.array_equal(a.coef_, b.coef_) and a.intercept_ == b.intercept_
    assert not np.array_equal(a.coef_, c.coef_)


# ---------------------------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "adaptive"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_schedule_and_loss_fits(schedule, loss):
    X, y, _, _ = linear_data(n=8_000, noise=0.5, seed=8)
    eta0 = 0.5 if schedule == "invscaling" else 0.05
    reg = SGDRegressor(loss=loss, learning_rate=schedule, eta0=eta0, epsilon=0.01,
                       random_state=0, max_iter=200)
    reg.fit(X, y)
    assert reg.score(X, y) > 0.99
    assert len(reg.loss_history_) == reg.n_iter_


def test_huber_resists_outliers_that_pull_squared_error():
    X, y, coef, _ = linear_data(n=4_000, d=2, noise=0.1, seed=9)
    y = y.copy()
    y[:200] += 1e4  # 5% gross outliers
    sq = SGDRegressor(random_state=0).fit(X, y)
    hub = SGDRegressor(loss="huber", epsilon=0.05, random_state=0, max_iter=300).fit(X, y)
    assert np.abs(hub.coef_ - coef).max() < np.abs(sq.coef_ - coef).max() / 5


@pytest.mark.parametrize("penalty", ["l1", "elasticnet"])
def test_l1_penalties_zero_out_irrelevant_features(penalty):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(5_000, 4)) * [10, 1, 100, 1]
    y = 3 * X[:, 0] + rng.normal(size=5_000)  # only the first feature matters
    reg = SGDRegressor(penalty=penalty, alpha=0.05, l1_ratio=0.9, random_state=0).fit(X, y)
    assert np.count_nonzero(reg.coef_[1:]) == 0
    assert reg.coef_[0] > 2.5


def test_l2_shrinks_towards_zero():
    X, y, _, _ = linear_data(n=5_000, seed=11)
    weak = SGDRegressor(alpha=1e-6, random_state=0).fit(X, y)
    strong = SGDRegressor(alpha=1.0, random_state=0).fit(X, y)
    assert np.linalg.norm(strong.coef_std_) < 0.6 * np.linalg.norm(weak.coef_std_)


def test_early_stopping_tracks_validation_and_keeps_the_best_epoch():
    X, y, _, _ = linear_data(n=20_000, seed=12)
    reg = SGDRegressor(early_stopping=True, validation_fraction=0.2, random_state=0).fit(X, y)
    assert len(reg.validation_history_) == reg.n_iter_
    c, i = lstsq_fit(X, y)
    assert mse(y, reg.predict(X)) <= 1.01 * mse(y, X @ c + i)


def test_averaging_converges():
    X, y, _, _ = linear_data(n=20_000, seed=13)
    reg = SGDRegressor(average=20_000, random_state=0).fit(X, y)
    c, i = lstsq_fit(X, y)
    assert mse(y, reg.predict(X)) <= 1.01 * mse(y, X @ c + i)


def test_warm_start_continues_and_fit_otherwise_resets():
    X, y, _, _ = linear_data(n=5_000, seed=14)
    reg = SGDRegressor(max_iter=1, tol=None, random_state=0).fit(X, y)
    first = reg.coef_.copy()
    assert reg.fit(X, y).n_iter_ == 1 and np.array_equal(reg.coef_, first)  # reset
    reg.set_params(warm_start=True).fit(X, y)
    assert reg.n_iter_ == 2


# ---------------------------------------------------------------------------------------------
# The estimator contract and errors


def test_constructor_stores_parameters_unchanged_and_fit_returns_self():
    params = dict(loss="huber", alpha=0.3, eta0=0.2, batch_size=64, average=10, random_state=5)
    reg = SGDRegressor(**params)
    got = reg.get_params()
    assert {k: got[k] for k in params} == params
    assert set(got) >= {"loss", "penalty", "learning_rate", "tol", "early_stopping", "shuffle"}
    X, y, _, _ = linear_data(n=500)
    assert reg.fit(X, y) is reg


def test_predict_before_fit_is_a_clear_error():
    with pytest.raises(ValueError, match="not fitted yet"):
        SGDRegressor().predict(np.zeros((1, 2)))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(eta0=0.0), r"eta0 must be > 0.0, got 0.0"),
        (dict(eta0=-0.1), r"eta0 must be > 0.0, got -0.1"),
        (dict(loss="hinge"), r"loss must be one of .*got 'hinge'"),
        (dict(penalty="l3"), r"penalty must be one of .*got 'l3'"),
        (dict(learning_rate="optimal"), r"learning_rate must be one of .*got 'optimal'"),
        (dict(alpha=-1.0), r"alpha must be >= 0.0, got -1.0"),
        (dict(l1_ratio=1.5), r"l1_ratio must be <= 1.0, got 1.5"),
        (dict(max_iter=0), r"max_iter must be >= 1, got 0"),
        (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
        (dict(batch_size="big"), r"batch_size must be an integer, got 'big'"),
        (dict(validation_fraction=1.0), r"validation_fraction must be < 1.0, got 1.0"),
        (dict(tol=float("nan")), r"tol must be finite, got nan"),
    ],
)
def test_bad_parameters_name_the_value(params, message):
    X, y, _, _ = linear_data(n=100)
    with pytest.raises(ValueError, match=message):
        SGDRegressor(**params).fit(X, y)


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones((3, 2)), np.ones(4), "X and y have different lengths: 3 and 4"),
        ([[1.0, np.nan], [2.0, 3.0]], [1.0, 2.0], r"non-finite value nan at row 0, column 1"),
        ([[1.0, 2.0], [np.inf, 3.0]], [1.0, 2.0], r"non-finite value inf at row 1, column 0"),
        ([[1.0], [2.0]], [1.0, np.inf], r"y has a non-finite value inf at row 1"),
        ([1.0, 2.0], [1.0, 2.0], "X must be 2-D"),
        (np.ones((1, 2)), np.ones(1), "need at least 2 rows, got 1"),
    ],
)
def test_bad_data_names_the_problem(X, y, message):
    with pytest.raises(ValueError, match=message):
        SGDRegressor().fit(X, y)


def test_a_step_too_large_for_the_data_is_capped_at_the_stable_one():
    X, y, _, _ = linear_data(n=2_000, d=8)
    reg = SGDRegressor(learning_rate="constant", eta0=50.0, random_state=0).fit(X, y)
    assert reg.step_scale_ < 0.05 and reg.curvature_ > 1  # the stable step is near 1 / curvature
    A = np.c_[X, np.ones(len(X))]
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    # A constant step keeps its noise: near the optimum, not at it (the adaptive default is).
    assert np.mean((reg.predict(X) - y) ** 2) < 2 * np.mean((A @ coef - y) ** 2)


def test_divergence_is_an_error_that_suggests_a_smaller_learning_rate(monkeypatch):
    import service.engine.sgd as sgd

    monkeypatch.setattr(sgd, "_STABLE", np.inf)  # without the step caps, eta0=50 diverges
    monkeypatch.setattr(sgd, "_ROW_STABLE", np.inf)
    X, y, _, _ = linear_data(n=2_000, d=8)
    with pytest.raises(DivergenceError, match="diverged.*smaller learning rate"):
        SGDRegressor(learning_rate="constant", eta0=50.0, random_state=0).fit(X, y)


def test_epoch_limit_without_converging_warns():
    X, y, _, _ = linear_data(n=2_000)
    with pytest.warns(ConvergenceWarning, match="max_iter=1 epochs without converging"):
        SGDRegressor(max_iter=1, random_state=0).fit(X, y)
