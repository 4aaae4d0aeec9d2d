"""LocalStore's own tests: crash safety at every step, the flock lock, temporary directories.

The contract every backend keeps (round trip, integrity, the restricted unpickler, signatures,
the precondition, retention, jobs) is tested against LocalStore and S3Store alike in
tests/test_store_contract.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import joblib
import numpy as np
import pytest

from service import __version__
from service import store as store_module
from service.errors import (
    LockHeldError,
    VersionNotFoundError,
)
from service.store import FAULT_STEPS, LocalStore

from helpers import child_env

REPO = Path(__file__).resolve().parent.parent

# One source for the scenario, run in this process (injected exceptions) and in child processes
# that SIGKILL themselves at a step; the child only needs numpy and the service package.
SCENARIO = '''
import numpy as np
from service.engine import LinearModel


def make_model(shift=0.0, features=("sqft", "bedrooms", "age")):
    d = len(features)
    coef = np.arange(1.0, d + 1.0) + shift
    return LinearModel.numeric(
        feature_names=tuple(features),
        target="price",
        coef=coef,
        intercept=10.0 + shift,
        x_mean=np.linspace(1.0, 2.0, d),
        x_scale=np.linspace(0.5, 1.5, d),
        y_mean=100.0,
        y_scale=20.0,
        coef_std=coef / 20.0,
        intercept_std=0.25,
        extra={"params": {"learning_rate": 0.01, "epochs": 5}},
    )


def run_scenario(store, parent, job_id):
    """Save a new version, promote it, prune (deletes one version), update a job."""
    version = store.save(make_model(2.0), {"metrics": {"holdout": {"rmse": 1.5}}}, parent=parent)
    store.activate(version)
    store.prune()
    store.jobs.write(job_id, {"status": "running"})
    return version
'''

CHILD_MAIN = """
import os, signal, sys
from service.store import LocalStore

root, step, parent, job_id = sys.argv[1:5]


def fault(name):
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)


