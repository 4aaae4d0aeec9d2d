"""Benchmark the Dask engine against the local engine on the same 10,000,000 x 20 rows.

    .venv/bin/python bench/dask_bench.py [--rows 10000000] [--features 20] [--files 20]
                                         [--workers 2] [--data /work/scratch/dask-data]
                                         [--no-whole] [--json results.json]

The data is --files Parquet files of consecutive rows, written once and cached in --data
(never in the repository): features with raw scales from 0.1 to 1000, y = X @ coef + 40 +
N(0, 1), every feature moving y by 2 to 10 per standard deviation.

Each engine trains through ``service.training.train`` (the pipeline ``sgdserve train`` runs)
into a store of its own, one after the other in this process:

- local, streamed: what ``sgdserve train`` does with files larger than 512 MiB (a statistics
  pass, a scaler pass, one read per epoch, an evaluation pass);
- local, read whole (``stream=False``; skipped with --no-whole): every row in memory;
- dask: a ``LocalCluster`` of --workers processes (one thread each, every port on 127.0.0.1),
  started before the clock; its parts come from the manifest (``engine.seconds``).

Then lstsq on the same training rows (``numpy.linalg.lstsq`` on the design ``data.load``
reads, which holds out the same rows), and every engine's holdout MSE over lstsq's.
Prints a table and, last, one JSON object (also written to --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service import data  # noqa: E402
from service.store import LocalStore  # noqa: E402
from service.training import train  # noqa: E402

TARGET = "y"
SEED = 0


def dataset(folder: Path, rows: int, features: int, files: int) -> Path:
    """The Parquet files, generated unless ``folder`` already holds these exact ones."""
    import polars as pl

    meta = {"rows": rows, "features": features, "files": files, "seed": SEED, "version": 1}
    marker = folder / "_meta.json"  # "_": not part of the dataset
    if marker.exists() and json.loads(marker.read_text()) == meta:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    rng = np.random.default_rng(SEED)
    scale = 10.0 ** rng.uniform(-1, 3, features)
    offset = rng.normal(0, 3, features) * scale
    coef = rng.choice([-1.0, 1.0], features) * rng.uniform(2, 10, features) / scale
    bounds = np.linspace(0, rows, files + 1).astype(np.int64)
    for i in range(files):
        n = int(bounds[i + 1] - bounds[i])
        part = np.random.default_rng([SEED, i])
        X = part.standard_normal((n, features)) * scale + offset
        y = X @ coef + 40.0 + part.normal(0, 1.0, n)
        frame = pl.DataFrame({f"x{j}": X[:, j] for j in range(features)}).with_columns(
            pl.Series(TARGET, y))
        frame.write_parquet(folder / f"part-{i:04d}.parquet")
        print(f"  wrote part {i + 1}/{files} ({n} rows)", file=sys.stderr)
    marker.write_text(json.dumps(meta))
    return folder


class Phases:
    """Wall time between the pipeline's progress calls: how long each phase took."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, int]] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.events.append((time.perf_counter(), phase, done))

    def durations(self, end: float) -> dict[str, float]:
        out: dict[str, float] = {}
        marks = [*self.events, (end, "end", 0)]
        for (t0, phase, _), (t1, _, _) in zip(marks[:-1], marks[1:], strict=True):
            out[phase] = out.get(phase, 0.0) + (t1 - t0)
        return out


def run_engine(name: str, folder: Path, store_root: Path, **kw: Any) -> dict[str, Any]:
    store = LocalStore(store_root / name)
    phases = Phases()
    started = time.perf_counter()
    result = train(store, folder, target=TARGET, progress=phases, force=True, **kw)
    ended = time.perf_counter()
    manifest = store.get(result.version)
    return {
        "engine": name,
        "seconds": ended - started,
        "phases": phases.durations(ended),
        "epochs": result.epochs,
        "holdout": result.metrics["holdout"],
        "manifest_engine": manifest["engine"],
        "coefficients": result.coefficients,
    }


def lstsq_reference(folder: Path) -> dict[str, Any]:
    """lstsq on the training rows every engine trained on; its MSE on their holdout rows."""
    started = time.perf_counter()
    loaded = data.load(folder, TARGET, data.EncodingOptions(), fraction=0.2, seed=SEED)
    A = np.column_stack([loaded.train.X, np.ones(len(loaded.train))])
    solution = np.linalg.lstsq(A, loaded.train.y, rcond=None)[0]
    del A
    hold = loaded.holdout
    predicted = hold.X @ solution[:-1] + solution[-1]
    return {
        "seconds": time.perf_counter() - started,
        "holdout_mse": float(np.mean((hold.y - predicted) ** 2)),
        "holdout_rows": len(hold),
        "coefficients": dict(zip(loaded.schema.names, solution[:-1].tolist(), strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path("/work/scratch/dask-data"))
    parser.add_argument("--no-whole", action="store_true", help="skip the local engine read "
                        "whole (it holds every row in memory)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import distributed

    from service.cluster import DaskEngine, environ_kept

    folder = dataset(args.data / f"{args.rows}x{args.features}-{args.files}", args.rows,
                     args.features, args.files)
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "load_average": os.getloadavg(), "python": platform.python_version()}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dask-bench-") as tmp:
        root = Path(tmp)
        results.append(run_engine("local (streamed)", folder, root))
        if not args.no_whole:
            results.append(run_engine("local (read whole)", folder, root, stream=False))
        begun = time.perf_counter()
        with environ_kept(), distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, host="127.0.0.1",
                                      dashboard_address="127.0.0.1:0",
                                      silence_logs=40) as cluster, \
                distributed.Client(cluster) as client:
            client.wait_for_workers(args.workers)
            start_up = time.perf_counter() - begun
            dask = run_engine("dask", folder, root, engine=DaskEngine(client=client))
        dask["cluster_start_seconds"] = start_up
        results.append(dask)
    reference = lstsq_reference(folder)

    print(f"\n{args.rows:,} x {args.features} rows in {args.files} Parquet files, "
          f"{args.workers} Dask workers; {machine['cpus']} cores, load {machine['load_average']}")
    print(f"{'engine':<20} {'wall s':>8} {'epochs':>7} {'holdout MSE / lstsq':>20}  parts")
    for r in results:
        ratio = r["holdout"]["rmse"] ** 2 / reference["holdout_mse"]
        r["mse_over_lstsq"] = ratio
        if r["engine"] == "dask":
            seconds = r["manifest_engine"]["seconds"]
            parts = {k: seconds[k] for k in ("statistics", "scaler", "rounds", "overhead",
                                             "evaluation")}
            parts["(cluster start)"] = r["cluster_start_seconds"]
        else:
            parts = r["phases"]
        shown = ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
        print(f"{r['engine']:<20} {r['seconds']:>8.1f} {r['epochs']:>7} {ratio:>20.6f}  {shown}")
    for r in results:
        r["coefficient_difference"] = max(abs(r["coefficients"][k] / v - 1)
                                          for k, v in reference["coefficients"].items())
    print(f"lstsq: {reference['seconds']:.1f} s; largest relative coefficient difference from "
          "lstsq: " + ", ".join(f"{r['engine']} {r['coefficient_difference']:.1e}"
                                for r in results))
    out = {"machine": machine, "rows": args.rows, "features": args.features,
           "files": args.files, "workers": args.workers, "lstsq": reference,
           "runs": results, "date": time.strftime("%Y-%m-%d")}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
