"""Training benchmark: our SGD fit against scikit-learn, lstsq and the normal equations.

    python bench/train_bench.py [--rows 1000000] [--features 20] [--repeat 3] [--data raw]

One synthetic data set (features on raw scales from 0.1 to 1000, gaussian noise), an 80/20
split made before any timing, then each method fitted on the same training rows in this one
process. Prints wall time (best of --repeat) and holdout MSE as a ratio to lstsq's.
Numbers in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np


def make_data(n: int, d: int, kind: str, seed: int = 0):
    """``standard``: unit-variance features, where scikit-learn's defaults work as they are;
    ``raw``: scales from 0.1 to 1000 and offsets, as users' data come (scikit-learn then needs
    a StandardScaler in front)."""
    rng = np.random.default_rng(seed)
    if kind == "standard":
        X = rng.normal(size=(n, d))
        y = X @ rng.normal(size=d) + 3.0 + rng.normal(0, 1.0, n)
        return X, y
    scales = np.logspace(-1, 3, d)
    X = rng.normal(size=(n, d)) * scales + rng.uniform(-500, 500, d)
    coef = rng.normal(size=d) * 100 / scales
    y = X @ coef + 5.0 + rng.normal(0, 20.0, n)
    return X, y


def timed(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; best is kept")
    parser.add_argument("--sweep-batch", action="store_true",
                        help="also time our fit for several batch sizes (the default's evidence)")
    parser.add_argument("--data", choices=["standard", "raw"], default="standard",
                        help="feature scales (default: standard, as scikit-learn expects)")
    args = parser.parse_args()

    from sklearn.linear_model import SGDRegressor as SkSGD
    from sklearn.preprocessing import StandardScaler

    from service.engine import SGDRegressor

    X, y = make_data(args.rows, args.features, args.data)
    cut = int(0.8 * len(X))
    Xtr, Xte, ytr, yte = X[:cut], X[cut:], y[:cut], y[cut:]

    def holdout_mse(coef, intercept):
        r = Xte @ coef + intercept - yte
        return float(r @ r / len(r))

    rows = []

    def lstsq():
        A = np.c_[Xtr, np.ones(len(Xtr))]
        sol = np.linalg.lstsq(A, ytr, rcond=None)[0]
        return sol[:-1], sol[-1]

    t, (c, i) = timed(lstsq, args.repeat)
    ref = holdout_mse(c, i)
    rows.append(("numpy.linalg.lstsq", t, 1.0, "-"))

    def normal_equations():
        mu = Xtr.mean(0)
        ym = ytr.mean()
        G = Xtr.T @ Xtr - len(Xtr) * np.outer(mu, mu)
        rhs = Xtr.T @ ytr - len(Xtr) * mu * ym
        coef = np.linalg.solve(G, rhs)
        return coef, ym - mu @ coef

    t, (c, i) = timed(normal_equations, args.repeat)
    rows.append(("normal equations", t, holdout_mse(c, i) / ref, "-"))

    t_ours, ours = timed(lambda: SGDRegressor(random_state=0).fit(Xtr, ytr), args.repeat)
    rows.append(("sgdserve SGDRegressor (defaults)", t_ours,
                 holdout_mse(ours.coef_, ours.intercept_) / ref, ours.n_iter_))

    def sk_fit():
        if args.data == "standard":  # scikit-learn's defaults, on data as it expects it
            m = SkSGD(random_state=0).fit(Xtr, ytr)
            return m.coef_, m.intercept_[0], m.n_iter_
        scaler = StandardScaler().fit(Xtr)
        m = SkSGD(random_state=0).fit(scaler.transform(Xtr), ytr)
        coef = m.coef_ / scaler.scale_
        return coef, m.intercept_[0] - coef @ scaler.mean_, m.n_iter_

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_sk, (c, i, it) = timed(sk_fit, args.repeat)
    sk_name = "scikit-learn SGDRegressor (defaults)" if args.data == "standard" else (
        "scikit-learn StandardScaler + SGDRegressor (defaults)")
    rows.append((sk_name, t_sk, holdout_mse(c, i) / ref, it))

    if args.sweep_batch:
        for batch in (64, 256, 1024, "auto", 8192, 32768):
            t, m = timed(lambda b=batch: SGDRegressor(random_state=0, batch_size=b).fit(Xtr, ytr),
                         args.repeat)
            label = f"auto = {m._batch_size_for(len(Xtr))}" if batch == "auto" else batch
            rows.append((f"sgdserve, batch_size {label}", t,
                         holdout_mse(m.coef_, m.intercept_) / ref, m.n_iter_))

    print(f"{args.rows:,} x {args.features} rows ({args.data} features), 80/20 split; "
          f"{os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}; best of {args.repeat}")
    print()
    print("| method | wall time (s) | holdout MSE / lstsq | epochs |")
    print("|---|---:|---:|---:|")
    for name, t, ratio, epochs in rows:
        print(f"| {name} | {t:.3f} | {ratio:.5g} | {epochs} |")
    print()
    print(f"sgdserve / scikit-learn time: {t_ours / t_sk:.3f}x "
          f"(target <= 0.1x); sgdserve MSE ratio {rows[2][2]:.5f} (target <= 1.001)")


if __name__ == "__main__":
    main()
