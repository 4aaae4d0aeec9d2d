"""Issue 10's benchmarks: `sgdserve train` on mixed, numeric and Parquet files against scikit-learn.

    python bench/tabular_bench.py [--rounds 3] [--cases mixed,numeric,full,parquet]
                                  [--rows 1000000] [--check-optimum]
                                  [--doc docs/benchmarks-tabular.md]

Cases (files from bench/tabular_data.py, generated once into the temp directory):

- ``mixed``: the 1,000,000-row mixed CSV (10 numeric columns, 3 with 5% empty cells; 5 text
  columns of 5 .. 10,000 Zipf-distributed levels, one with 5% empty; full precision), target
  ``price``. Baseline: ``pandas.read_csv`` + ColumnTransformer(SimpleImputer(mean,
  add_indicator=True) + StandardScaler, SimpleImputer(constant) + OneHotEncoder(
  handle_unknown="ignore")) + TransformedTargetRegressor(SGDRegressor, StandardScaler).
- ``mixed-parquet``: the same rows as Parquet, the same pipeline after ``pandas.read_parquet``
  (no target in the issue; not run unless asked for).
- ``numeric``: the 200 MB 1,000,000 x 20 CSV of bench/regression_file.py (7 significant digits).
- ``full``: 500,000 x 20 as pandas' ``to_csv`` writes it (up to 17 significant digits).
- ``parquet``: the rows of ``full`` as Parquet.
  Baseline of the last three: pandas + StandardScaler + SGDRegressor (bench/cli_train_bench.py).

Every run is a fresh child process (wall time spawn to exit, imports included; peak RSS is the
child's ``ru_maxrss``); rounds are interleaved, case by case, with the two sides' order swapped
every round. Both sides hold out the same rows: ``service.data.holdout_mask`` (20%, seed 0),
which ``sgdserve train`` uses and the baselines import. The sgdserve side runs the installed
console script of this checkout, ``sgdserve train --data FILE --target T --json``; when it fails
(an older reader refuses text or Parquet) the table shows its error and the run goes on.

The exact least-squares optimum on the mixed data's one-hot matrix (the baseline's own
preprocessing, fitted on the training rows) is computed once, in a child, and cached beside the
file: LSQR on the sparse matrix with its columns scaled to unit norm, run to machine precision
(a second or two; the issue's Ridge(alpha=1e-3, solver="lsqr") took 124 s and stops at its
tol=1e-4; ``--check-optimum`` runs that too, once, and caches its RMSE for comparison).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import tabular_data  # noqa: E402  (bench/, beside this file)
from cli_train_bench import (  # noqa: E402
    HOLDOUT_FRACTION,
    SEED,
    SKLEARN_CHILD,
    Method,
    Run,
    compile_bytecode,
    machine,
    run_child,
    sgdserve_script,
    write_doc,
)
from cli_train_bench import child_env as _child_env  # noqa: E402

MIXED_CHILD = """
import time
started = time.perf_counter()
import json, sys, warnings
import numpy as np
import pandas as pd
from sklearn.compose import TransformedTargetRegressor
from sklearn.linear_model import SGDRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from service.data import holdout_mask
from sklearn_pipelines import preprocessor

path, target, fraction, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
phases = {"import": time.perf_counter() - started}
t = time.perf_counter()
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
phases["read"] = time.perf_counter() - t
t = time.perf_counter()
y = df.pop(target).to_numpy(np.float64)
mask = holdout_mask(0, len(y), fraction, seed)
train, hold = df[~mask], df[mask]
del df
phases["split"] = time.perf_counter() - t
t = time.perf_counter()
model = make_pipeline(preprocessor(train), TransformedTargetRegressor(
    regressor=SGDRegressor(random_state=0), transformer=StandardScaler()))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.fit(train, y[~mask])
