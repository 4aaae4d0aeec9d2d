"""The model store's contract (service/store/base.py), run against every backend.

``backend`` is a LocalStore in a temporary directory or an S3Store on the loopback S3 server
(moto, with atomic conditional writes: tests/helpers.py, AtomicMotoServer). Each test reaches
the stored objects only through ``Backend.raw`` (to corrupt or inspect them), so the same test
holds a directory and a bucket to the same rules. Crash points and the flock lock are
LocalStore's own (tests/test_store.py); the lease is S3Store's own (tests/test_s3_store.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest

from service import __version__
from service.errors import (
    CurrentChangedError,
    CurrentDamagedError,
    IntegrityError,
    JobError,
    JobNotFoundError,
    LockHeldError,
    NoActiveModelError,
    SignatureError,
    VersionNotFoundError,
)
from service.store import LocalStore, ModelStore, Signer
from service.store.signing import key_id

from helpers import hand_model

KEY = "k" * 32
OLD_KEY = "o" * 32
X = np.array([[1500.0, 3.0, 2.0, 20.0], [800.0, 1.0, 1.0, 55.0]])


def make_model(shift: float = 0.0):
    return hand_model(10.0 + shift, coef=np.arange(1.0, 5.0) + shift)


class Backend:
    """One store backend, and raw access to what it stored (relative keys, as in the layout)."""

    kind: str

    def store(self, **kwargs) -> ModelStore:
        raise NotImplementedError

    def read(self, key: str) -> bytes | None:
        raise NotImplementedError

    def write(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def keys(self) -> list[str]:
        raise NotImplementedError

    def remove_version(self, version: str) -> None:
        for key in self.keys():
            if key.startswith(f"versions/{version}/"):
                self.delete(key)


class LocalBackend(Backend):
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "house-price"

    def store(self, **kwargs) -> ModelStore:
        return LocalStore(self.root, **kwargs)

    def read(self, key: str) -> bytes | None:
        try:
            return (self.path / key).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        (self.path / key).parent.mkdir(parents=True, exist_ok=True)
        (self.path / key).write_bytes(data)

    def delete(self, key: str) -> None:
        (self.path / key).unlink()

    def keys(self) -> list[str]:
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

    def remove_version(self, version: str) -> None:
        import shutil

        shutil.rmtree(self.path / "versions" / version)


class S3Backend(Backend):
    kind = "s3"

    def __init__(self, s3) -> None:
        self.s3 = s3
        self.client = s3.client()
        self.prefix = "models/house-price/"

    def store(self, **kwargs) -> ModelStore:
        from service.store.s3 import S3Store

        return S3Store(self.s3.url("models"), **kwargs)

    def read(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.s3.bucket,
                                          Key=self.prefix + key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.s3.bucket, Key=self.prefix + key, Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.s3.bucket, Key=self.prefix + key)

    def keys(self) -> list[str]:
        return [k[len(self.prefix):] for k in self.s3.keys(self.prefix)]


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path) -> Backend:
    if request.param == "local":
        return LocalBackend(tmp_path / "models")
    return S3Backend(request.getfixturevalue("s3"))


@pytest.fixture
def store(backend: Backend) -> ModelStore:
    return backend.store()


def assert_same_model(a, b) -> None:
    assert a.feature_names == b.feature_names and a.target == b.target
    for name in ("coef", "x_mean", "x_scale", "coef_std"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.intercept, a.y_mean, a.y_scale, a.intercept_std) == (
        b.intercept, b.y_mean, b.y_scale, b.intercept_std)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


def vkey(version: str, name: str) -> str:
    return f"versions/{version}/{name}"


def fix_sha(backend: Backend, version: str) -> None:
    """Make the manifest's sha256 match the model file again (a writer who covers tracks)."""
    manifest = json.loads(backend.read(vkey(version, "manifest.json")))
    manifest["sha256"] = hashlib.sha256(backend.read(vkey(version, "model.joblib"))).hexdigest()
    backend.write(vkey(version, "manifest.json"), json.dumps(manifest).encode())


# -- round trip and manifest -------------------------------------------------------------------


