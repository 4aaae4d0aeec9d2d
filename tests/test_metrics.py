"""Metrics: names, labels, buckets in one process; sums across real processes in one directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from service.http.metrics import (
    LATENCY_BUCKETS,
    MULTIPROC_ENV,
    Metrics,
    prepare_multiprocess_dir,
)

ROOT = Path(__file__).resolve().parents[1]


def samples(body: bytes) -> dict[tuple[str, frozenset], float]:
    """Parse an exposition into {(sample name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    # setenv first, so that monkeypatch restores the absence at teardown whatever was exported.
    monkeypatch.setenv(MULTIPROC_ENV, "unset")
    monkeypatch.delenv(MULTIPROC_ENV)
    return Metrics(None)


def test_requests_errors_and_latency_by_endpoint(metrics: Metrics) -> None:
    metrics.observe_request("/predict", "POST", 200, 0.0007)
    metrics.observe_request("/predict", "POST", 200, 0.003)
    metrics.observe_request("/predict", "POST", 400, 0.0002)
    metrics.observe_request("/models/<version_id>/activate", "POST", 404, 0.001)

    parsed = samples(metrics.render()[0])

    assert value(parsed, "sgdserve_requests_total", endpoint="/predict", method="POST",
                 status="200") == 2
    assert value(parsed, "sgdserve_requests_total", endpoint="/predict", method="POST",
                 status="400") == 1
    assert value(parsed, "sgdserve_errors_total", endpoint="/predict", status="400") == 1
    assert value(parsed, "sgdserve_errors_total", endpoint="/models/<version_id>/activate",
                 status="404") == 1
    # A 200 is not an error.
    assert ("sgdserve_errors_total", frozenset({"endpoint": "/predict", "status": "200"}.items())
            ) not in parsed
    assert value(parsed, "sgdserve_request_duration_seconds_count", endpoint="/predict") == 3
    assert value(parsed, "sgdserve_request_duration_seconds_sum",
                 endpoint="/predict") == pytest.approx(0.0039)
    assert value(parsed, "sgdserve_request_duration_seconds_bucket", endpoint="/predict",
                 le="0.0005") == 1
    assert value(parsed, "sgdserve_request_duration_seconds_bucket", endpoint="/predict",
                 le="0.001") == 2
    assert value(parsed, "sgdserve_request_duration_seconds_bucket", endpoint="/predict",
                 le="+Inf") == 3


def test_histogram_buckets_and_help_text(metrics: Metrics) -> None:
    metrics.observe_request("/health", "GET", 200, 0.0001)
    body, _ = metrics.render()
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}

    les = [s.labels["le"] for s in families["sgdserve_request_duration_seconds"].samples
           if s.name.endswith("_bucket")]
    assert [float(le) for le in les[:-1]] == list(LATENCY_BUCKETS)
    assert les[-1] == "+Inf"
    expected = {
        "sgdserve_requests": "counter",
        "sgdserve_errors": "counter",
        "sgdserve_request_duration_seconds": "histogram",
        "sgdserve_rows_predicted": "counter",
        "sgdserve_model_version_info": "gauge",
        "sgdserve_model_load_failures": "counter",
        "sgdserve_store_poll_failures": "counter",
        "sgdserve_retrain_jobs": "counter",
        "sgdserve_values_imputed": "counter",
        "sgdserve_unseen_levels": "counter",
        "sgdserve_last_promotion_timestamp_seconds": "gauge",
        "sgdserve_log_write_failures": "counter",
        "sgdserve_feedback_rows": "counter",
    }
    assert {name: f.type for name, f in families.items()} == expected
    assert all(f.documentation for f in families.values())


def test_render_content_type(metrics: Metrics) -> None:
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE_LATEST
    assert content_type.startswith("text/plain; version=")
    assert b"# HELP sgdserve_rows_predicted_total" in body


def test_rows_model_version_jobs_and_promotion(metrics: Metrics) -> None:
    metrics.rows_predicted(1)
    metrics.rows_predicted(10_000)
    metrics.model_loaded("v1")
    metrics.model_loaded("v2")
    metrics.model_loaded("v2")
    metrics.model_load_failed("v3")
    metrics.retrain_job("promoted")
    metrics.retrain_job("rejected")
    metrics.retrain_job("rejected")
    metrics.promotion(1_700_000_000.5)

    parsed = samples(metrics.render()[0])

    assert value(parsed, "sgdserve_rows_predicted_total") == 10_001
    pid = str(os.getpid())
    info = [k for k in parsed if k[0] == "sgdserve_model_version_info"]
    assert info == [("sgdserve_model_version_info",
                     frozenset({"version": "v2", "pid": pid}.items()))]  # v1 is gone, not 0
    assert value(parsed, "sgdserve_model_version_info", version="v2", pid=pid) == 1
    assert value(parsed, "sgdserve_model_load_failures_total", version="v3") == 1
    assert value(parsed, "sgdserve_retrain_jobs_total", outcome="promoted") == 1
    assert value(parsed, "sgdserve_retrain_jobs_total", outcome="rejected") == 2
    assert value(parsed, "sgdserve_last_promotion_timestamp_seconds") == 1_700_000_000.5


def test_retrain_outcome_is_checked(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="retrain outcome must be one of .*, got 'done'"):
        metrics.retrain_job("done")


def test_instances_do_not_share_state(metrics: Metrics) -> None:
    other = Metrics(None)
    other.rows_predicted(5)
    assert value(samples(metrics.render()[0]), "sgdserve_rows_predicted_total") == 0


def test_apps_in_one_process_count_apart_with_or_without_a_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test suite builds many apps in one process: one with a directory switched
    # prometheus_client to files, and later apps without one kept writing into those files.
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / name))
        Metrics(tmp_path / name).rows_predicted(7)
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "a"))
    assert value(samples(Metrics(tmp_path / "a").render()[0]),
                 "sgdserve_rows_predicted_total") == 7
    monkeypatch.delenv(MULTIPROC_ENV)
    alone = Metrics(None)
    alone.rows_predicted(2)
    assert value(samples(alone.render()[0]), "sgdserve_rows_predicted_total") == 2