phases["encode + fit"] = time.perf_counter() - t
t = time.perf_counter()
r = y[mask] - model.predict(hold)
rmse = float(np.sqrt(np.mean(r * r)))
r2 = float(1 - np.sum(r * r) / np.sum((y[mask] - y[mask].mean()) ** 2))
phases["evaluate"] = time.perf_counter() - t
sgd = model[-1].regressor_
print(json.dumps({"rmse": rmse, "r2": r2, "epochs": int(sgd.n_iter_),
                  "holdout_rows": int(mask.sum()), "phases": phases,
                  "warnings": [str(w.message)[:80] for w in caught]}))
"""

OPTIMUM_CHILD = """
import time
started = time.perf_counter()
import json, sys, warnings
import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr
from service.data import holdout_mask
from sklearn_pipelines import preprocessor

path, target, fraction, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
check_ridge = sys.argv[5] == "1"
df = pd.read_csv(path)
y = df.pop(target).to_numpy(np.float64)
mask = holdout_mask(0, len(y), fraction, seed)
train, hold = df[~mask], df[mask]
pre = preprocessor(train).fit(train)
A, H = sp.csr_matrix(pre.transform(train)), sp.csr_matrix(pre.transform(hold))
y_train, y_hold = y[~mask], y[mask]
prepared = time.perf_counter()

def metrics(pred, actual):
    r = actual - pred
    return {"rmse": float(np.sqrt(np.mean(r * r))),
            "r2": float(1 - r @ r / np.sum((actual - actual.mean()) ** 2))}

# Least squares with an intercept on the one-hot matrix. Columns are equilibrated (scaled to
# unit norm): the one-hot columns of a text column are then orthonormal, and LSQR converges to
# machine precision in a few dozen iterations instead of stalling on rare levels. y is centred.
B = sp.hstack([A, np.ones((A.shape[0], 1))], format="csc")
norms = np.sqrt(np.asarray(B.multiply(B).sum(axis=0)).ravel())
scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
Bs = (B @ sp.diags(scale)).tocsr()
y_mean = y_train.mean()
solution = lsqr(Bs, y_train - y_mean, atol=0.0, btol=0.0, conlim=0.0, iter_lim=10000)
w = solution[0] * scale
w[-1] += y_mean
residual = y_train - B @ w
# Optimality, column by column: the largest |cosine| between a column and the residual.
cosine = float(np.max(np.abs(Bs.T @ residual)) / np.linalg.norm(residual))
out = {"method": "LSQR on unit-norm columns, run to machine precision",
       "seconds": time.perf_counter() - prepared, "iterations": int(solution[2]),
       "stop": int(solution[1]), "columns": int(A.shape[1]), "train": metrics(B @ w, y_train),
       "holdout": metrics(H @ w[:-1] + w[-1], y_hold), "holdout_rows": int(mask.sum()),
       "max_cosine": cosine}
if check_ridge:
    from sklearn.linear_model import Ridge
    t = time.perf_counter()
    ridge = Ridge(alpha=1e-3, solver="lsqr").fit(A, y_train)
    out["ridge"] = {"seconds": time.perf_counter() - t,
                    "train": metrics(ridge.predict(A), y_train),
                    "holdout": metrics(ridge.predict(H), y_hold)}
print(json.dumps(out))
"""

OPTIMUM_VERSION = 2  # part of the cache file's name: bump when OPTIMUM_CHILD changes


def child_env() -> dict[str, str]:
    """cli_train_bench's child environment, with bench/ importable (sklearn_pipelines)."""
    env = _child_env()
    env["PYTHONPATH"] = str(BENCH) + os.pathsep + env["PYTHONPATH"]
    return env


@dataclass
class Case:
    key: str
    title: str
    file: Callable[[], Path]
    target: str
    baseline: str  # the baseline child's code
    baseline_name: str
    # Issue 10's targets: sgdserve / baseline wall time, peak RSS, holdout RMSE / optimum's.
    wall: float | None = None
    peak: float | None = None
    optimum: float | None = None
    methods: list[Method] = field(default_factory=list)


MIXED_BASELINE = ("pandas + ColumnTransformer + TransformedTargetRegressor(SGDRegressor, "
                  "StandardScaler)")
