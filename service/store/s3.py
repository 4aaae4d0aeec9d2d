"""The model store on S3-compatible object storage: create-only versions, ``CURRENT`` swapped by
compare-and-swap on its ETag, and the trainer's lock a lease object.

Layout: the local store's, under ``s3://bucket/prefix/<name>/``::

    CURRENT                                 the active version id, one line (metadata: previous,
                                            time, pid, token)
    history/<time>_<version>_<previous>_<pid>   one object per promotion; the key is the record
    versions/<id>/model.joblib              written first, create-only (If-None-Match: *)
    versions/<id>/signatures/<key-id>.json  with a signing key; create-only
    versions/<id>/manifest.json             written last, create-only: the version exists once
                                            this object does
    jobs/<job-id>.json                      retrain job status, readable by every replica
    lock                                    the lease (below)

Since 2024 S3 has conditional writes, and they are all this needs: ``If-None-Match: *`` creates
an object only if it is absent (a version is never overwritten; a lease is taken when there is
none) and ``If-Match: <etag>`` replaces only the object that was read (``CURRENT``, the lease).
A writer whose condition fails re-reads and decides again, so no update is ever lost.

**The lease** (``lock``) is one JSON object: ``token`` (a fencing token, one more on every new
holder), ``owner``, ``pid``, ``host``, ``since``, ``ttl`` and ``released``. A holder renews it
(``If-Match``) every ``ttl / 3`` seconds from a thread; it is free when released or when the
server's own clock says it was last written ``ttl`` seconds ago (the response's ``Date`` minus
its ``Last-Modified``, whole seconds both, so a second more: no two hosts' clocks are
compared). Taking a free lease is a conditional
write on the ETag read, so two takers cannot both win. A promotion by a lease holder first
checks, by a conditional HEAD, that the lease is still its own (and records the token in
``CURRENT``'s metadata); the compare-and-swap on ``CURRENT`` protects it in any case.

boto3 is imported only here, when an ``s3://`` store is opened, and each process builds its own
client (a gunicorn worker after the fork). Endpoint, region and credentials come from the usual
AWS variables and files, ``AWS_ENDPOINT_URL`` included.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..engine.model import LinearModel
from ..errors import (
    CurrentDamagedError,
    IntegrityError,
    LockHeldError,
    LockLostError,
    StoreUnavailableError,
)
from ..util import to_json, utc_iso
from . import files
from .base import (
    ANY,
    MANIFEST_FILE,
    MODEL_FILE,
    Artifact,
    HeldLock,
    ModelStore,
    Patience,
    check_expected,
    check_key_id,
    check_save_args,
    encode_model,
    iter_version_ids,
    manifest_fields,
    parse_manifest,
)
from .ids import JOB_RE, is_version_id, new_version_id
from .jobs import JobFiles
from .local import HISTORY_KEPT, check_name
from .lock import held_message
from .signing import SIGNATURES_DIR, Signer

__all__ = ["LEASE_SECONDS", "Lease", "S3Store", "split_url"]

LEASE_SECONDS = 30.0  # a holder that stops renewing frees the lock after this long
_CAS_ATTEMPTS = 20  # compare-and-swap retries when other writers keep winning


class _NotFound(Exception):
    pass


class _PreconditionFailed(Exception):
    pass


class _NotModified(Exception):
    pass


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")`` (prefix "" at the root)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class _Client:
    """A boto3 S3 client per process (built lazily, again after a fork), errors translated."""

    def __init__(self, bucket: str, where: str) -> None:
        self.bucket = bucket
        self.where = where
        self._pid: int | None = None
        self._clients: dict[bool, Any] = {}
        self._lock = threading.Lock()

    def _client(self, poll: bool) -> Any:
        pid = os.getpid()
        with self._lock:
            if self._pid != pid:  # a fork: a client's connection pool is not shared
                self._clients = {}
                self._pid = pid
            client = self._clients.get(poll)
            if client is None:
                import boto3
                from botocore.config import Config

                # A poll is retried by the next poll; other calls get botocore's standard retries.
                config = Config(
                    connect_timeout=2 if poll else 5,
                    read_timeout=3 if poll else 30,
                    retries={"mode": "standard", "total_max_attempts": 1 if poll else 3},
                )
                client = boto3.session.Session().client("s3", config=config)
                self._clients[poll] = client
            return client

    def call(self, method: str, *, poll: bool = False, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client(poll), method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise StoreUnavailableError(
                    f"{self.where}: bucket {self.bucket!r} does not exist") from None
            if status == 304 or code in ("304", "NotModified"):
                raise _NotModified from None
            # 409 ConditionalRequestConflict: another conditional write to the key is in flight.
            if status == 412 or code in ("PreconditionFailed", "412",
                                         "ConditionalRequestConflict"):
                raise _PreconditionFailed from None
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                raise _NotFound from None
            message = error.get("Message") or code
            raise StoreUnavailableError(
                f"{self.where}: {method} was refused: {code or status} {message}") from None
        except BotoCoreError as exc:
            raise StoreUnavailableError(
                f"{self.where}: cannot reach the object store: {exc}") from None

    def get(self, key: str, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
        response = self.call("get_object", Key=key, **kwargs)
        try:
            body = response["Body"].read()
        except Exception as exc:  # a connection cut while reading the body
            raise StoreUnavailableError(f"{self.where}: reading {key} failed: {exc}") from None
        return body, response

    def put(self, key: str, body: bytes, **kwargs: Any) -> str:
        return self.call("put_object", Key=key, Body=body, **kwargs)["ETag"]

    def list(self, prefix: str) -> list[dict[str, Any]]:
        """Every object under ``prefix`` (Key, LastModified, ...), in key order."""
        objects: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self.call("list_objects_v2", Prefix=prefix, **extra)
            objects.extend(page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return objects
            token = page.get("NextContinuationToken")

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self.call("delete_objects", Delete={"Objects": batch, "Quiet": True})


def _server_age(response: Mapping[str, Any]) -> float:
    """Seconds since the object was written, by the server's clock (Date - Last-Modified)."""
    modified = response.get("LastModified")
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    now = time.time()
    if date:
        with contextlib.suppress(TypeError, ValueError):
            now = email.utils.parsedate_to_datetime(date).timestamp()
    return now - modified.timestamp() if modified is not None else 0.0


