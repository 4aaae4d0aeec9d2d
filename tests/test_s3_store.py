"""S3Store's own tests: compare-and-swap races, the lease, polling with 304, network errors,
configuration, and the CLI and retrain jobs on an s3:// store.

Races run against the loopback S3 server of tests/conftest.py, which decides every request
under one lock (tests/helpers.py, AtomicMotoServer), as S3 decides conditional writes
atomically; plain moto checks a condition and writes without a lock and lets two writers win
now and then, which would test moto rather than sgdserve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.errors import (
    CurrentChangedError,
    LockHeldError,
    LockLostError,
    StoreUnavailableError,
)
from service.http.reload import ModelHolder
from service.store import Signer, open_store
from service.store.s3 import S3Store, _NotModified

from helpers import child_env, free_port, hand_model

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("clean_env")  # no SGDSERVE_* or metrics dir of the caller


@pytest.fixture
def store(s3) -> S3Store:
    return S3Store(s3.url(), "house-price")


def run_all(n: int, work) -> list[object]:
    """Run ``work(i)`` in ``n`` threads released at once; their results (or exceptions)."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


# -- compare-and-swap --------------------------------------------------------------------------


def test_promoters_without_the_lock_exactly_one_wins(s3, store) -> None:
    """No lock at all: the conditional write on CURRENT's ETag alone lets one promoter win."""
    v0 = store.save(hand_model(0.0), {}, parent=None)
    store.activate(v0)
    candidates = [store.save(hand_model(float(i)), {}, parent=v0) for i in range(1, 11)]
    results = run_all(10, lambda i: S3Store(s3.url()).activate(candidates[i],
                                                               expected_current=v0))
    winners = [candidates[i] for i, r in enumerate(results) if r == v0]
    assert len(winners) == 1, results
    losers = [r for r in results if r != v0]
    assert all(isinstance(r, CurrentChangedError) and r.current == winners[0] for r in losers)
    assert store.active_version() == winners[0]


def test_promoters_with_no_precondition_lose_no_update(s3, store) -> None:
    """Ten promoters with no precondition all succeed, one after another: each was told the
    version it replaced, and the replacements form one chain (no update lost)."""
    v0 = store.save(hand_model(0.0), {}, parent=None)
    store.activate(v0)
    candidates = [store.save(hand_model(float(i)), {}, parent=v0) for i in range(1, 11)]
    previous = run_all(10, lambda i: S3Store(s3.url()).activate(candidates[i]))
    assert not [p for p in previous if isinstance(p, Exception)], previous
    chain = dict(zip(previous, candidates, strict=True))  # replaced -> replacement
    assert len(chain) == 10  # no two promoters replaced the same version
    at, seen = v0, []
    while at in chain:
        at = chain[at]
        seen.append(at)
    assert sorted(seen) == sorted(candidates) and store.active_version() == at
    assert len(store.history()) == 11


def test_a_save_never_overwrites_a_version(s3, store) -> None:
    version = store.save(hand_model(), {}, parent=None)
    client = s3.client()
    key = f"models/house-price/versions/{version}/manifest.json"
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=s3.bucket, Key=key, Body=b"{}", IfNoneMatch="*")
    original = client.get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    assert store.get(version)["id"] == version and b"sha256" in original


def test_an_unfinished_save_is_invisible(s3, store) -> None:
    version = store.save(hand_model(), {}, parent=None)
    orphan = "20991231T000000.000000Z-abcdef"
    s3.client().put_object(Bucket=s3.bucket, Body=b"half",
                           Key=f"models/house-price/versions/{orphan}/model.joblib")
    assert store.version_ids() == [version]
    assert [m["id"] for m in store.list()] == [version]
    store.prune()  # a fresh one may be a save in progress: kept
    assert any(orphan in k for k in s3.keys())
    assert store.save(hand_model(), {}, parent=None) > orphan  # its id is taken, though


# -- the lease ---------------------------------------------------------------------------------


def test_takers_at_once_exactly_one_gets_the_lease(s3, store) -> None:
    results = run_all(10, lambda i: S3Store(s3.url()).acquire_lease(False, f"taker {i}"))
    leases = [r for r in results if not isinstance(r, Exception)]
    assert len(leases) == 1, results
    assert all(isinstance(r, LockHeldError) for r in results if r is not leases[0])
    assert store.is_locked()["owner"] == leases[0].record["owner"]
    leases[0].release()
    assert store.is_locked() is None


def test_an_expired_lease_is_taken_over_and_its_old_holder_is_fenced(s3) -> None:
    first = S3Store(s3.url(), lease_seconds=3)
    version = first.save(hand_model(), {}, parent=None)
    old = first.acquire_lease(False, "stalled trainer")  # never renewed: it stalls
    with pytest.raises(LockHeldError, match=r"\(stalled trainer\).*lease token 1"):
        S3Store(s3.url()).acquire_lease(False, "second")
    time.sleep(5.1)  # the server's clock (whole seconds) sees it expire: ttl + 1 s
    second = S3Store(s3.url())
    new = second.acquire_lease(False, "second")
    assert new.token == old.token + 1
    first._lease = old  # as inside first.lock(): its promotions are checked against the lease
    with pytest.raises(LockLostError, match="expired and another process took it; not promot"):
        first.activate(version)  # a conditional HEAD on the lease's ETag told it
    with pytest.raises(LockLostError, match="expired and another process took it"):
        old.renew()
    assert second.active_version() is None
    old.release()  # lost: leaves the new holder alone
    assert second.is_locked()["owner"] == "second"
    new.release()


