"""`sgdserve train` end to end against pandas + scikit-learn on the same 1,000,000 x 20 CSV.

    python bench/cli_train_bench.py [--rounds 3] [--rows 1000000] [--features 20]
                                    [--no-stream] [--profile] [--malloc-probe]
                                    [--doc docs/benchmarks-cli.md]

Methods, each run in its own child process (wall time from spawn to exit, so interpreter
start and imports count for both sides; peak RSS is the child's own ``ru_maxrss`` from
``os.wait4``):

- ``sgdserve train``: the console script, ``--data FILE --target y --json``, into an empty store.
- ``pandas + scikit-learn``: ``pandas.read_csv``, the same holdout rows
  (``service.data.holdout_mask``, 20%, seed 0), ``StandardScaler`` fitted on the training rows,
  ``SGDRegressor()`` with its defaults (``random_state=0`` for repeatability), holdout RMSE.
- ``train(stream=True)``: our streamed path (chunks, a scaler pass, one read per epoch), from
  ``service.training.train`` because the CLI streams only files over 512 MiB.

The rounds are interleaved (A B C, A B C, ...) because the machine is shared; the table shows the
best and the median. ``--profile`` runs ``python -m cProfile`` on the CLI once and times the
pipeline phase by phase in fresh processes; ``--malloc-probe`` adds a run of the CLI with
glibc's mmap threshold raised, to show the reader's first-call cost. The CSV is generated once
into the temp directory (about 200 MB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regression_file import regression_csv  # noqa: E402  (bench/, beside this file)

from service import data  # noqa: E402

TARGET = "y"
HOLDOUT_FRACTION = 0.2
SEED = 0

SKLEARN_CHILD = """
import time
started = time.perf_counter()
import json, sys, warnings
import numpy as np
import pandas as pd
from sklearn.linear_model import SGDRegressor
from sklearn.preprocessing import StandardScaler
from service.data import holdout_mask

path, target, fraction, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
phases = {"import": time.perf_counter() - started}
t = time.perf_counter()
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
phases["read"] = time.perf_counter() - t
t = time.perf_counter()
y = df.pop(target).to_numpy()
X = df.to_numpy()
del df
mask = holdout_mask(0, len(y), fraction, seed)
X_train, y_train, X_hold, y_hold = X[~mask], y[~mask], X[mask], y[mask]
phases["split"] = time.perf_counter() - t
t = time.perf_counter()
scaler = StandardScaler().fit(X_train)
X_train = scaler.transform(X_train)
phases["scale"] = time.perf_counter() - t
t = time.perf_counter()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    reg = SGDRegressor(random_state=0).fit(X_train, y_train)
phases["fit"] = time.perf_counter() - t
t = time.perf_counter()
r = y_hold - reg.predict(scaler.transform(X_hold))
rmse = float(np.sqrt(np.mean(r * r)))
r2 = float(1 - np.sum(r * r) / np.sum((y_hold - y_hold.mean()) ** 2))
phases["evaluate"] = time.perf_counter() - t
print(json.dumps({"rmse": rmse, "r2": r2, "epochs": int(reg.n_iter_),
                  "holdout_rows": int(mask.sum()),
                  "phases": phases, "warnings": [str(w.message)[:80] for w in caught]}))
"""

STREAM_CHILD = """
import time
started = time.perf_counter()
import json, sys
from service.store import LocalStore
from service.training import train

path, target, models = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter()
result = train(LocalStore(models), path, target=target, stream=True)
print(json.dumps({"rmse": result.metrics["holdout"]["rmse"], "epochs": result.epochs,
                  "holdout_rows": result.metrics["holdout"]["rows"],
                  "phases": {"import": t - started, "train": time.perf_counter() - t},
                  "warnings": result.warnings}))