class S3Store(ModelStore):
    """Versions of one model under ``s3://bucket/prefix/<name>/``; shared by every replica."""

    remote = True

    def __init__(self, url: str, name: str = "house-price", keep: int = 20, *,
                 signer: Signer | None = None, lease_seconds: float = LEASE_SECONDS) -> None:
        check_name(name)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1, got {keep!r}")
        self.url = url.rstrip("/")
        self.bucket, prefix = split_url(url)
        self.name = name
        self.keep = keep
        self.signer = signer
        self.lease_seconds = float(lease_seconds)
        self.base = f"{prefix}{name}/"
        self.s3 = _Client(self.bucket, self.location)
        self.jobs = _ObjectJobFiles(self)
        self._seen_etag: str | None = None  # CURRENT's ETag as this process's last poll saw it
        self._lease: Lease | None = None  # the lease this process holds, if any

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, name={self.name!r}, keep={self.keep})"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.base.rstrip('/')}"

    def _key(self, *parts: str) -> str:
        return self.base + "/".join(parts)

    def _version_key(self, version_id: str, name: str) -> str:
        return self._key("versions", self._check_id(version_id), name)

    # -- saving ----------------------------------------------------------------------------

    def save(self, model: LinearModel, manifest: Mapping[str, Any], *, parent: str | None,
             status: str = "candidate") -> str:
        check_save_args(self, model, manifest, parent, status)
        model_bytes, sha256 = encode_model(model)
        fields = to_json(dict(manifest), "manifest")
        for _ in range(_CAS_ATTEMPTS):
            version_id = new_version_id(self._known_ids())
            full = dict(fields)
            full.update(manifest_fields(model, version_id, utc_iso(), sha256, parent, status))
            manifest_bytes = files.dumps(full)
            try:
                # Create-only: an id another writer took in the same microsecond is not reused.
                self.s3.put(self._version_key(version_id, MODEL_FILE), model_bytes,
                            IfNoneMatch="*")
            except _PreconditionFailed:
                continue
            signature = self._signature_for(version_id, model_bytes, manifest_bytes)
            try:
                if signature is not None:
                    self.s3.put(self._version_key(version_id, f"{SIGNATURES_DIR}/"
                                                  f"{signature[0]}.json"),
                                signature[1], IfNoneMatch="*")
                # Last: the version is visible, complete, from this write on.
                self.s3.put(self._version_key(version_id, MANIFEST_FILE), manifest_bytes,
                            IfNoneMatch="*", ContentType="application/json")
            except _PreconditionFailed:
                raise IntegrityError(
                    f"version {version_id!r}: another writer wrote its files meanwhile"
                ) from None
            return version_id
        raise StoreUnavailableError(f"{self.location}: no free version id after "
                                    f"{_CAS_ATTEMPTS} attempts")

    def _known_ids(self) -> Iterator[str]:
        yield from self._version_objects()
        with contextlib.suppress(IntegrityError):
            active = self.active_version()
            if active is not None:
                yield active

    def _version_objects(self) -> dict[str, list[dict[str, Any]]]:
        """Every object under versions/, by version id (complete or not)."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        prefix = self._key("versions", "")
        for obj in self.s3.list(prefix):
            version_id = obj["Key"][len(prefix):].split("/", 1)[0]
            if is_version_id(version_id):
                grouped.setdefault(version_id, []).append(obj)
        return grouped

    # -- reading ---------------------------------------------------------------------------

    def _read(self, version_id: str, name: str) -> bytes:
        try:
            return self.s3.get(self._version_key(version_id, name))[0]
        except _NotFound:
            if name == MANIFEST_FILE:
                raise self._not_found(version_id) from None
            raise IntegrityError(f"version {version_id!r}: {name} is missing") from None

    def get(self, version_id: str) -> dict[str, Any]:
        return parse_manifest(version_id, self._read(version_id, MANIFEST_FILE))

    def read_artifact(self, version_id: str) -> Artifact:
        raw = self._read(version_id, MANIFEST_FILE)
        manifest = parse_manifest(version_id, raw)
        return Artifact(manifest, raw, self._read(version_id, MODEL_FILE))

    def read_signature(self, version_id: str, key_id: str) -> bytes | None:
        key = self._version_key(version_id, f"{SIGNATURES_DIR}/{check_key_id(key_id)}.json")
        try:
            return self.s3.get(key)[0]
        except _NotFound:
            return None

    def write_signature(self, version_id: str, key_id: str, data: bytes) -> bool:
        self.get(version_id)  # not found unless the version is complete
        key = self._version_key(version_id, f"{SIGNATURES_DIR}/{check_key_id(key_id)}.json")
        try:
            self.s3.put(key, data, IfNoneMatch="*", ContentType="application/json")
        except _PreconditionFailed:
            return False
        return True

    def version_ids(self) -> list[str]:
        prefix = self._key("versions", "")
        suffix = "/" + MANIFEST_FILE
        return iter_version_ids(
            obj["Key"][len(prefix):-len(suffix)] for obj in self.s3.list(prefix)
            if obj["Key"].endswith(suffix)
        )

    def _read_current(self) -> tuple[str | None, str | None, dict[str, Any]]:
        """(CURRENT's text, its ETag, the response), or (None, None, {}) when it is absent."""
        try:
            body, response = self.s3.get(self._key("CURRENT"))
        except _NotFound:
            return None, None, {}
        return body.decode("utf-8", errors="replace").strip(), response["ETag"], response

    def _parse_current(self, text: str | None) -> str | None:
        if text is None:
            return None
        if not is_version_id(text):
            raise CurrentDamagedError(
                f"{self.location}/CURRENT is damaged: it holds {text[:80]!r}, not a version id; "
                "repair it with `sgdserve models activate ID` (or `sgdserve train --force`)"
            )
        return text

    def active_version(self) -> str | None:
        return self._parse_current(self._read_current()[0])

    def current_stamp(self) -> str | None:
        """``CURRENT``'s ETag, by a conditional GET: 304 Not Modified when it has not changed
        since this process's last poll (no body is sent)."""
        seen = self._seen_etag
        extra = {"IfNoneMatch": seen} if seen else {}
        try:
            _, response = self.s3.get(self._key("CURRENT"), poll=True, **extra)
        except _NotModified:
            return seen
        except _NotFound:
            self._seen_etag = None
            return None
        self._seen_etag = response["ETag"]
        return self._seen_etag

    # -- promoting -------------------------------------------------------------------------

    def activate(self, version_id: str, *, expected_current: Any = ANY) -> str | None:
        """Make a version active after checking it loads: a compare-and-swap on ``CURRENT``'s
        ETag (If-Match; If-None-Match: * when there is none), retried while other writers win
        unless the precondition no longer holds."""
        self.load(version_id)  # raises before anything is written
        for _ in range(_CAS_ATTEMPTS):
            text, etag, _ = self._read_current()
            try:
                previous = self._parse_current(text)
            except CurrentDamagedError:
                if expected_current is not ANY:
                    raise
                previous = None
            check_expected(expected_current, previous)
            metadata = {"previous": previous or "", "time": utc_iso(), "pid": str(os.getpid())}
            if self._lease is not None:
                self._lease.check()  # a holder whose lease was taken over must not promote
                metadata["token"] = str(self._lease.token)
            condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
            try:
                self.s3.put(self._key("CURRENT"), (version_id + "\n").encode(),
                            Metadata=metadata, ContentType="text/plain", **condition)
            except (_PreconditionFailed, _NotFound):
                continue  # another writer came first: look again
            entry = f"{metadata['time']}_{version_id}_{previous or 'none'}_{metadata['pid']}"
            with contextlib.suppress(_PreconditionFailed):
                self.s3.put(self._key("history", entry), b"", IfNoneMatch="*")
            return previous
        raise StoreUnavailableError(f"{self.location}: CURRENT kept changing; "
                                    f"gave up after {_CAS_ATTEMPTS} attempts")

    def _history_objects(self) -> list[dict[str, Any]]:
        return self.s3.list(self._key("history", ""))

    def history(self) -> list[dict[str, Any]]:
        prefix = self._key("history", "")
        entries = []
        for obj in self._history_objects():
            parts = obj["Key"][len(prefix):].split("_")
            if len(parts) != 4 or not is_version_id(parts[1]):
                continue
            previous = parts[2] if is_version_id(parts[2]) else None
            entries.append({"time": parts[0], "version": parts[1], "previous": previous,
                            "pid": int(parts[3]) if parts[3].isdigit() else None})
        return entries

    def last_promotion(self) -> dict[str, Any] | None:
        # One GET of CURRENT (its metadata says when and from what), not a listing: /metrics
        # asks for this on every scrape.
        text, _, response = self._read_current()
        if text is None:
            return None
        metadata = response.get("Metadata", {})
        when = metadata.get("time") or utc_iso(response["LastModified"])
        return {"time": when, "version": text if is_version_id(text) else None,
                "previous": metadata.get("previous") or None}

    # -- retention -------------------------------------------------------------------------

    def prune(self) -> list[str]:
        """Delete versions beyond the newest ``keep`` (never the active one or its parent),
        unfinished saves older than an hour, old history and old jobs. Returns deleted ids."""
        protected = self.protected_versions()
        grouped = self._version_objects()
        complete = iter_version_ids(
            v for v, objs in grouped.items()
            if any(o["Key"].endswith("/" + MANIFEST_FILE) for o in objs))
        doomed = [v for v in complete[: max(0, len(complete) - self.keep)] if v not in protected]
        for version_id in doomed:
            # The manifest first: the version disappears from view in one step.
            self.s3.delete([self._version_key(version_id, MANIFEST_FILE)])
            self.s3.delete([o["Key"] for o in grouped[version_id]
                            if not o["Key"].endswith("/" + MANIFEST_FILE)])
        now = time.time()
        for version_id, objs in grouped.items():
            if version_id in complete or version_id in protected:
                continue
            newest = max(o["LastModified"].timestamp() for o in objs)
            if now - newest > files.TMP_MAX_AGE:  # a save that never finished
                self.s3.delete([o["Key"] for o in objs])
        history = self._history_objects()
        if len(history) > 2 * HISTORY_KEPT:
            self.s3.delete([o["Key"] for o in history[: len(history) - HISTORY_KEPT]])
        self.jobs.prune()
        return doomed

    # -- the lease -------------------------------------------------------------------------

    def _read_lease(self) -> tuple[dict[str, Any] | None, str | None, bool]:
        """(the lease record, its ETag, whether it is free); (None, None, True) if absent."""
        try:
            body, response = self.s3.get(self._key("lock"))
        except _NotFound:
            return None, None, True
        try:
            record = json_object(body)
        except ValueError:
            return {}, response["ETag"], True  # unreadable: anyone may replace it
        ttl = record.get("ttl")
        ttl = float(ttl) if isinstance(ttl, (int, float)) else self.lease_seconds
        # Both times have whole seconds: one more second, so an early expiry is impossible.
        age = _server_age(response)
        free = bool(record.get("released")) or age >= ttl + 1
        if not free:
            record["expires_in"] = round(max(0.0, ttl + 1 - age), 1)
        return record, response["ETag"], free

    def _record(self, token: int, owner: str, **extra: Any) -> dict[str, Any]:
        return {"token": token, "pid": os.getpid(), "owner": owner,
                "host": socket.gethostname(), "since": utc_iso(), "ttl": self.lease_seconds,
                "released": False, **extra}

    def acquire_lease(self, wait: bool | float = False, owner: str = "",
                      patience: Patience | None = None, **extra: Any) -> Lease:
        """Take the lease (conditional writes only); a held one is a :class:`LockHeldError`
        naming its holder, after waiting as ``wait`` says (False, True, or seconds)."""
        if wait is not True and wait is not False:
            wait = float(wait)
            if not wait >= 0:
                raise ValueError(f"wait must be True, False or seconds >= 0, got {wait!r}")
        timeout = float("inf") if wait is True else 0.0 if wait is False else float(wait)
        start = time.monotonic()
        pause = 0.05
        while True:
            record, etag, free = self._read_lease()
            if free:
                token = int(record.get("token", 0)) + 1 if isinstance(
                    (record or {}).get("token"), int) else 1
                new = self._record(token, owner, **extra)
                condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
                try:
                    new_etag = self.s3.put(self._key("lock"), files.dumps(new),
                                           ContentType="application/json", **condition)
                except (_PreconditionFailed, _NotFound):
                    continue  # another taker won: look again
                return Lease(self, new_etag, new)
            elapsed = time.monotonic() - start
            assert record is not None
            if elapsed < timeout or (patience is not None and patience(record, elapsed)):
                time.sleep(min(pause, max(0.0, timeout - elapsed)) or 0.01)
                pause = min(pause * 1.5, 0.5)
                continue
            message = held_message(record) + f" (lease token {record.get('token')})"
            if 0 < timeout < float("inf"):
                message += f" (waited {timeout:g} s)"
            raise LockHeldError(message, holder=record)

    @contextlib.contextmanager
    def lock(self, wait: bool | float = False, owner: str = "") -> Iterator[dict[str, Any]]:
        """Hold the lease for a ``with`` block, renewed from a thread; not re-entrant."""
        lease = self.acquire_lease(wait, owner)
        with self._holding(lease):
            yield dict(lease.record)

    @contextlib.contextmanager
    def _holding(self, lease: Lease) -> Iterator[None]:
        self._lease = lease
        lease.start_renewing()
        try:
            yield
        finally:
            self._lease = None
            lease.release()

    def is_locked(self) -> dict[str, Any] | None:
        record, _, free = self._read_lease()
        return None if free else record

    def take_lock(self, owner: str, *, patience: Patience | None = None,
                  **extra: Any) -> HeldLock:
        return _HandedLease(self.acquire_lease(False, owner, patience=patience, **extra))

    @contextlib.contextmanager
    def adopt_lock(self, handle: str, owner: str, **extra: Any) -> Iterator[dict[str, Any]]:
        kind, _, rest = handle.partition(":")
        token, _, etag = rest.partition(":")
        if kind != "lease" or not token.isdigit() or not etag:
            raise LockHeldError(f"not a lease handle: {handle!r}")
        lease = Lease(self, etag, {"token": int(token)})
        try:
            lease.renew(self._record(int(token), owner, **extra))  # now this pid
        except LockLostError:
            raise LockHeldError("the lease handed to this process was lost before it "
                                "started (expired and taken by another)") from None
        with self._holding(lease):
            yield dict(lease.record)

    def free_lease(self, token: int) -> None:
        """Release the lease if it still carries ``token`` (its holder died without letting
        go); one that another process took since is left alone."""
        record, etag, free = self._read_lease()
        if free or record is None or record.get("token") != token:
            return
        with contextlib.suppress(_PreconditionFailed, _NotFound):
            self.s3.put(self._key("lock"), files.dumps({**record, "released": True}),
                        IfMatch=etag, ContentType="application/json")

    def reopen_argv(self) -> list[str]:
        return ["--model-dir", self.url, "--name", self.name, "--keep", str(self.keep)]


class Lease:
    """The store's lease as one holder has it: its ETag is the proof of holding."""

    def __init__(self, store: S3Store, etag: str, record: dict[str, Any]) -> None:
        self.store = store
        self.etag = etag
        self.record = record
        self.token: int = int(record["token"])
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()  # renewals and the release never overlap

    def _write(self, record: dict[str, Any]) -> None:
        try:
            self.etag = self.store.s3.put(self.store._key("lock"), files.dumps(record),
                                          IfMatch=self.etag, ContentType="application/json")
        except (_PreconditionFailed, _NotFound):
            self.lost = "the lease expired and another process took it"
            raise LockLostError(f"{self.store.location}: {self.lost}") from None
        self.record = record

    def renew(self, record: dict[str, Any] | None = None) -> None:
        """Write the lease again (If-Match: only if it is still ours); resets its expiry."""
        with self._mutex:
            self._write(dict(record or self.record))

    def check(self) -> None:
        """Raise :class:`LockLostError` unless the lease is still this holder's."""
        if self.lost:
            raise LockLostError(f"{self.store.location}: {self.lost}; not promoting")
        try:
            self.store.s3.call("head_object", Key=self.store._key("lock"), IfMatch=self.etag)
        except (_PreconditionFailed, _NotFound):
            self.lost = "the lease expired and another process took it"
            raise LockLostError(f"{self.store.location}: {self.lost}; not promoting") from None

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal",
                                        daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        interval = float(self.record.get("ttl", LEASE_SECONDS)) / 3
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LockLostError:
                return
            except StoreUnavailableError:
                continue  # retried at the next tick; the lease lasts ttl

    def release(self) -> None:
        """Stop renewing and mark the lease released (If-Match), unless it was lost."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self.lost:
            return
        with self._mutex, contextlib.suppress(LockLostError, StoreUnavailableError):
            self._write({**self.record, "released": True})


class _HandedLease(HeldLock):
    """A lease taken for a retrain job's child process, which takes it over by its ETag."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.holder = dict(lease.record)

    def child_argv(self) -> list[str]:
        return ["--lock", f"lease:{self.lease.token}:{self.lease.etag}"]

    def handed_over(self) -> None:
        pass  # the child renews it from now on (it has ttl seconds to start)

    def release(self) -> None:
        self.lease.release()

    def child_exited(self) -> None:
        self.lease.store.free_lease(self.lease.token)


class _ObjectJobFiles(JobFiles):
    """Job status records as objects under ``jobs/``; a job's private directory (its upload)
    on local disk, where its child process on the same host reads it."""

    def __init__(self, store: S3Store) -> None:
        scratch = hashlib.sha256(store.location.encode()).hexdigest()[:12]
        super().__init__(Path(tempfile.gettempdir()) / "sgdserve-jobs" / scratch,
                         store.location)
        self.store = store

    def _record_key(self, job_id: str) -> str:
        return self.store._key("jobs", f"{job_id}.json")

    def _write_record(self, job_id: str, data: bytes) -> None:
        self.store.s3.put(self._record_key(job_id), data, ContentType="application/json")

    def _read_record(self, job_id: str) -> bytes | None:
        try:
            return self.store.s3.get(self._record_key(job_id))[0]
        except _NotFound:
            return None

    def _listing(self) -> dict[str, float]:
        prefix = self.store._key("jobs", "")
        found = {}
        for obj in self.store.s3.list(prefix):
            name = obj["Key"][len(prefix):]
            if name.endswith(".json"):
                found[name[: -len(".json")]] = obj["LastModified"].timestamp()
        return found

    def _record_ids(self) -> list[str]:
        return [j for j in self._listing() if JOB_RE.fullmatch(j)]

    def _record_ages(self, now: float) -> dict[str, float]:
        return {j: now - t for j, t in self._listing().items() if JOB_RE.fullmatch(j)}

    def _remove_record(self, job_id: str) -> None:
        self.store.s3.delete([self._record_key(job_id)])


def json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from bytes; anything else is a ValueError."""
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value