def test_a_held_lease_is_renewed_while_its_holder_works(s3) -> None:
    store = S3Store(s3.url(), lease_seconds=1.5)
    with store.lock(owner="long training"):
        time.sleep(3.2)  # twice the lease: only renewals keep it
        with pytest.raises(LockHeldError, match="long training"):
            S3Store(s3.url()).acquire_lease(False, "other")
    assert store.is_locked() is None


# -- polling and network errors ----------------------------------------------------------------


def test_polling_is_a_conditional_get_answered_304(store, monkeypatch) -> None:
    seen: list[str] = []
    real = store.s3.call

    def spy(method, **kwargs):
        try:
            response = real(method, **kwargs)
        except _NotModified:
            seen.append(f"{method} 304")
            raise
        seen.append(f"{method} {response['ResponseMetadata']['HTTPStatusCode']}")
        return response

    version = store.save(hand_model(), {}, parent=None)
    store.activate(version)
    monkeypatch.setattr(store.s3, "call", spy)
    stamp = store.current_stamp()
    assert [store.current_stamp() for _ in range(3)] == [stamp] * 3
    assert seen == ["get_object 200"] + ["get_object 304"] * 3


def test_an_unreachable_store_keeps_the_old_model_serving(s3, store, monkeypatch) -> None:
    version = store.save(hand_model(1.0), {}, parent=None)
    store.activate(version)

    class Metrics:
        polls = loads = 0

        def model_loaded(self, v):
            self.loads += 1

        def model_load_failed(self, v):
            pass

        def store_poll_failed(self):
            self.polls += 1

    metrics = Metrics()
    holder = ModelHolder(store, interval=0.0, metrics=metrics, background=False)
    assert holder.get()[0] == version
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    store.s3._pid = None  # rebuild the clients, as a new process would
    for _ in range(3):
        assert holder.get()[0] == version
    assert metrics.polls == 3
    assert "cannot reach the object store" in holder.last_error
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    store.s3._pid = None
    newer = S3Store(s3.url()).save(hand_model(2.0), {}, parent=version)
    S3Store(s3.url()).activate(newer)
    assert holder.get()[0] == newer and holder.last_error is None


def test_a_worker_polls_from_a_thread_of_its_own(s3, store) -> None:
    first = store.save(hand_model(1.0), {}, parent=None)
    store.activate(first)
    holder = ModelHolder(S3Store(s3.url()), interval=0.1)
    try:
        assert holder.background
        assert holder.get()[0] == first  # the first request loads synchronously
        second = store.save(hand_model(2.0), {}, parent=first)
        store.activate(second)
        deadline = time.monotonic() + 10
        while holder.loaded()[0] != second and time.monotonic() < deadline:
            time.sleep(0.02)  # no request: the thread alone reloads
        assert holder.get()[0] == second
    finally:
        holder.close()


def test_a_missing_bucket_is_named(s3) -> None:
    with pytest.raises(StoreUnavailableError, match="bucket 'no-such-bucket' does not exist"):
        S3Store("s3://no-such-bucket/models").active_version()


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, kept", [
    ("s3://models-bucket", "s3://models-bucket"),
    ("s3://models-bucket/", "s3://models-bucket"),
    ("s3://my.bucket-1/teams/ml/", "s3://my.bucket-1/teams/ml"),
])
def test_an_s3_url_is_kept_as_a_url(raw: str, kept: str) -> None:
    settings = Settings.from_env({"SGDSERVE_MODEL_DIR": raw})
    assert settings.model_dir == kept and settings.is_object_store
    assert Settings.from_env({}, model_dir=raw).model_dir == kept  # overrides too
    assert isinstance(open_store(settings), S3Store)
    assert not Settings.from_env({"SGDSERVE_MODEL_DIR": "models"}).is_object_store


@pytest.mark.parametrize("raw, message", [
    ("gs://bucket/x", "a directory or an s3://bucket/prefix URL"),
    ("s3://", "is not an S3 bucket name"),
    ("s3://Upper/x", "is not an S3 bucket name"),
    ("s3://bucket/a//b", "an empty, '.' or '..' part"),
    ("s3://bucket/../b", "an empty, '.' or '..' part"),
])
def test_a_bad_store_url_is_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match="SGDSERVE_MODEL_DIR") as info:
        Settings.from_env({"SGDSERVE_MODEL_DIR": raw})
    assert message in str(info.value)