"""


@dataclass
class Run:
    seconds: float
    peak_mb: float
    report: dict
    error: str | None = None  # the last line of stderr of a child that failed (check=False)


@dataclass
class Method:
    name: str
    runs: list[Run] = field(default_factory=list)

    def best(self) -> float:
        return min(r.seconds for r in self.runs)

    def median(self) -> float:
        return statistics.median(r.seconds for r in self.runs)


def make_file(rows: int, features: int) -> Path:
    """The benchmark CSV (make_regression, 7 significant digits), generated once."""
    return regression_csv(data, rows, features, TARGET, SEED)


def sgdserve_script() -> str:
    script = Path(sys.executable).parent / "sgdserve"
    found = str(script) if script.exists() else shutil.which("sgdserve")
    if not found:
        sys.exit("the sgdserve console script is not installed (pip install -e .)")
    return found


def compile_bytecode(tree: Path = ROOT / "service") -> None:
    """Write the package's ``.pyc`` files, as ``pip install`` does, before any child is timed.

    Without them (an editable install under ``PYTHONDONTWRITEBYTECODE=1``, as on the machines
    these benchmarks ran on) every run recompiles the package, time a user's installed sgdserve
    never spends (``import service.cli``: 0.31-0.34 s against 0.19-0.23 s), while the
    baselines' libraries have their bytecode from pip.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SGDSERVE_") and not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _reset_peak_rss() -> float:
    """Reset this process's peak RSS to its current RSS and return that, in MB.

    Linux copies a process's high-water mark into a child at fork and keeps it over exec, so a
    child's ``ru_maxrss`` is at least the parent's peak before the spawn: after this benchmark
    wrote an 800 MB file, every child read 798 MB (seen here). ``clear_refs`` 5 (Linux 4.0+)
    resets the mark; what is left is the parent's current RSS, a floor the child's own peak is
    checked against.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        with open("/proc/self/status") as fh:
            rss = next(line for line in fh if line.startswith("VmRSS:"))
        return int(rss.split()[1]) / 1024
    except OSError:
        return 0.0


def run_child(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> Run:
    """Run one child; wall time from spawn to exit and the child's own peak RSS.

    A child that fails ends the benchmark, or with ``check=False`` gives a Run with ``error``.
    """
    floor_mb = _reset_peak_rss()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env or child_env())
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: leave no child running
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    peak_mb = usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    if peak_mb <= floor_mb:
        print(f"warning: {argv[0]}'s peak RSS reads {peak_mb:,.0f} MB, no more than this "
              f"process's own {floor_mb:,.0f} MB at the spawn: the child's own peak may be "
              "lower", file=sys.stderr)
    if proc.returncode != 0:
        if check:
            sys.exit(f"{shlex.join(argv)} failed ({proc.returncode}):\n{stderr}")
        last = (stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return Run(seconds, peak_mb, {}, error=f"exit {proc.returncode}: {last.strip()}")
    report = json.loads(stdout.strip().splitlines()[-1])
    return Run(seconds, peak_mb, report)


def profile_cli(path: Path, work: Path) -> list[tuple[str, float]]:
    """cProfile of one `sgdserve train`; cumulative seconds of the phases that matter."""
    stats_file = work / "train.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(stats_file), sgdserve_script(),
            "train", "--data", str(path), "--target", TARGET, "--model-dir",
            str(work / "profile-models"), "--json"]
    subprocess.run(argv, check=True, env=child_env(), stdout=subprocess.DEVNULL)
    stats = pstats.Stats(str(stats_file))
    wanted = [
        ("cli.py", "main", "whole command (after interpreter start)"),
        ("training.py", "train", "training.train"),
        ("dataset.py", "load", "  read, infer, split, encode (data.load)"),
        ("source.py", "read", "    polars reads the file"),
        ("inference.py", "add", "    column statistics (the schema)"),
        ("encode.py", "encode_parts", "    training and holdout designs"),
        ("dataset.py", "_holdout", "    holdout rule (data.holdout_mask)"),
        ("sgd.py", "fit", "  SGDRegressor.fit"),
        ("sgd.py", "_merge_stats", "    scaler statistics"),
        ("sgd.py", "_pass", "    epochs (SGD passes)"),
        ("sgd.py", "regression_metrics", "  metrics (train + holdout)"),
        ("training.py", "_gate", "  gate"),
        ("local.py", "save", "  store.save"),
    ]
    found: list[tuple[str, float]] = []
    for file, func, label in wanted:
        total = sum(v[3] for (f, _, fn), v in stats.stats.items()
                    if f.endswith(file) and fn == func)
        found.append((label, total))
    return found


PHASES_CHILD = """
import time
started = time.perf_counter()
import json, sys, warnings
from service import data
from service.engine import SGDRegressor, regression_metrics

