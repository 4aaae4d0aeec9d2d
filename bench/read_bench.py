"""Benchmark CSV readers on one 1,000,000-row x 20-feature file (about 200 MB).

    .venv/bin/python bench/read_bench.py [--rows 1000000] [--features 20] [--repeat 3] [--all]
                                         [--malloc-probe] [--baseline COMMIT]
                                         [--doc docs/benchmarks-data.md]

Every run of every reader is a fresh subprocess that reads the file once, so the table shows the
first read in a process, the one ``sgdserve train`` makes (a second read in the same process can
be much faster when the first one paid for fresh memory). Runs are interleaved (A B C, A B C, ...)
because the machine is shared; the table shows the best and the median wall time, and the median
CPU time (all threads), minor page faults and peak memory above the RSS before reading (VmHWM -
VmRSS). pandas is the reference and is imported only here, never by service/. The file is
generated once by ``service.data.make_regression`` + ``write_csv`` (7 significant digits) and
cached under the system temp directory. ``--baseline COMMIT`` adds the reader as it was at that
commit (``git archive`` of service/ into a temp directory), for before/after in the same run.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# A child benchmarking --baseline imports service/ from that commit's copy instead.
BASELINE_ROOT = "_READ_BENCH_SERVICE_ROOT"
sys.path.insert(0, os.environ.get(BASELINE_ROOT) or str(REPO))

from regression_file import regression_csv  # noqa: E402  (bench/, beside this file)

from service import data  # noqa: E402

TARGET = "y"
REFERENCE = "pandas.read_csv (reference)"


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


def read_polars(path: Path) -> np.ndarray:
    import polars as pl

    return pl.read_csv(path).to_numpy()


def read_pandas_pyarrow(path: Path) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(path, engine="pyarrow").to_numpy()


def _options():
    return data.EncodingOptions()


def read_sgdserve(path: Path) -> np.ndarray:
    """The whole training read: sample, infer the kinds, read, hash, split and encode."""
    if hasattr(data, "load"):
        return data.load(path, TARGET, _options(), fraction=0.2, seed=0).train.X
    return data.read_csv(path, TARGET).X  # a --baseline commit before the polars reader


def read_sgdserve_stream(path: Path) -> int:
    """The streamed read: the schema pass, then every chunk encoded (one epoch's reading)."""
    if not hasattr(data, "Stream"):
        return sum(len(chunk.y) for chunk in data.iter_chunks(path, TARGET))
    stream = data.Stream(path, TARGET, _options(), fraction=0.2, seed=0)
    stream.fit_schema()
    return sum(len(chunk.design.y) for chunk in stream)


READERS = {
    "numpy.loadtxt": read_loadtxt,
    "numpy.fromstring": read_fromstring,
    "numpy.genfromtxt": read_genfromtxt,
    "csv module + float()": read_csv_module,
    REFERENCE: read_pandas,
    "pandas.read_csv(engine='pyarrow')": read_pandas_pyarrow,
    "polars.read_csv (the library alone)": read_polars,
    "sgdserve load (read, infer, encode)": read_sgdserve,
    "sgdserve load, 2nd call in the process": read_sgdserve,
    "sgdserve Stream (schema pass + chunks)": read_sgdserve_stream,
}
SLOW = {"numpy.genfromtxt"}  # minutes on 200 MB: only with --all
SECOND_CALL = {"sgdserve load, 2nd call in the process"}  # one untimed read first
# glibc keeps blocks up to 32 MiB on the heap and does not trim: shows whether the reader still
# pays for fresh memory on every piece (it should make no difference now).
MALLOC_PROBE_NAME = "sgdserve load, MALLOC_MMAP_THRESHOLD_=32 MiB (diagnostic)"
MALLOC_PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
                    "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024)}


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process; a fresh exec has its own peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(name: str, path: Path) -> None:
    """Child process: time one read with one reader, print JSON."""
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # np.fromstring's text mode
    if name == REFERENCE or name.startswith("pandas"):
        import pandas  # noqa: F401  (import time is not read time)
    if name.startswith("polars"):
        import polars  # noqa: F401
    reader = READERS.get(name, read_sgdserve)  # the probe and the baseline read like read_csv
    if name in SECOND_CALL or name.endswith(BASELINE_SECOND):
        reader(path)
    before = memory_mb("VmRSS")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, start_cpu = time.perf_counter(), time.process_time()
    reader(path)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"seconds": seconds, "cpu": cpu, "faults": faults,
                      "peak_mb": memory_mb("VmHWM") - before}))


BASELINE_FIRST = "(before)"
BASELINE_SECOND = "(before), 2nd call in the process"