# --- multiprocess mode: real processes, one directory ---------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    if sys.argv[2] == "import-first":
        import prometheus_client  # before the directory is known, as a CLI would
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    from service.http.metrics import Metrics
    m = Metrics(Path(sys.argv[1]) if sys.argv[2] != "adopt" else None)
    n = int(sys.argv[3])
    for _ in range(n):
        m.observe_request("/predict", "POST", 200, 0.002)
    m.observe_request("/predict", "POST", 503, 0.001)
    m.rows_predicted(n * 3)
    m.model_loaded("v1")
    m.model_loaded("v" + sys.argv[3])
    m.retrain_job("promoted")
    m.promotion(float(sys.argv[3]))
    print(os.getpid())
    """
)

RENDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from service.http.metrics import Metrics, retire_process
    m = Metrics(Path(sys.argv[1]))
    for pid in sys.argv[2:]:
        retire_process(int(pid))
    sys.stdout.write(m.render()[0].decode())
    """
)


def run_python(code: str, *args: str, env_dir: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    if env_dir is not None:
        env[MULTIPROC_ENV] = str(env_dir)
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def two_writers(tmp_path: Path) -> tuple[Path, int, int]:
    pid_a = int(run_python(WRITER, str(tmp_path), "explicit", "4"))
    # The second imports prometheus_client before the directory is set, like the CLI does.
    pid_b = int(run_python(WRITER, str(tmp_path), "import-first", "7"))
    return tmp_path, pid_a, pid_b


@pytest.mark.slow
def test_render_sums_processes(two_writers: tuple[Path, int, int]) -> None:
    directory, pid_a, pid_b = two_writers
    parsed = samples(run_python(RENDER, str(directory)).encode())

    assert value(parsed, "sgdserve_requests_total", endpoint="/predict", method="POST",
                 status="200") == 4 + 7
    assert value(parsed, "sgdserve_errors_total", endpoint="/predict", status="503") == 2
    assert value(parsed, "sgdserve_request_duration_seconds_count", endpoint="/predict") == 13
    assert value(parsed, "sgdserve_request_duration_seconds_bucket", endpoint="/predict",
                 le="0.001") == 2
    assert value(parsed, "sgdserve_rows_predicted_total") == 3 * 11
    assert value(parsed, "sgdserve_retrain_jobs_total", outcome="promoted") == 2
    # The newest promotion any process saw, not a sum.
    assert value(parsed, "sgdserve_last_promotion_timestamp_seconds") == 7
    # The active version, one series per worker; none for a version it served before.
    assert value(parsed, "sgdserve_model_version_info", version="v4", pid=str(pid_a)) == 1
    assert value(parsed, "sgdserve_model_version_info", version="v7", pid=str(pid_b)) == 1
    assert len([k for k in parsed if k[0] == "sgdserve_model_version_info"]) == 2


@pytest.mark.slow
def test_retiring_a_process_drops_its_gauges_and_folds_its_counts_into_the_archive(
    two_writers: tuple[Path, int, int],
) -> None:
    directory, pid_a, pid_b = two_writers
    before = samples(run_python(RENDER, str(directory)).encode())
    parsed = samples(run_python(RENDER, str(directory), str(pid_a)).encode())

    assert not [k for k in parsed if k[0] == "sgdserve_model_version_info"
                and ("pid", str(pid_a)) in k[1]]
    assert value(parsed, "sgdserve_model_version_info", version="v7", pid=str(pid_b)) == 1
    # Every count is the same as before the worker went; only its gauge is gone.
    counted = {k: v for k, v in before.items() if k[0] != "sgdserve_model_version_info"}
    assert {k: parsed[k] for k in counted} == counted
    # Its files are gone: what a scrape reads stays bounded however many workers die.
    names = sorted(p.name for p in directory.iterdir())
    assert not [n for n in names if str(pid_a) in n], names
    assert {"counter_archive.db", "histogram_archive.db", "gauge_max_archive.db"} <= set(names)

    # A second dead worker joins the same archive files.
    again = samples(run_python(RENDER, str(directory), str(pid_b)).encode())
    assert value(again, "sgdserve_requests_total", endpoint="/predict", method="POST",
                 status="200") == 11
    assert value(again, "sgdserve_last_promotion_timestamp_seconds") == 7
    assert not [p for p in directory.iterdir() if str(pid_b) in p.name]


@pytest.mark.slow
def test_none_adopts_the_directory_of_a_multiprocess_server(tmp_path: Path) -> None:
    run_python(WRITER, str(tmp_path), "adopt", "2", env_dir=tmp_path)
    run_python(WRITER, str(tmp_path), "adopt", "3", env_dir=tmp_path)
    parsed = samples(run_python(RENDER, str(tmp_path)).encode())
    assert value(parsed, "sgdserve_rows_predicted_total") == 15


@pytest.mark.slow
def test_directory_must_match_the_environment(tmp_path: Path) -> None:
    code = "from service.http.metrics import Metrics; import sys; from pathlib import Path\n" \
           "try:\n    Metrics(Path(sys.argv[1]))\nexcept ValueError as e:\n    print(e)"
    out = run_python(code, str(tmp_path / "b"), env_dir=tmp_path / "a")
    assert "PROMETHEUS_MULTIPROC_DIR" in out and "must match" in out


def test_prepare_wipes_only_old_db_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first, so that monkeypatch restores the absence at teardown whatever was exported.
    monkeypatch.setenv(MULTIPROC_ENV, "unset")
    monkeypatch.delenv(MULTIPROC_ENV)
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")

    path, created = prepare_multiprocess_dir(tmp_path)

    assert (path, created) == (tmp_path, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    assert os.environ[MULTIPROC_ENV] == str(tmp_path)


def test_prepare_without_a_directory_makes_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first, so that monkeypatch restores the absence at teardown whatever was exported.
    monkeypatch.setenv(MULTIPROC_ENV, "unset")
    monkeypatch.delenv(MULTIPROC_ENV)
    path, created = prepare_multiprocess_dir(None)
    try:
        assert created and path.is_dir() and not any(path.iterdir())
        assert os.environ[MULTIPROC_ENV] == str(path)
    finally:
        path.rmdir()