path, target, fraction, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
phases = {"import": time.perf_counter() - started}
options = data.EncodingOptions()
t = time.perf_counter()
loaded = data.load(path, target, options, fraction=fraction, seed=seed)
phases["load, 1st call"] = time.perf_counter() - t
t = time.perf_counter()
again = data.load(path, target, options, fraction=fraction, seed=seed)
phases["load, 2nd call"] = time.perf_counter() - t
del again
train, hold = loaded.train, loaded.holdout
t = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    reg = SGDRegressor(random_state=seed).fit(train.X, train.y)
phases["fit"] = time.perf_counter() - t
t = time.perf_counter()
regression_metrics(train.y, reg.predict(train.X))
regression_metrics(hold.y, reg.predict(hold.X))
phases["metrics"] = time.perf_counter() - t
print(json.dumps({"phases": phases}))
"""

# glibc serves allocations above M_MMAP_THRESHOLD (128 KiB until the first free) with fresh
# mmap pages; this setting keeps the reader's per-piece temporaries on the heap instead.
MALLOC_PROBE = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
                "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024)}


def pipeline_phases(path: Path, rounds: int) -> list[tuple[str, dict[str, float]]]:
    """The in-memory pipeline's phases timed one by one in fresh children (median of rounds)."""
    argv = [sys.executable, "-c", PHASES_CHILD, str(path), TARGET, str(HOLDOUT_FRACTION),
            str(SEED)]
    found = []
    for label, env in (("default malloc", child_env()),
                       ("MALLOC_MMAP_THRESHOLD_=32 MiB", child_env(**MALLOC_PROBE))):
        runs = [run_child(argv, env).report["phases"] for _ in range(rounds)]
        found.append((label, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    return found


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu if ln.startswith("Model name")),
                 platform.processor())
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
            f"Python {platform.python_version()}; load average at start "
            f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


def versions() -> str:
    import numpy
    import pandas
    import sklearn

    return (f"numpy {numpy.__version__}, pandas {pandas.__version__}, "
            f"scikit-learn {sklearn.__version__}")


def table(methods: list[Method], reference: Method) -> str:
    lines = [
        "| method | wall best (s) | wall median (s) | ours / theirs (best, median) "
        "| holdout RMSE | epochs | peak RSS (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        ratio = ("1.00, 1.00" if m is reference else
                 f"{m.best() / reference.best():.2f}, {m.median() / reference.median():.2f}")
        rmses = sorted({round(r.report["rmse"], 6) for r in m.runs})
        epochs = sorted({r.report["epochs"] for r in m.runs})
        peak = statistics.median(r.peak_mb for r in m.runs)
        lines.append(
            f"| {m.name} | {m.best():.2f} | {m.median():.2f} | {ratio} | "
            f"{', '.join(f'{v:.4f}' for v in rmses)} | {', '.join(map(str, epochs))} | "
            f"{peak:,.0f} |"
        )
    return "\n".join(lines)


