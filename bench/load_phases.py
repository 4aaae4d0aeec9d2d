"""Time each step of ``service.data.load`` in one fresh process (run it a few times).

    .venv/bin/python bench/load_phases.py [--rows 1000000] [--features 20] [--runs 3]

The file is read_bench.py's (``make_regression`` + ``write_csv``, cached under the system temp
directory). Each run is a fresh child process, because the first read in a process is the one
``sgdserve train`` makes; each prints its step times, and the summary is the range over runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

STEPS = ["open + plan", "polars read", "holdout rule", "statistics pass", "encode",
         "sha256 wait"]


def child(path: str) -> dict[str, float]:
    """One run: the steps of service.data.load, timed one by one."""
    from service.data import EncodingOptions, open_source, plan
    from service.data.dataset import _holdout
    from service.data.encode import encode_parts
    from service.data.inference import ColumnStats

    options, times = EncodingOptions(), {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name], t = now - t, now

    source = open_source(path)
    columns = plan(source, "y", options)
    lap("open + plan")
    frame = source.read(columns.types, columns.read)
    lap("polars read")
    hasher = source.hash_in_background()
    mask = _holdout(0, frame.height, 0.2, 0)
    lap("holdout rule")
    stats = ColumnStats(source, columns, options)
    stats.add(frame, 0, ~mask)
    schema, _ = stats.schema()
    lap("statistics pass")
    encode_parts(schema, frame, source, [~mask, mask], target="y")
    lap("encode")
    hasher.result()
    lap("sha256 wait")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    from regression_file import regression_csv

    import service.data as data
    path = regression_csv(data, args.rows, args.features, "y")
    load = os.getloadavg()
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", str(path)],
                                      check=True, capture_output=True, text=True).stdout)
            for _ in range(args.runs)]
    end = os.getloadavg()
    print(f"{path.name}, {args.runs} fresh processes; load average {load[0]:.1f} at the start, "
          f"{end[0]:.1f} at the end, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| step | seconds (range of runs) |\n|---|---:|")
    for step in STEPS:
        values = [r[step] for r in runs]
        print(f"| {step} | {min(values):.2f}-{max(values):.2f} |")
    totals = [sum(r.values()) for r in runs]
    print(f"| **total** | {min(totals):.2f}-{max(totals):.2f} |")


if __name__ == "__main__":
    main()