NUMERIC_BASELINE = "pandas + StandardScaler + SGDRegressor"


def cases(rows: int) -> dict[str, Case]:
    """Every case by key; ``rows`` scales the 1,000,000-row files (the others take half)."""
    half = max(rows // 2, 1000)
    return {c.key: c for c in [
        Case("mixed", "mixed CSV (10 numeric, 5 text columns, gaps; full precision)",
             lambda: tabular_data.mixed_csv(rows), "price", MIXED_CHILD, MIXED_BASELINE,
             wall=0.25, peak=0.5, optimum=1.01),
        Case("mixed-parquet", "mixed, as Parquet",
             lambda: tabular_data.mixed_parquet(rows), "price", MIXED_CHILD, MIXED_BASELINE),
        Case("numeric", "all-numeric CSV, 7 significant digits",
             lambda: tabular_data.numeric_csv(rows), "y", SKLEARN_CHILD, NUMERIC_BASELINE,
             wall=0.25),
        Case("full", "all-numeric CSV as pandas' to_csv writes it (full precision)",
             lambda: tabular_data.numeric_full_csv(half), "y", SKLEARN_CHILD, NUMERIC_BASELINE,
             wall=0.25),
        Case("parquet", "all-numeric Parquet (the rows of the full-precision CSV)",
             lambda: tabular_data.numeric_parquet(half), "y", SKLEARN_CHILD, NUMERIC_BASELINE,
             wall=0.1),
    ]}


def optimum(path: Path, target: str, check_ridge: bool) -> dict:
    """The exact least-squares optimum's holdout metrics for ``path`` (computed once, cached)."""
    cache = path.with_name(f"{path.name}.optimum_v{OPTIMUM_VERSION}.json")
    found = json.loads(cache.read_text()) if cache.exists() else None
    if found is None or (check_ridge and "ridge" not in found):
        print(f"computing the least-squares optimum of {path.name} (once) ...", file=sys.stderr,
              flush=True)
        argv = [sys.executable, "-c", OPTIMUM_CHILD, str(path), target, str(HOLDOUT_FRACTION),
                str(SEED), "1" if check_ridge else "0"]
        run = run_child(argv, child_env())
        found = {**run.report, "wall_seconds": run.seconds, "peak_mb": run.peak_mb}
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(found, indent=1))
        tmp.replace(cache)
    return found