run_scenario(LocalStore(root, keep=1, _fault=fault), parent, job_id)
"""

_namespace: dict = {}
exec(SCENARIO, _namespace)
make_model = _namespace["make_model"]
run_scenario = _namespace["run_scenario"]

X = np.array([[1500.0, 3.0, 20.0], [800.0, 1.0, 55.0], [2500.0, 4.0, 2.0]])


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "models")


def assert_same_model(a, b) -> None:
    assert a.feature_names == b.feature_names
    assert a.target == b.target
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.intercept == b.intercept
    np.testing.assert_array_equal(a.x_mean, b.x_mean)
    np.testing.assert_array_equal(a.x_scale, b.x_scale)
    np.testing.assert_array_equal(a.coef_std, b.coef_std)
    assert (a.y_mean, a.y_scale, a.intercept_std) == (b.y_mean, b.y_scale, b.intercept_std)
    assert dict(a.extra) == dict(b.extra)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


# -- round trip and manifest ---------------------------------------------------------------


def test_model_file_holds_plain_state_only(store: LocalStore) -> None:
    version = store.save(make_model(), {}, parent=None)
    state = joblib.load(store.path / "versions" / version / "model.joblib")
    assert isinstance(state, dict)

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        if isinstance(value, np.ndarray):
            return value.dtype == np.float64
        return value is None or isinstance(value, (bool, int, float, str))

    assert plain(state)


def test_manifest_fields(store: LocalStore) -> None:
    parent = store.save(make_model(), {}, parent=None)
    caller = {
        "data": {"file": "houses.csv", "rows": 1000, "columns": 4, "sha256": "ab" * 32},
        "params": {"learning_rate": 0.01, "epochs": np.int64(20)},
        "metrics": {"train": {"rmse": 1.25}, "holdout": {"rmse": float("nan"), "r2": np.inf}},
        "loss_history": np.array([3.0, 2.0, 1.5]),
        "id": "caller must not win",
    }
    version = store.save(make_model(1.0), caller, parent=parent, status="rejected")
    path = store.path / "versions" / version / "manifest.json"

    def refuse(constant: str):
        raise AssertionError(f"non-strict JSON constant {constant}")

    on_disk = json.loads(path.read_text(), parse_constant=refuse)
    assert on_disk == store.get(version)
    assert on_disk["id"] == version
    assert on_disk["parent"] == parent
    assert on_disk["status"] == "rejected"
    assert on_disk["features"] == ["sqft", "bedrooms", "age"]
    assert on_disk["target"] == "price"
    model_bytes = (path.parent / "model.joblib").read_bytes()
    assert on_disk["sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", on_disk["created_at"])
    libs = on_disk["library_versions"]
    assert libs["numpy"] == np.__version__
    assert libs["joblib"] == joblib.__version__
    assert libs["sgdserve"] == __version__
    assert libs["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert on_disk["data"] == caller["data"]
    assert on_disk["params"] == {"learning_rate": 0.01, "epochs": 20}
    assert on_disk["metrics"] == {"train": {"rmse": 1.25}, "holdout": {"rmse": None, "r2": None}}
    assert on_disk["loss_history"] == [3.0, 2.0, 1.5]


def test_save_validates_arguments(store: LocalStore) -> None:
    with pytest.raises(TypeError, match="model must be a LinearModel, got dict"):
        store.save({"coef": [1.0]}, {}, parent=None)
    with pytest.raises(VersionNotFoundError, match=r"version '\.\./x' not found"):
        store.save(make_model(), {}, parent="../x")
    with pytest.raises(ValueError, match="model name must be"):
        LocalStore(store.root, name="../other")
    with pytest.raises(ValueError, match="keep must be an integer >= 1, got 0"):
        LocalStore(store.root, keep=0)


def test_ids_increase_even_if_the_clock_went_back(store: LocalStore) -> None:
    store.save(make_model(), {}, parent=None)
    future = "29990101T000000.000000Z-abcdef"
    (store.path / "versions" / future).mkdir()
    version = store.save(make_model(), {}, parent=None)
    assert version > future
    assert version.startswith("29990101T000000.000001Z-")
    # an unfinished save of an even later id counts too
    (store.path / "versions" / ".tmp-29990101T000001.000000Z-123456-0a0b0c0d").mkdir()
    assert store.save(make_model(), {}, parent=None).startswith("29990101T000001.000001Z-")


def test_list_skips_temporary_directories(store: LocalStore) -> None:
    version = store.save(make_model(), {}, parent=None)
    tmp = store.path / "versions" / f".tmp-{version}-deadbeef"
    tmp.mkdir()
    (tmp / "model.joblib").write_bytes(b"half")
    assert [m["id"] for m in store.list()] == [version]


# -- crash safety at every step -------------------------------------------------------------


def setup_scenario(root: Path) -> tuple[str, str, str]:
    """An old version v0, the active version v1 and a queued job, before ``run_scenario``."""
    store = LocalStore(root, keep=1)
    v0 = store.save(make_model(0.0), {}, parent=None)
    v1 = store.save(make_model(1.0), {}, parent=v0)
    store.activate(v1)
    job = store.jobs.new_id()
    store.jobs.write(job, {"status": "queued"})
    return v0, v1, job


def check_after_crash(root: Path, step: str, v0: str, v1: str, job: str) -> None:
    """The store is consistent: the right version active and loadable, nothing half-visible."""
    at = FAULT_STEPS.index(step)
    new_listed = at >= FAULT_STEPS.index("save:renamed")
    new_active = at >= FAULT_STEPS.index("activate:replaced")
    v0_gone = at >= FAULT_STEPS.index("prune:renamed")
    job_running = at >= FAULT_STEPS.index("job:replaced")

    store = LocalStore(root, keep=1)
    listed = store.list()
    assert all(m["status"] != "corrupt" for m in listed), listed
    ids = [m["id"] for m in listed]
    for version in ids:
        store.load(version)
    new = sorted(set(ids) - {v0, v1})
    assert len(new) == (1 if new_listed else 0)
    assert (v0 not in ids) == v0_gone
    assert v1 in ids

    active_id, model, _ = store.active()
    if new_active:
        assert active_id == new[0]
        assert_same_model(model, make_model(2.0))
    else:
        assert active_id == v1
        assert_same_model(model, make_model(1.0))
    assert store.jobs.read(job)["status"] == ("running" if job_running else "queued")

    # The store is not wedged: the lock is free and a new version can be saved and promoted.
    with store.lock(owner="recovery"):
        version = store.save(make_model(3.0), {}, parent=active_id)
        store.activate(version)
    assert store.active()[0] == version


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_injected_exception_at_each_step(tmp_path: Path, step: str) -> None:
    root = tmp_path / "models"
    v0, v1, job = setup_scenario(root)

    class InjectedFault(Exception):
        pass

    def fault(name: str) -> None:
        if name == step:
            raise InjectedFault(name)

    with pytest.raises(InjectedFault):
        run_scenario(LocalStore(root, keep=1, _fault=fault), v1, job)
    # A failed operation cleans up after itself: no temporary files anywhere.
    leftovers = [p for p in (root / "house-price").rglob(".tmp-*")]
    assert leftovers == []
    check_after_crash(root, step, v0, v1, job)


@pytest.fixture(scope="module")
def killed_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """For every step, a store whose writer process was SIGKILLed exactly there.

    The children run concurrently to keep the suite fast.
    """
    runs = {}
    for step in FAULT_STEPS:
        root = tmp_path_factory.mktemp("killed") / "models"
        v0, v1, job = setup_scenario(root)
        child = subprocess.Popen(
            [sys.executable, "-c", SCENARIO + CHILD_MAIN, str(root), step, v1, job],
            env=child_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        runs[step] = (child, root, v0, v1, job)
    results = {}
    for step, (child, root, v0, v1, job) in runs.items():
        _, stderr = child.communicate(timeout=120)
        results[step] = (child.returncode, stderr, root, v0, v1, job)
    return results


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_process_killed_at_each_step(killed_stores: dict, step: str) -> None:
    returncode, stderr, root, v0, v1, job = killed_stores[step]
    assert returncode == -signal.SIGKILL, stderr
    check_after_crash(root, step, v0, v1, job)

    # prune() clears what the killed process left: deletions at once, temp files after an hour.
    store = LocalStore(root, keep=50)
    store.prune()
    assert not list((store.path / "versions").glob(".tmp-delete-*"))
    hours_ago = time.time() - 7200
    for leftover in store.path.rglob(".tmp-*"):
        os.utime(leftover, (hours_ago, hours_ago))
    store.prune()
    assert list(store.path.rglob(".tmp-*")) == []


def test_fault_steps_are_all_reached_in_order(tmp_path: Path) -> None:
    root = tmp_path / "models"
    v0, v1, job = setup_scenario(root)
    seen: list[str] = []
    run_scenario(LocalStore(root, keep=1, _fault=seen.append), v1, job)
    assert seen == list(FAULT_STEPS)


# -- integrity -----------------------------------------------------------------------------


BAD_IDS = [
    "../x",
    "..",
    "/etc/passwd",
    "",
    "versions",
    ".tmp-20261126T222935.566989Z-a1d53d-0a0b0c0d",
    "20261126T222935.566989Z-a1d53d/../../CURRENT",
    "20261126T222935.566989Z-a1d53d\n",
    "20261126T222935.566989Z-ABCDEF",
    None,
    42,
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_bad_version_ids_are_refused_before_touching_disk(store: LocalStore, bad) -> None:
    good = store.save(make_model(), {}, parent=None)
    store.activate(good)
    for call in (store.get, store.load, store.activate, store.version_dir):
        with pytest.raises(VersionNotFoundError, match=r"not found in .*house-price"):
            call(bad)
    assert store.active_version() == good


# -- activate, rollback, history -----------------------------------------------------------


def test_last_promotion_skips_a_torn_line(store: LocalStore) -> None:
    version = store.save(make_model(), {}, parent=None)
    store.activate(version)
    with open(store.path / "history.jsonl", "a") as f:
        f.write('{"time": "2026-')
    assert store.last_promotion()["version"] == version


# -- retention -----------------------------------------------------------------------------


def test_retention_keeps_newest_plus_active_and_parent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "models", keep=3)
    ids: list[str] = []
    for i in range(6):
        ids.append(store.save(make_model(i), {}, parent=ids[-1] if ids else None))
    store.activate(ids[1])  # an old version is active; its parent is ids[0]

    versions = store.path / "versions"
    stale = versions / f".tmp-{ids[-1]}-00000000"
    fresh = versions / f".tmp-{ids[-1]}-11111111"
    stale.mkdir()
    fresh.mkdir()
    hours_ago = time.time() - 7200
    os.utime(stale, (hours_ago, hours_ago))

    assert store.prune() == [ids[2]]
    assert [m["id"] for m in store.list()] == [ids[0], ids[1], ids[3], ids[4], ids[5]]
    assert not stale.exists()
    assert fresh.exists()  # may be a save in progress
    assert not list(versions.glob(".tmp-delete-*"))
    assert store.prune() == []
    for version in (ids[0], ids[1]):
        store.load(version)

    store.activate(ids[5])  # parent ids[4] is among the newest anyway
    assert store.prune() == [ids[0], ids[1]]
    assert [m["id"] for m in store.list()] == ids[3:]


# -- the lock ------------------------------------------------------------------------------

@pytest.fixture
def lock_holder(store: LocalStore, hold_store_lock):
    """A separate process holding the store lock until its stdin is closed."""
    with hold_store_lock(store.root, "sgdserve train") as child:
        yield child


@pytest.mark.slow
def test_second_process_fails_fast_naming_the_holder(store: LocalStore, lock_holder) -> None:
    pattern = (
        rf"^model store is locked by pid {lock_holder.pid} \(sgdserve train\) "
        r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
    )
    with pytest.raises(LockHeldError, match=pattern):
        with store.lock(owner="sgdserve models activate"):
            pass
    info = store.is_locked()
    assert info is not None
    assert info["pid"] == lock_holder.pid
    assert info["owner"] == "sgdserve train"


@pytest.mark.slow
def test_timed_wait_gives_up(store: LocalStore, lock_holder) -> None:
    with pytest.raises(LockHeldError, match=rf"pid {lock_holder.pid} .*\(waited 0\.2 s\)$"):
        with store.lock(wait=0.2):
            pass


@pytest.mark.slow
def test_wait_true_blocks_until_released(store: LocalStore, lock_holder) -> None:
    acquired = threading.Event()
    holder_seen: list = []

    def waiter() -> None:
        with store.lock(wait=True, owner="waiter"):
            acquired.set()
            holder_seen.append(store.is_locked())

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not acquired.wait(0.3)  # the other process still holds it
    lock_holder.stdin.close()
    thread.join(timeout=60)
    assert acquired.is_set()
    assert holder_seen[0]["pid"] == os.getpid()
    assert holder_seen[0]["owner"] == "waiter"
    assert store.is_locked() is None


@pytest.mark.slow
def test_lock_of_a_killed_holder_is_free(store: LocalStore, lock_holder) -> None:
    lock_holder.kill()
    lock_holder.wait(timeout=60)
    assert store.is_locked() is None
    with store.lock(owner="after") as holder:
        assert holder["pid"] == os.getpid()


def test_lock_is_not_reentrant_within_a_process(store: LocalStore) -> None:
    assert store.is_locked() is None
    with store.lock(owner="outer") as holder:
        assert holder["owner"] == "outer"
        assert store.is_locked() == holder
        other = LocalStore(store.root)
        with pytest.raises(LockHeldError, match=rf"pid {os.getpid()} \(outer\)"):
            with other.lock():
                pass
    assert store.is_locked() is None
    assert (store.path / ".lock").read_bytes() == b""  # no stale holder left behind
    with store.lock():
        pass


# -- jobs ----------------------------------------------------------------------------------


def test_job_pruning(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module.jobs, "JOBS_KEPT", 5)  # 100 in production; fewer fsyncs here
    ids = [store.jobs.new_id() for _ in range(9)]
    ids.sort()
    for job_id in ids:
        store.jobs.write(job_id, {"status": "promoted"})
    store.jobs.write(ids[1], {"status": "running"})  # still running: not pruned by count
    store.jobs.directory(ids[2])
    old = store.jobs.new_id()
    store.jobs.write(old, {"status": "running"})
    store.jobs.directory(old)
    two_days_ago = time.time() - 2 * 86400
    os.utime(store.path / "jobs" / f"{old}.json", (two_days_ago, two_days_ago))

    removed = store.jobs.prune()
    # 10 jobs: the newest 5 stay (the stale one among them goes by age), and the running one
    assert sorted(removed) == sorted([ids[0], ids[2], ids[3], ids[4], old])
    remaining = {j["id"] for j in store.jobs.list()}
    assert remaining == set(ids) - {ids[0], ids[2], ids[3], ids[4]}
    assert not (store.path / "jobs" / ids[2]).exists()
    assert not (store.path / "jobs" / old).exists()


# -- the expected-current precondition, a damaged CURRENT, bounded history ---------------------


def test_history_is_pruned_to_its_bound(store: LocalStore, monkeypatch) -> None:
    monkeypatch.setattr(store_module.local, "HISTORY_KEPT", 3)
    versions = [store.save(make_model(float(i)), {}, parent=None) for i in range(2)]
    for i in range(7):  # more than twice the bound
        store.activate(versions[i % 2])
    store.prune()
    history = store.history()
    assert len(history) == 3
    assert [h["version"] for h in history] == [versions[0], versions[1], versions[0]]
    assert store.last_promotion() == history[-1]
    store.activate(versions[1])
    store.prune()  # under the bound again: left alone
    assert len(store.history()) == 4