def baseline_copy(commit: str, into: Path) -> str:
    """service/ as it was at ``commit``, unpacked under ``into``; returns the short commit."""
    short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", commit], check=True,
                           capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "service"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return short


def make_file(rows: int, features: int) -> Path:
    """The benchmark CSV (make_regression, 7 significant digits), generated once."""
    return regression_csv(data, rows, features, TARGET)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != BASELINE_ROOT}
    env.update(extra)
    return env


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")),
                 platform.processor())
    return (f"{os.cpu_count()} cores ({model}), {platform.machine()}, Linux "
            f"{platform.release()}, Python {platform.python_version()}, numpy {np.__version__}")


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def table(results: dict[str, list[dict[str, float]]], rows: int, size_mb: float) -> str:
    ref_median = statistics.median(r["seconds"] for r in results[REFERENCE])
    ref_cpu = statistics.median(r["cpu"] for r in results[REFERENCE])
    out = io.StringIO()
    out.write("| reader | wall best (s) | wall median (s) | rows/s (best) | MB/s (best) "
              "| median vs pandas | CPU median (s, all threads) | CPU vs pandas "
              "| minor page faults (median) | peak extra memory (median) |\n")
    out.write("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    for name, runs in results.items():
        best = min(r["seconds"] for r in runs)
        median = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        faults = statistics.median(r["faults"] for r in runs)
        peak = statistics.median(r["peak_mb"] for r in runs)
        out.write(f"| {name} | {best:.2f} | {median:.2f} | {rows / best:,.0f} | "
                  f"{size_mb / best:.0f} | {median / ref_median:.2f}x | {cpu:.2f} | "
                  f"{cpu / ref_cpu:.2f}x | {faults:,.0f} | {peak:.0f} MB |\n")
    return out.getvalue()


BEGIN = "<!-- read_bench:begin (generated by bench/read_bench.py; edits inside are lost) -->"
END = "<!-- read_bench:end -->"


def write_doc(doc: Path, section: str) -> None:
    """Replace the generated section of ``doc`` (or append one), keeping the text around it."""
    text = doc.read_text() if doc.exists() else "# Benchmarks: reading CSV\n"
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(text)
    print(f"wrote {doc}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh processes per reader, interleaved (default 3)")
    parser.add_argument("--all", action="store_true", help="also numpy.genfromtxt (minutes)")
    parser.add_argument("--malloc-probe", action="store_true",
                        help="also sgdserve load with glibc's mmap threshold raised")
    parser.add_argument("--baseline", metavar="COMMIT",
                        help="also the reader as it was at this git commit")
    parser.add_argument("--doc", type=Path, help="write the results into this markdown file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, Path(args.file))
        return

    path = make_file(args.rows, args.features)
    size_mb = path.stat().st_size / 1e6
    with open(path, "rb") as fh:  # warm the page cache once, so the first run is not special
        while fh.read(1 << 24):
            pass
    names = [n for n in READERS if args.all or n not in SLOW]
    names += [MALLOC_PROBE_NAME] if args.malloc_probe else []
    envs = {MALLOC_PROBE_NAME: child_env(**MALLOC_PROBE_ENV)}
    baseline_dir = Path(tempfile.mkdtemp(prefix="read-bench-baseline-"))
    if args.baseline:
        short = baseline_copy(args.baseline, baseline_dir)
        for suffix in (BASELINE_FIRST, BASELINE_SECOND):
            name = f"sgdserve at {short} {suffix}"
            names.append(name)
            envs[name] = child_env(**{BASELINE_ROOT: str(baseline_dir)})
    started_at, load_before = dt.datetime.now(dt.UTC), load()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    try:
        for round_ in range(args.repeat):
            for name in names:
                out = subprocess.run(
                    [sys.executable, __file__, "--one", name, "--file", str(path)],
                    check=True, capture_output=True, text=True, env=envs.get(name, child_env()),
                )
                results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  round {round_ + 1}: {name}: {results[name][-1]['seconds']:.2f} s",
                      file=sys.stderr)
    finally:
        shutil.rmtree(baseline_dir, ignore_errors=True)
    command = "python bench/read_bench.py " + " ".join(sys.argv[1:])
    section = (
        f"Run {started_at:%Y-%m-%d %H:%M} UTC on {machine()}; load average "
        f"{load_before} at the start, {load()} at the end. Command: `{command}`\n\n"
        f"File: {path.name}, {args.rows:,} rows x {args.features + 1} columns "
        f"({args.features} features + target), {size_mb:.1f} MB; {args.repeat} fresh processes "
        f"per reader, interleaved.\n\n"
        + table(results, args.rows, size_mb)
    )
    print(section)
    if args.doc:
        write_doc(args.doc, section)


if __name__ == "__main__":
    main()
