"""Benchmark CSV readers on one 1,000,000-row x 20-feature file (about 200 MB).

    .venv/bin/python bench/read_bench.py [--rows 1000000] [--features 20] [--repeat 3] [--all]

Each reader runs in a fresh subprocess (so one reader's memory does not help or hurt the next),
best of ``--repeat`` runs; peak memory is the subprocess's peak RSS above what it had before
reading (VmHWM - VmRSS). pandas is the reference and is imported only here, never by service/.
The file is generated once by ``service.data.make_regression`` + ``write_csv`` (7 significant
digits) and cached under the system temp directory. Record results in docs/benchmarks-data.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service import data  # noqa: E402

TARGET = "y"


def read_loadtxt(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1)


def read_fromstring(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    header, body = raw.split(b"\n", 1)
    n_columns = header.count(b",") + 1
    values = np.fromstring(body.replace(b"\n", b",").decode(), sep=",")
    return values.reshape(-1, n_columns)


def read_genfromtxt(path: Path) -> np.ndarray:
    return np.genfromtxt(path, delimiter=",", skip_header=1)


def read_csv_module(path: Path) -> np.ndarray:
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        next(rows)
        return np.array([[float(v) for v in row] for row in rows])


def read_pandas(path: Path) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(path).to_numpy()


def read_sgdserve(path: Path) -> np.ndarray:
    return data.read_csv(path, TARGET).X


def read_sgdserve_1_thread(path: Path) -> np.ndarray:
    data._workers = lambda: 1  # type: ignore[assignment]
    return data.read_csv(path, TARGET).X


def read_sgdserve_stream(path: Path) -> int:
    return sum(len(chunk.y) for chunk in data.iter_chunks(path, TARGET))


READERS = {
    "numpy.loadtxt": read_loadtxt,
    "numpy.fromstring": read_fromstring,
    "numpy.genfromtxt": read_genfromtxt,
    "csv module + float()": read_csv_module,
    "pandas.read_csv (reference)": read_pandas,
    "sgdserve read_csv": read_sgdserve,
    "sgdserve read_csv, 1 thread": read_sgdserve_1_thread,
    "sgdserve iter_chunks (65,536 rows)": read_sgdserve_stream,
}
SLOW = {"numpy.genfromtxt"}  # minutes on 200 MB: only with --all


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process; a fresh exec has its own peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(name: str, path: Path, repeat: int) -> None:
    """Child process: time one reader, print JSON."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # np.fromstring's text mode
    if name == "pandas.read_csv (reference)":
        import pandas  # noqa: F401  (import time is not read time)
    before = memory_mb("VmRSS")
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        READERS[name](path)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    peak = memory_mb("VmHWM")
    print(json.dumps({"seconds": best, "cpu": best_cpu, "peak_mb": peak - before}))


def make_file(rows: int, features: int) -> Path:
    folder = Path(tempfile.gettempdir()) / "sgdserve-bench"
    folder.mkdir(exist_ok=True)
    path = folder / f"regression_{rows}x{features}.csv"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr)
        X, y, _, _ = data.make_regression(rows, features, seed=0)
        columns = {f"x{j}": X[:, j] for j in range(features)}
        columns[TARGET] = y
        tmp = path.with_suffix(".tmp")
        data.write_csv(tmp, columns, default_format="%.7g")
        tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--all", action="store_true", help="also numpy.genfromtxt (minutes)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, Path(args.file), args.repeat)
        return

    path = make_file(args.rows, args.features)
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path} ({size_mb:.1f} MB, {args.rows:,} rows x {args.features + 1} columns)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}; load average before: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    results: dict[str, dict[str, float]] = {}
    for name in READERS:
        if name in SLOW and not args.all:
            continue
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--file", str(path),
             "--repeat", str(args.repeat)],
            check=True, capture_output=True, text=True,
        )
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {name}: {results[name]['seconds']:.2f} s", file=sys.stderr)
    reference = results["pandas.read_csv (reference)"]["seconds"]
    table = io.StringIO()
    cpu_reference = results["pandas.read_csv (reference)"]["cpu"]
    table.write("| reader | seconds | rows/s | MB/s | vs pandas | CPU seconds (all threads) "
                "| CPU vs pandas | peak extra memory |\n")
    table.write("|---|---:|---:|---:|---:|---:|---:|---:|\n")
    for name, r in results.items():
        s, cpu = r["seconds"], r["cpu"]
        table.write(f"| {name} | {s:.2f} | {args.rows / s:,.0f} | {size_mb / s:.0f} | "
                    f"{s / reference:.2f}x | {cpu:.2f} | {cpu / cpu_reference:.2f}x | "
                    f"{r['peak_mb']:.0f} MB |\n")
    print(table.getvalue())


if __name__ == "__main__":
    main()