def test_signing_keys_are_checked_and_never_shown() -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings.from_env({"SGDSERVE_SIGNING_KEY": "short"})
    with pytest.raises(ValueError, match="SGDSERVE_SIGNING_OLD_KEYS is set but"):
        Settings.from_env({"SGDSERVE_SIGNING_OLD_KEYS": "o" * 20})
    settings = Settings.from_env({"SGDSERVE_SIGNING_KEY": "k" * 20,
                                  "SGDSERVE_SIGNING_OLD_KEYS": "a" * 20 + ", " + "b" * 20})
    assert settings.old_keys() == ("a" * 20, "b" * 20)
    store = open_store(settings.with_overrides(model_dir="unused"))
    assert "k" * 20 not in repr(settings) + repr(store.signer)


@pytest.mark.slow
def test_boto3_is_imported_only_for_an_s3_store(tmp_path: Path) -> None:
    code = ("import sys\nfrom service.config import Settings\n"
            "from service.store import Signer, open_store\n"
            "open_store(Settings.from_env(model_dir=sys.argv[1])).active_version()\n"
            "print('boto3' in sys.modules)\n")
    local = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=child_env(),
                           capture_output=True, text=True, check=True)
    assert local.stdout.strip() == "False"


# -- the CLI and a retrain job on S3 -------------------------------------------------------------


def sgdserve(s3, *args: str, ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "service.cli", *args],
                          env=child_env(s3.env, SGDSERVE_MODEL_DIR=s3.url(), **env),
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode == 0) == ok, proc.stderr
    return proc


@pytest.mark.slow
def test_the_cli_on_s3_trains_lists_verifies_and_signs(s3, tmp_path: Path) -> None:
    key = {"SGDSERVE_SIGNING_KEY": "s" * 32}
    first = json.loads(sgdserve(s3, "train", "--sample", "--json").stdout.splitlines()[-1])
    second = json.loads(sgdserve(s3, "train", "--sample", "--json", "--force", "--seed", "3")
                        .stdout.splitlines()[-1])
    listed = json.loads(sgdserve(s3, "models", "list", "--json").stdout)
    assert [m["id"] for m in listed] == [first["version"], second["version"]]
    # Signing was turned on after these were made: the store is refused until signed.
    refused = sgdserve(s3, "models", "activate", first["version"], ok=False, **key)
    assert "not signed by an accepted key" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    signing = sgdserve(s3, "models", "sign", **key)
    assert signing.stdout.count("  signed") == 2
    # A version rewritten behind the store's back (its sha256 fixed too) is refused.
    client = s3.client()
    manifest_key = f"models/house-price/versions/{first['version']}/manifest.json"
    manifest = json.loads(client.get_object(Bucket=s3.bucket, Key=manifest_key)["Body"].read())
    manifest["metrics"]["holdout"]["rmse"] = 1.0
    client.put_object(Bucket=s3.bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    tampered = sgdserve(s3, "models", "activate", first["version"], ok=False, **key)
    assert "does not match its model file and manifest (tampered)" in tampered.stderr
    assert S3Store(s3.url()).active_version() == second["version"]
    assert "refused" in sgdserve(s3, "models", "sign", ok=False, **key).stderr


@pytest.mark.slow
def test_a_retrain_job_on_s3_holds_the_lease_and_promotes(s3, monkeypatch) -> None:
    from service.http import create_app

    key = "signing-key-" + "z" * 20
    app = create_app({"model_dir": s3.url(), "api_token": "t" * 20, "reload_interval": 0.2,
                      "signing_key": key})
    client = app.test_client()
    data = (REPO / "service" / "sample_data" / "houses.csv").read_bytes()
    r = client.post("/retrain?target=price&wait=25", data=data,
                    headers={"Authorization": "Bearer " + "t" * 20, "Content-Type": "text/csv"})
    assert r.status_code == 200, r.data
    body = r.get_json()
    assert body["status"] == "promoted"
    store = S3Store(s3.url(), signer=Signer(key))
    assert store.active_version() == body["version"]
    assert store.load(body["version"])  # the child signed it with the key it was handed
    assert any(k.endswith(f"signatures/{Signer(key).key_id}.json") for k in s3.keys())
    assert store.jobs.read(body["job_id"])["status"] == "promoted"  # from any replica
    lease = json.loads(s3.client().get_object(Bucket=s3.bucket,
                                              Key="models/house-price/lock")["Body"].read())
    assert lease["released"] is True and lease["job_id"] == body["job_id"]
    assert lease["pid"] != os.getpid()  # the child took it over, renewed and released it
    assert store.is_locked() is None
    # A job whose process is killed: the parent frees the lease at once (not after its ttl).
    r = client.post("/retrain?target=price&epochs=100000&tol=0", data=data,
                    headers={"Authorization": "Bearer " + "t" * 20, "Content-Type": "text/csv"})
    assert r.status_code == 202
    job = r.get_json()["job_id"]
    deadline = time.monotonic() + 60
    while (store.jobs.read(job).get("status") != "running"
           or not (store.is_locked() or {}).get("pid")) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = store.jobs.read(job)["pid"]
    os.kill(pid, 9)
    while store.is_locked() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.is_locked() is None
    assert client.get(f"/retrain/{job}").get_json()["status"] == "failed"
    assert np.isfinite(store.active()[1].intercept)
    app.extensions["sgdserve"].holder.close()  # its polling thread outlives the test otherwise