def phases_table(methods: list[Method]) -> str:
    lines = ["| method | in-process phases, median of the rounds (s) |", "|---|---|"]
    for m in methods:
        names = list(m.runs[0].report.get("phases", {}))
        parts = [f"{n} {statistics.median(r.report['phases'][n] for r in m.runs):.2f}"
                 for n in names]
        lines.append(f"| {m.name} | {', '.join(parts)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed path")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one sgdserve train and break its time down")
    parser.add_argument("--malloc-probe", action="store_true",
                        help="also run sgdserve train with MALLOC_MMAP_THRESHOLD_=32 MiB")
    parser.add_argument("--doc", type=Path, help="write the results to this markdown file")
    args = parser.parse_args()

    path = make_file(args.rows, args.features)
    size_mb = path.stat().st_size / 1e6
    with open(path, "rb") as fh:  # warm the page cache once, so round 1 is not special
        while fh.read(1 << 24):
            pass
    work = Path(tempfile.mkdtemp(prefix="sgdserve-cli-bench-"))
    script = sgdserve_script()
    compile_bytecode()
    ours = Method("`sgdserve train` (in memory)")
    theirs = Method("pandas.read_csv + StandardScaler + SGDRegressor")
    streamed = Method("`train(stream=True)` (chunks)")
    probe = Method("`sgdserve train`, MALLOC_MMAP_THRESHOLD_=32 MiB (diagnostic)")
    methods = [ours, theirs] + ([] if args.no_stream else [streamed])
    methods += [probe] if args.malloc_probe else []
    envs = {probe.name: child_env(**MALLOC_PROBE)}
    commands = {
        ours.name: lambda r: [script, "train", "--data", str(path), "--target", TARGET,
                              "--model-dir", str(work / f"ours-{r}"), "--json"],
        theirs.name: lambda r: [sys.executable, "-c", SKLEARN_CHILD, str(path), TARGET,
                                str(HOLDOUT_FRACTION), str(SEED)],
        streamed.name: lambda r: [sys.executable, "-c", STREAM_CHILD, str(path), TARGET,
                                  str(work / f"streamed-{r}")],
        probe.name: lambda r: [script, "train", "--data", str(path), "--target", TARGET,
                               "--model-dir", str(work / f"probe-{r}"), "--json"],
    }
    started_at = dt.datetime.now(dt.UTC)
    host = machine()
    try:
        for r in range(args.rounds):
            for m in methods:
                run = run_child(commands[m.name](r), envs.get(m.name))
                if m in (ours, probe):  # the CLI's --json result: same keys as the children print
                    res = run.report
                    run.report = {"rmse": res["metrics"]["holdout"]["rmse"],
                                  "epochs": res["epochs"],
                                  "holdout_rows": res["metrics"]["holdout"]["rows"],
                                  "phases": {"train": res["seconds"]},
                                  "warnings": res["warnings"]}
                m.runs.append(run)
                print(f"round {r + 1}: {m.name}: {run.seconds:.2f} s, "
                      f"RMSE {run.report['rmse']:.4f}, {run.report['epochs']} epochs, "
                      f"peak {run.peak_mb:,.0f} MB", file=sys.stderr, flush=True)
        rows = {r.report["holdout_rows"] for m in methods for r in m.runs}
        assert len(rows) == 1, f"methods held out different rows: {rows}"
        profile = profile_cli(path, work) if args.profile else None
        phases = pipeline_phases(path, args.rounds) if args.profile else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    command = "python bench/cli_train_bench.py " + " ".join(sys.argv[1:])
    out = [
        f"{args.rows:,} rows x {args.features} features, {size_mb:.0f} MB CSV "
        f"({path.name}); holdout {HOLDOUT_FRACTION:.0%} = {rows.pop():,} rows, the same for "
        f"every method; {args.rounds} interleaved rounds.",
        "",
        table(methods, theirs),
        "",
        phases_table(methods),
    ]
    if profile is not None:
        out += ["", "Where `sgdserve train` spends its time (one cProfile run; cumulative "
                "seconds, profiler overhead included):", "",
                "| phase | seconds |", "|---|---:|"]
        out += [f"| {label} | {secs:.2f} |" for label, secs in profile]
        names = list(phases[0][1])
        out += ["", "The same pipeline timed phase by phase in a fresh process (median of "
                f"{args.rounds}; the reader is called twice to show its first-call cost):", "",
                "| malloc | " + " | ".join(names) + " |",
                "|---|" + "---:|" * len(names)]
        out += [f"| {label} | " + " | ".join(f"{p[n]:.2f}" for n in names) + " |"
                for label, p in phases]
    report = "\n".join(out)
    print(report)
    if args.doc:
        write_doc(args.doc, report, command, host, started_at)


def write_doc(doc: Path, report: str, command: str, host: str, when: dt.datetime,
              script: str = "cli_train_bench", title: str = "# Benchmark: `sgdserve train`",
              library_versions: str | None = None) -> None:
    """Replace ``script``'s generated section of ``doc`` (or add it), keeping the text around it."""
    begin = (f"<!-- {script}:begin (generated by bench/{script}.py; edits inside are lost) -->")
    end = f"<!-- {script}:end -->"
    section = "\n".join([
        begin,
        f"Run {when:%Y-%m-%d %H:%M} UTC on {host}.",
        f"{library_versions or versions()}. Command: `{command}`",
        "",
        report,
        end,
    ])
    text = doc.read_text() if doc.exists() else f"{title}\n"
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n{begin}\n{end}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    doc.write_text(head + section + tail)
    print(f"wrote {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