def test_round_trip(backend: Backend, store: ModelStore) -> None:
    model = make_model(0.5)
    version = store.save(model, {"metrics": {"holdout": {"rmse": 2.0}}}, parent=None)
    assert store.active_version() is None  # saved, not active
    assert store.activate(version) is None
    assert store.active_version() == version
    loaded, manifest = store.load(version)
    assert_same_model(loaded, model)
    assert manifest["id"] == version
    active_id, active_model, active_manifest = store.active()
    assert (active_id, active_manifest) == (version, manifest)
    assert backend.read("CURRENT") == (version + "\n").encode()
    assert {vkey(version, "model.joblib"), vkey(version, "manifest.json")} <= set(backend.keys())
    # Another process (another replica) sees the same.
    assert backend.store().active()[0] == version


def test_manifest_fields(backend: Backend, store: ModelStore) -> None:
    parent = store.save(make_model(), {}, parent=None)
    caller = {"data": {"file": "houses.csv", "rows": 1000}, "epochs": np.int64(20),
              "metrics": {"holdout": {"rmse": float("nan")}}, "id": "caller must not win"}
    version = store.save(make_model(1.0), caller, parent=parent, status="rejected")
    on_disk = json.loads(backend.read(vkey(version, "manifest.json")))
    assert on_disk == store.get(version)
    assert (on_disk["id"], on_disk["parent"], on_disk["status"]) == (version, parent, "rejected")
    assert on_disk["features"] == ["sqft", "bedrooms", "bathrooms", "age_years"]
    assert on_disk["sha256"] == hashlib.sha256(
        backend.read(vkey(version, "model.joblib"))).hexdigest()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", on_disk["created_at"])
    assert on_disk["library_versions"]["sgdserve"] == __version__
    assert on_disk["library_versions"]["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert (on_disk["epochs"], on_disk["metrics"]) == (20, {"holdout": {"rmse": None}})


def test_save_refuses_bad_arguments(store: ModelStore) -> None:
    with pytest.raises(TypeError, match="model must be a LinearModel, got dict"):
        store.save({"coef": [1.0]}, {}, parent=None)
    with pytest.raises(VersionNotFoundError, match=r"version '\.\./x' not found"):
        store.save(make_model(), {}, parent="../x")
    with pytest.raises(TypeError, match=r"manifest\.extra\.thing is not JSON-serialisable"):
        store.save(make_model(), {"extra": {"thing": object()}}, parent=None)
    assert store.list() == []


def test_ids_sort_in_creation_order(store: ModelStore) -> None:
    ids = [store.save(make_model(i), {"n": i}, parent=None) for i in range(4)]
    assert ids == sorted(ids) == store.version_ids()
    assert [m["n"] for m in store.list()] == list(range(4))


def test_empty_store(store: ModelStore) -> None:
    assert store.active_version() is None
    assert store.current_stamp() is None
    assert store.list() == [] and store.jobs.list() == []
    assert store.last_promotion() is None and store.history() == []
    assert store.prune() == []
    assert store.is_locked() is None
    with pytest.raises(NoActiveModelError, match=r"sgdserve train --data FILE --target COL"):
        store.active()


# -- integrity ---------------------------------------------------------------------------------


def _flip(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 1
    return bytes(flipped)


class _RunsACommand:
    """Unpickling this would run a shell command that leaves a marker file."""

    marker = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _code_pickle(backend: Backend, version: str) -> None:
    state = make_model().to_state()
    state["extra"] = {"schema": [{"levels": ["a", "b"]}, _RunsACommand()]}  # nested deep
    buffer = io.BytesIO()
    joblib.dump(state, buffer)
    backend.write(vkey(version, "model.joblib"), buffer.getvalue())
    fix_sha(backend, version)


def _rewrite_state(state: object) -> Callable[[Backend, str], None]:
    def rewrite(backend: Backend, version: str) -> None:
        buffer = io.BytesIO()
        joblib.dump(state, buffer)
        backend.write(vkey(version, "model.joblib"), buffer.getvalue())
        fix_sha(backend, version)
    return rewrite


def _raw(name: str, change: Callable[[bytes], bytes]) -> Callable[[Backend, str], None]:
    return lambda b, v: b.write(vkey(v, name), change(b.read(vkey(v, name))))


CORRUPTIONS = {
    "flipped byte": (_raw("model.joblib", _flip), r"sha256 .* does not match"),
    "truncated": (_raw("model.joblib", lambda d: d[:-9]), r"tampered or truncated"),
    "empty model": (_raw("model.joblib", lambda d: b""), r"does not match"),
    "wrong shapes": (_rewrite_state({**make_model().to_state(), "coef": np.zeros(5)}),
                     r"bad model state: .*coef"),
    "missing model": (lambda b, v: b.delete(vkey(v, "model.joblib")), r"model\.joblib is missing"),
    "bad manifest json": (_raw("manifest.json", lambda d: b'{"id": '), r"not valid JSON"),
    "manifest of another id": (_raw("manifest.json", lambda d: b'{"id": "x"}'),
                               r"manifest\.json names id 'x'"),
    "no sha256": (lambda b, v: b.write(vkey(v, "manifest.json"), json.dumps({"id": v}).encode()),
                  r"manifest has no valid sha256"),
    "not a pickle": (lambda b, v: (b.write(vkey(v, "model.joblib"), b"not a pickle"),
                                   fix_sha(b, v)), r"model\.joblib cannot be loaded"),
    "bad state": (_rewrite_state({"format": 99}), r"bad model state"),
    "a pickle that runs a command": (_code_pickle, r"refused to load posix\.system"),
    "an object array": (_rewrite_state({**make_model().to_state(),
                                        "coef": np.array([1, None, 2, 3], dtype=object)}),
                        r"numpy dtype '\|O' is not allowed"),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_version_is_refused(backend: Backend, store: ModelStore, corruption: str,
                                      tmp_path: Path) -> None:
    corrupt, message = CORRUPTIONS[corruption]
    _RunsACommand.marker = str(tmp_path / "the-command-ran")
    good = store.save(make_model(1.0), {}, parent=None)
    store.activate(good)
    bad = store.save(make_model(2.0), {}, parent=good)
    corrupt(backend, bad)
    stamp = store.current_stamp()
    with pytest.raises(IntegrityError, match=message) as info:
        store.load(bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(IntegrityError, match=message):
        store.activate(bad)
    assert store.active_version() == good and store.current_stamp() == stamp
    assert [e["version"] for e in store.history()] == [good]
    assert not Path(_RunsACommand.marker).exists()
    listed = {m["id"]: m for m in store.list()}
    assert set(listed) == {good, bad}


def test_the_command_pickle_would_run_a_command(tmp_path: Path) -> None:
    """The pickle of the test above is real: plain pickle runs it (so refusing it means
    something)."""
    _RunsACommand.marker = str(tmp_path / "ran")
    pickle.loads(pickle.dumps(_RunsACommand()))
    assert Path(_RunsACommand.marker).exists()


def test_a_richer_model_state_still_loads(backend: Backend, store: ModelStore) -> None:
    """Plain data of any nesting passes the restricted unpickler: a feature schema with level
    lists and per-feature dicts, unicode and integer arrays, tuples, None."""
    version = store.save(make_model(), {}, parent=None)
    state = make_model().to_state()
    state["future"] = {"features": [{"name": "city", "kind": "categorical",
                                     "levels": ["Oslo", "Zürich"], "missing": None}],
                       "codes": np.array([0, 1, 1], dtype=np.int32),
                       "names": np.array(["a", "bc"]), "mask": np.array([True, False]),
                       "bounds": (1.5, 2), "matrix": np.asfortranarray(np.ones((2, 3)))}
    _rewrite_state(state)(backend, version)
    from service.store.safe_pickle import loads

    loaded = loads(backend.read(vkey(version, "model.joblib")))
    assert loaded["future"]["features"][0]["levels"] == ["Oslo", "Zürich"]
    np.testing.assert_array_equal(loaded["future"]["codes"], [0, 1, 1])
    np.testing.assert_array_equal(loaded["future"]["matrix"], np.ones((2, 3)))
    assert store.load(version)[0].target == "price"


def test_active_naming_a_missing_version(backend: Backend, store: ModelStore) -> None:
    version = store.save(make_model(), {}, parent=None)
    store.activate(version)
    backend.remove_version(version)
    with pytest.raises(IntegrityError, match=rf"CURRENT names version '{version}', which is"):
        store.active()


def test_garbage_in_current(backend: Backend, store: ModelStore) -> None:
    good = store.save(make_model(), {}, parent=None)
    backend.write("CURRENT", b"../../etc/passwd\n")
    with pytest.raises(CurrentDamagedError, match=r"CURRENT is damaged: it holds '\.\./\.\./etc"):
        store.active_version()
    with pytest.raises(CurrentDamagedError):  # a precondition cannot be checked against it
        store.activate(good, expected_current=good)
    assert store.activate(good) is None  # no precondition: the repair
    assert store.active_version() == good


@pytest.mark.parametrize("bad", ["../x", "", "versions", "20261126T222935.566989Z-a1d53d/../x",
                                 "20261126T222935.566989Z-ABCDEF", None, 42], ids=repr)
def test_bad_version_ids_are_refused(store: ModelStore, bad) -> None:
    for call in (store.get, store.load, store.activate):
        with pytest.raises(VersionNotFoundError, match=r"not found in .*house-price"):
            call(bad)


def test_unknown_version(store: ModelStore) -> None:
    unknown = "20200101T000000.000000Z-000000"
    with pytest.raises(VersionNotFoundError) as info:
        store.load(unknown)
    assert str(info.value) == f"version '{unknown}' not found in {store.location}"


# -- activate, the precondition, history --------------------------------------------------------


def test_rollback_and_history(store: ModelStore) -> None:
    v1 = store.save(make_model(1.0), {}, parent=None)
    v2 = store.save(make_model(2.0), {}, parent=v1)
    assert store.activate(v1) is None
    stamp1 = store.current_stamp()
    assert store.current_stamp() == stamp1  # unchanged while CURRENT is
    assert store.activate(v2) == v1
    stamp2 = store.current_stamp()
    assert stamp2 != stamp1
    assert store.activate(v1) == v2  # rollback
    # A stamp tells what CURRENT holds: on S3 it is the ETag, the MD5 of "v1\n" again.
    assert store.current_stamp() != stamp2
    assert_same_model(store.active()[1], make_model(1.0))
    history = store.history()
    assert [(e["version"], e["previous"]) for e in history] == [(v1, None), (v2, v1), (v1, v2)]
    last = store.last_promotion()
    assert (last["version"], last["previous"]) == (v1, v2)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", last["time"])


def test_activate_checks_the_expected_current(store: ModelStore) -> None:
    v1 = store.save(make_model(1.0), {}, parent=None)
    v2 = store.save(make_model(2.0), {}, parent=v1)
    assert store.activate(v1, expected_current=None) is None
    with pytest.raises(CurrentChangedError, match=f"the active version is {v1}, not {v2}") as e:
        store.activate(v2, expected_current=v2)
    assert e.value.current == v1
    assert store.active_version() == v1
    assert store.activate(v2, expected_current=v1) == v1


def test_promoters_at_once_exactly_one_wins(backend: Backend, store: ModelStore) -> None:
    """Eight promoters, each in its own store object (as separate processes would be), all
    expecting v0 to be active: one switches, seven are told which version won."""
    v0 = store.save(make_model(), {}, parent=None)
    store.activate(v0)
    candidates = [store.save(make_model(i), {}, parent=v0) for i in range(1, 9)]
    barrier = threading.Barrier(len(candidates))
    outcomes: dict[str, object] = {}

    def promote(version: str) -> None:
        other = backend.store()
        barrier.wait()
        try:
            with other.lock(wait=30, owner=f"promoter {version}"):
                other.activate(version, expected_current=v0)
            outcomes[version] = "won"
        except CurrentChangedError as exc:
            outcomes[version] = exc.current

    threads = [threading.Thread(target=promote, args=(v,)) for v in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [v for v, o in outcomes.items() if o == "won"]
    assert len(outcomes) == 8 and len(winners) == 1, outcomes
    assert store.active_version() == winners[0]
    assert all(o == winners[0] for v, o in outcomes.items() if v != winners[0])
    assert [e["version"] for e in store.history()] == [v0, winners[0]]


# -- retention ---------------------------------------------------------------------------------


def test_retention_keeps_newest_plus_active_and_parent(backend: Backend) -> None:
    store = backend.store(keep=3)
    ids: list[str] = []
    for i in range(6):
        ids.append(store.save(make_model(i), {}, parent=ids[-1] if ids else None))
    store.activate(ids[1])  # an old version is active; its parent is ids[0]
    assert store.prune() == [ids[2]]
    assert store.version_ids() == [ids[0], ids[1], ids[3], ids[4], ids[5]]
    assert not [k for k in backend.keys() if ids[2] in k]
    assert store.prune() == []
    store.activate(ids[5])
    assert sorted(store.prune()) == [ids[0], ids[1]]
    assert store.version_ids() == ids[3:]


# -- the lock ----------------------------------------------------------------------------------


def test_lock_names_its_holder_and_is_not_reentrant(backend: Backend, store: ModelStore) -> None:
    with store.lock(owner="outer") as holder:
        assert holder["owner"] == "outer" and holder["pid"] == os.getpid()
        assert store.is_locked()["owner"] == "outer"
        with pytest.raises(LockHeldError, match=rf"locked by pid {os.getpid()} \(outer\)"):
            with backend.store().lock(owner="second"):
                pass
        with pytest.raises(LockHeldError, match=r"\(waited 0\.2 s\)"):
            with backend.store().lock(wait=0.2):
                pass
    assert store.is_locked() is None
    with backend.store().lock(owner="after") as holder:
        assert holder["owner"] == "after"


def test_lock_refuses_a_negative_wait(store: ModelStore) -> None:
    with pytest.raises(ValueError, match="wait must be"):
        with store.lock(wait=-1):
            pass


def test_a_lock_taken_for_a_child_is_held_until_released(backend: Backend,
                                                         store: ModelStore) -> None:
    held = store.take_lock("retrain job j", job_id="job-x")
    assert held.holder["job_id"] == "job-x"
    assert backend.store().is_locked()["job_id"] == "job-x"
    with pytest.raises(LockHeldError):
        backend.store().take_lock("another")
    assert held.child_argv()[0] == "--lock"
    held.release()
    assert store.is_locked() is None


# -- jobs --------------------------------------------------------------------------------------


def test_jobs_round_trip(backend: Backend, store: ModelStore) -> None:
    first, second = store.jobs.new_id(), store.jobs.new_id()
    assert first != second and re.fullmatch(r"job-\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}", first)
    directory = store.jobs.directory(first)
    assert directory.is_dir()  # local disk, where the job's process reads its upload
    written = store.jobs.write(first, {"status": "running", "progress": np.float64(0.5)})
    assert backend.store().jobs.read(first) == written  # any worker, any replica
    store.jobs.write(first, {"status": "failed", "rmse": float("nan")})
    assert store.jobs.read(first)["rmse"] is None
    store.jobs.write(second, {"status": "queued"})
    assert [j["id"] for j in store.jobs.list()] == sorted([first, second])
    with pytest.raises(JobNotFoundError, match="not found"):
        store.jobs.read(store.jobs.new_id())
    for bad in ("../x", "job-../../CURRENT", "", None):
        with pytest.raises(JobNotFoundError):
            store.jobs.read(bad)
        with pytest.raises(JobNotFoundError):
            store.jobs.write(bad, {})
    backend.write(f"jobs/{second}.json", b"{not json")
    with pytest.raises(JobError, match="not valid JSON"):
        store.jobs.read(second)
    assert [j["status"] for j in store.jobs.list()] == ["failed", "corrupt"]


# -- signed versions ---------------------------------------------------------------------------


def signed(backend: Backend, key: str = KEY, old: tuple[str, ...] = ()) -> ModelStore:
    return backend.store(signer=Signer(key, old))


def test_a_signed_version_loads_and_its_signature_is_a_file_of_its_own(
        backend: Backend) -> None:
    store = signed(backend)
    version = store.save(make_model(), {}, parent=None)
    store.activate(version)
    sig_key = vkey(version, f"signatures/{key_id(KEY)}.json")
    document = json.loads(backend.read(sig_key))
    assert document["algorithm"] == "HMAC-SHA256" and document["version"] == version
    assert document["model_sha256"] == json.loads(
        backend.read(vkey(version, "manifest.json")))["sha256"]
    assert KEY not in backend.read(sig_key).decode()
    assert store.active()[0] == version
    assert "signature" not in store.get(version)  # the manifest was not edited


TAMPERING = {
    "manifest edited": lambda b, v: b.write(vkey(v, "manifest.json"), json.dumps(
        {**json.loads(b.read(vkey(v, "manifest.json"))), "status": "promoted"}).encode()),
    "model and sha256 rewritten": lambda b, v: (
        _rewrite_state({**make_model(7.0).to_state()})(b, v)),
    "signature by another key": lambda b, v: b.write(
        vkey(v, f"signatures/{key_id(KEY)}.json"),
        Signer("x" * 32).sign(v, b.read(vkey(v, "model.joblib")),
                              b.read(vkey(v, "manifest.json")))),
    "signature removed": lambda b, v: b.delete(vkey(v, f"signatures/{key_id(KEY)}.json")),
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_a_tampered_version_is_refused_by_every_reader(backend: Backend, tampering: str) -> None:
    store = signed(backend)
    good = store.save(make_model(), {}, parent=None)
    store.activate(good)
    bad = store.save(make_model(1.0), {}, parent=good)
    TAMPERING[tampering](backend, bad)
    for reader in (store, signed(backend)):
        with pytest.raises(SignatureError, match=rf"version '{bad}'.*refused"):
            reader.load(bad)
        with pytest.raises(SignatureError):
            reader.activate(bad)
    assert store.active_version() == good
    # Without a key the store does not check signatures (but still the sha256).
    if tampering != "manifest edited":
        assert backend.store().load(bad)


def test_an_unsigned_store_is_signed_in_place_after_checking_each_sha256(
        backend: Backend) -> None:
    plain = backend.store()
    v1 = plain.save(make_model(1.0), {}, parent=None)
    v2 = plain.save(make_model(2.0), {}, parent=v1)
    v3 = plain.save(make_model(3.0), {}, parent=v2)
    plain.activate(v2)
    backend.write(vkey(v3, "model.joblib"), _flip(backend.read(vkey(v3, "model.joblib"))))
    before = {k: backend.read(k) for k in backend.keys()}
    store = signed(backend)
    with pytest.raises(SignatureError, match="not signed by an accepted key.*sgdserve models sign"):
        store.active()
    outcomes = dict(store.sign_versions())
    assert outcomes[v1] == outcomes[v2] == "signed"
    assert outcomes[v3].startswith("refused:") and "sha256" in outcomes[v3]
    assert store.active()[0] == v2
    with pytest.raises(IntegrityError):
        store.load(v3)
    # Nothing rewritten: only signature files were added.
    assert all(backend.read(k) == data for k, data in before.items())
    added = set(backend.keys()) - set(before)
    assert added == {vkey(v, f"signatures/{key_id(KEY)}.json") for v in (v1, v2)}
    assert dict(store.sign_versions())[v1] == "already signed"


def test_key_rotation(backend: Backend) -> None:
    old_store = signed(backend, OLD_KEY)
    version = old_store.save(make_model(), {}, parent=None)
    # Readers that accept the old key beside the new one load it ...
    rotating = signed(backend, KEY, (OLD_KEY,))
    assert rotating.load(version)
    with pytest.raises(SignatureError):
        signed(backend, KEY).load(version)
    # ... and signing the store again with the new key lets the old key go.
    assert dict(rotating.sign_versions())[version] == "signed"
    assert signed(backend, KEY).load(version)
    fresh = rotating.save(make_model(1.0), {}, parent=version)  # new versions: the new key
    assert signed(backend, KEY).load(fresh)
    with pytest.raises(SignatureError):
        signed(backend, OLD_KEY).load(fresh)