def sgdserve_report(run: Run) -> Run:
    """The CLI's --json result in the children's keys (whatever of them it has)."""
    if run.error is None:
        res = run.report
        holdout = res.get("metrics", {}).get("holdout", {})
        run.report = {"rmse": holdout.get("rmse"), "r2": holdout.get("r2"),
                      "epochs": res.get("epochs"), "holdout_rows": holdout.get("rows"),
                      "phases": {"train": res.get("seconds")}, "warnings": res.get("warnings")}
    return run


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def results_table(selected: list[Case], optima: dict[str, dict]) -> str:
    lines = [
        "| case | method | wall best (s) | wall median (s) | sgdserve / baseline (best, median) "
        "| peak RSS median (MB) | peak ratio | holdout RMSE | holdout R^2 | RMSE / optimum's "
        "| epochs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in selected:
        ours, theirs = case.methods
        best = {m.name: min(r.seconds for r in m.runs) for m in case.methods}
        med = {m.name: _median([r.seconds for r in m.runs]) for m in case.methods}
        peak = {m.name: _median([r.peak_mb for r in m.runs]) for m in case.methods}
        opt = optima.get(case.key)
        for m in case.methods:
            failed = [r for r in m.runs if r.error]
            if failed:
                lines.append(f"| {case.key} | {m.name} | failed: `{failed[0].error[:160]}` "
                             f"| | | | | | | | |")
                continue
            ok = not any(r.error for r in ours.runs)
            if m is ours and ok:
                ratio = (f"{best[m.name] / best[theirs.name]:.2f}, "
                         f"{med[m.name] / med[theirs.name]:.2f}")
                peak_ratio = f"{peak[m.name] / peak[theirs.name]:.2f}"
            else:
                ratio, peak_ratio = ("1.00, 1.00", "1.00") if m is theirs else ("-", "-")
            rmse = _median([r.report["rmse"] for r in m.runs if r.report.get("rmse") is not None]
                           or [float("nan")])
            r2s = [r.report["r2"] for r in m.runs if r.report.get("r2") is not None]
            r2 = _median(r2s) if r2s else None
            vs = f"{rmse / opt['holdout']['rmse']:.4f}" if opt else "-"
            epochs = sorted({r.report.get("epochs") for r in m.runs} - {None})
            lines.append(
                f"| {case.key} | {m.name} | {best[m.name]:.2f} | {med[m.name]:.2f} | {ratio} | "
                f"{peak[m.name]:,.0f} | {peak_ratio} | {rmse:.4f} | {_fmt(r2, '.4f')} | {vs} | "
                f"{', '.join(map(str, epochs)) or '-'} |")
    return "\n".join(lines)


def targets_table(selected: list[Case], optima: dict[str, dict]) -> str:
    lines = ["| target (issue 10) | measured (best, median) | met |", "|---|---|---|"]
    for case in selected:
        ours, theirs = case.methods
        failed = next((r.error for r in ours.runs if r.error), None)
        checks = []
        if case.wall is not None:
            checks.append(("wall time", case.wall, lambda m: [r.seconds for r in m.runs]))
        if case.peak is not None:
            checks.append(("peak RSS", case.peak, lambda m: [r.peak_mb for r in m.runs]))
        for label, limit, values in checks:
            name = f"{case.key}: sgdserve {label} <= {limit}x the baseline's"
            if failed:
                lines.append(f"| {name} | sgdserve failed | no |")
                continue
            b = min(values(ours)) / min(values(theirs))
            m = _median(values(ours)) / _median(values(theirs))
            lines.append(f"| {name} | {b:.2f}x, {m:.2f}x | {'yes' if m <= limit else 'no'} |")
        if case.optimum is not None:
            name = f"{case.key}: sgdserve holdout RMSE <= {case.optimum}x the optimum's"
            opt = optima[case.key]["holdout"]["rmse"]
            rmses = [r.report["rmse"] for r in ours.runs if r.report.get("rmse") is not None]
            if failed or not rmses:
                lines.append(f"| {name} | sgdserve failed | no |")
            else:
                worst = max(rmses) / opt
                lines.append(f"| {name} | {min(rmses) / opt:.4f}x, worst {worst:.4f}x | "
                             f"{'yes' if worst <= case.optimum else 'no'} |")
    return "\n".join(lines)


def optimum_lines(optima: dict[str, dict]) -> list[str]:
    out = []
    for key, o in optima.items():
        out.append(f"Least-squares optimum of `{key}` on the one-hot matrix ({o['columns']:,} "
                   f"columns + intercept; {o['method']}, {o['iterations']} iterations, "
                   f"{o['seconds']:.1f} s after encoding; largest |cosine| between a column "
                   f"and the residual {o['max_cosine']:.1e}): holdout RMSE "
                   f"{o['holdout']['rmse']:.5f}, R^2 {o['holdout']['r2']:.5f} "
                   f"(train RMSE {o['train']['rmse']:.5f}).")
        if "ridge" in o:
            ridge = o["ridge"]
            out.append(f"scikit-learn's Ridge(alpha=1e-3, solver=\"lsqr\") on the same matrix: "
                       f"{ridge['seconds']:.0f} s, holdout RMSE {ridge['holdout']['rmse']:.5f}, "
                       f"R^2 {ridge['holdout']['r2']:.5f} (train RMSE "
                       f"{ridge['train']['rmse']:.5f}).")
    return out


def versions() -> str:
    import numpy
    import pandas
    import pyarrow
    import scipy
    import sklearn

    return (f"numpy {numpy.__version__}, pandas {pandas.__version__}, pyarrow "
            f"{pyarrow.__version__}, scipy {scipy.__version__}, scikit-learn "
            f"{sklearn.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--cases", default="mixed,numeric,full,parquet",
                        help="comma-separated, from mixed, mixed-parquet, numeric, full, parquet")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the mixed and numeric files (full/parquet: half)")
    parser.add_argument("--check-optimum", action="store_true",
                        help="also fit scikit-learn's Ridge(alpha=1e-3, lsqr) once (minutes)")
    parser.add_argument("--doc", type=Path, help="write the results into this markdown file")
    args = parser.parse_args()

    every = cases(args.rows)
    unknown = set(args.cases.split(",")) - set(every)
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    selected = [every[k] for k in args.cases.split(",")]
    files = {c.key: c.file() for c in selected}
    optima = {c.key: optimum(files[c.key], c.target, args.check_optimum)
              for c in selected if c.optimum is not None}
    for path in files.values():  # warm the page cache once, so round 1 is not special
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass

    script = sgdserve_script()
    compile_bytecode()
    work = Path(tempfile.mkdtemp(prefix="sgdserve-tabular-bench-"))
    env = child_env()
    started_at = dt.datetime.now(dt.UTC)
    host = machine()
    for case in selected:
        case.methods = [Method("`sgdserve train`"), Method(case.baseline_name)]
    try:
        for r in range(args.rounds):
            for case in selected:
                path = files[case.key]
                ours, theirs = case.methods
                order = case.methods if r % 2 == 0 else case.methods[::-1]
                for m in order:
                    if m is ours:
                        argv = [script, "train", "--data", str(path), "--target", case.target,
                                "--model-dir", str(work / f"{case.key}-{r}"), "--json"]
                        run = sgdserve_report(run_child(argv, env, check=False))
                    else:
                        run = run_child([sys.executable, "-c", case.baseline, str(path),
                                         case.target, str(HOLDOUT_FRACTION), str(SEED)], env)
                    m.runs.append(run)
                    what = run.error or (f"RMSE {run.report['rmse']:.4f}"
                                         if run.report.get("rmse") is not None else "")
                    print(f"round {r + 1}: {case.key}: {m.name}: {run.seconds:.2f} s, "
                          f"peak {run.peak_mb:,.0f} MB, {what}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for case in selected:
        held = {r.report.get("holdout_rows") for m in case.methods for r in m.runs} - {None}
        held |= {optima[case.key]["holdout_rows"]} if case.key in optima else set()
        assert len(held) == 1, f"{case.key}: the methods held out different rows: {held}"

    command = "python bench/tabular_bench.py " + " ".join(sys.argv[1:])
    out = ["Files (generated by bench/tabular_data.py):", ""]
    for case in selected:
        path = files[case.key]
        out.append(f"- `{case.key}`: {case.title}; `{path.name}`, "
                   f"{path.stat().st_size / 1e6:,.0f} MB, target `{case.target}`.")
    out += ["", f"{args.rounds} interleaved rounds; holdout: 20% of the rows by "
            "`service.data.holdout_mask` (seed 0), the same rows for every method.", "",
            results_table(selected, optima), ""]
    out += optimum_lines(optima)
    out += ["", targets_table(selected, optima)]
    phases = ["", "| case | method | in-process phases, median of the rounds (s) |",
              "|---|---|---|"]
    for case in selected:
        for m in case.methods:
            good = [r for r in m.runs if not r.error and r.report.get("phases")]
            if good:
                names = [n for n, v in good[0].report["phases"].items() if v is not None]
                parts = [f"{n} {_median([r.report['phases'][n] for r in good]):.2f}"
                         for n in names]
                phases.append(f"| {case.key} | {m.name} | {', '.join(parts)} |")
    report = "\n".join(out + phases)
    print(report)
    if args.doc:
        write_doc(args.doc, report, command, host, started_at, script="tabular_bench",
                  title="# Benchmarks: tabular data (issue 10)", library_versions=versions())


if __name__ == "__main__":
    main()
