"""What a /metrics scrape costs after a day of worker churn, with and without compaction.

A worker killed every 40 s (the soak test's rate) dies 2,160 times a day. Without compaction
each dead worker leaves its counter, histogram and max-gauge files (64 KiB each, sparse) and
every scrape reads all of them; with it (``service.http.metrics.retire_process``, run by the
gunicorn master's child_exit hook) their values are folded into three archive files.

One real process records a worker's usual metrics; its files are copied under made-up pids, so
every simulated dead worker holds what a real one would. Both directories are rendered side by
side, 7 times each, interleaved; the median is reported.

    python bench/metrics_churn.py [--dead 2160]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from service.http.metrics import Metrics
    m = Metrics(Path(sys.argv[1]))
    for endpoint in ("/predict", "/v2/models/<name>/infer", "/ready", "/metrics", "/model"):
        for status in (200, 400, 503):
            for _ in range(5):
                m.observe_request(endpoint, "POST", status, 0.002)
    m.rows_predicted(1000)
    m.model_loaded("20261201T000000.000000Z-abcdef")
    m.model_load_failed("20261201T000000.000000Z-abcdef")
    m.retrain_job("promoted")
    m.promotion(1_700_000_000.0)
    import os
    print(os.getpid())
    """
)


def render_seconds(directory: Path) -> float:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    started = time.perf_counter()
    generate_latest(registry)
    return time.perf_counter() - started


def du(directory: Path) -> tuple[int, int]:
    """(files, bytes on disk)."""
    files = list(directory.iterdir())
    return len(files), sum(os.stat(f).st_blocks * 512 for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dead", type=int, default=2160, help="dead workers (default: a day)")
    args = parser.parse_args()
    from service.http.metrics import retire_process

    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        pid = subprocess.run([sys.executable, "-c", WORKER, str(template)], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        kinds = [p.name.rsplit("_", 1)[0] for p in template.glob(f"*_{pid}.db")]
        plain, compacted = Path(tmp) / "plain", Path(tmp) / "compacted"
        for directory in (plain, compacted):
            directory.mkdir()
            for fake in range(1_000_000, 1_000_000 + args.dead):
                for kind in kinds:
                    if kind.startswith("gauge_live"):
                        continue  # mark_process_dead removes these in both cases
                    shutil.copyfile(template / f"{kind}_{pid}.db", directory / f"{kind}_{fake}.db")
        started = time.perf_counter()
        for fake in range(1_000_000, 1_000_000 + args.dead):
            retire_process(fake, compacted)
        per_retire = (time.perf_counter() - started) / max(args.dead, 1)
        times: dict[str, list[float]] = {"plain": [], "compacted": []}
        for _ in range(7):
            for name, directory in (("plain", plain), ("compacted", compacted)):
                times[name].append(render_seconds(directory))
        for name, directory in (("plain", plain), ("compacted", compacted)):
            files, size = du(directory)
            print(f"{name:<10} {args.dead} dead workers: {files:>5} files, {size / 2**20:7.1f} MiB "
                  f"on disk, scrape {statistics.median(times[name]) * 1000:8.1f} ms (median of 7)")
        ratio = statistics.median(times["compacted"]) / statistics.median(times["plain"])
        print(f"compacted / plain scrape time: {ratio:.4f}x; "
              f"retire_process: {per_retire * 1000:.2f} ms per dead worker (in the master)")


if __name__ == "__main__":
    main()
