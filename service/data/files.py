"""Where training data is: a file, a directory, a glob or a list of them, on disk or in S3.

:func:`resolve` turns what a user gives ``--data`` into the files of one dataset, sorted by
path, each a :class:`DataFile` that the readers open the same way wherever it is: a local
path, or an ``s3://bucket/key`` object streamed through boto3. Endpoint, region and credentials
come from the usual AWS variables (``AWS_ENDPOINT_URL`` included), which polars' own object
store client (used for Parquet and whole reads) reads as well.

- a directory (``data/houses/``, ``s3://bucket/houses/``): every data file under it, at any
  depth (Hive-style ``year=2024/`` folders too), by extension; names starting with ``.`` or
  ``_`` (``_SUCCESS``, ``.part-0.crc``) are skipped, as Spark and Dask skip them;
- a glob (``data/part-*.parquet``, ``s3://bucket/houses/*.csv.gz``): ``*`` and ``?`` match
  within one path segment, ``**`` across segments;
- a list of any of these (``--data a.csv b.csv``).

A local file's fingerprint is the sha256 of its bytes; an S3 object's is its ETag (which S3
changes whenever the bytes change), so a dataset in a bucket is not downloaded twice.
"""

from __future__ import annotations

import glob as globbing
import hashlib
import io
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ..errors import DataError

__all__ = ["EXTENSIONS", "DataFile", "dataset_name", "one_file", "resolve"]

EXTENSIONS = {
    ".csv": "csv", ".csv.gz": "csv", ".txt": "csv",
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".jsonl.gz": "jsonl",
}
_WILDCARDS = re.compile(r"[*?\[]")
_MOST_NAMED = 3  # files a list names in a dataset's display name


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: a local path or an ``s3://`` URL, how messages name it, its size
    and (S3) its ETag."""

    url: str
    label: str
    size: int
    etag: str | None = None

    @property
    def remote(self) -> bool:
        return self.url.startswith("s3://")

    @property
    def name(self) -> str:
        """The last segment of the path: what its format is told from."""
        return PurePosixPath(self.url).name if self.remote else Path(self.url).name

    @property
    def compressed(self) -> bool:
        return self.name.lower().endswith(".gz")

    def open(self) -> BinaryIO:
        """The file's bytes as a binary stream (an S3 object is streamed, not downloaded)."""
        if not self.remote:
            return open(self.url, "rb")
        bucket, key = _split(self.url)
        response = _s3_call("get_object", self.url, Bucket=bucket, Key=key)
        return io.BufferedReader(_S3Body(response["Body"]), buffer_size=1 << 20)

    def digest(self) -> str:
        """sha256 of the bytes (local), or of the URL, size and ETag (S3: nothing downloaded)."""
        if self.remote:
            return hashlib.sha256(f"{self.url}\n{self.size}\n{self.etag}".encode()).hexdigest()
        h = hashlib.sha256()
        with open(self.url, "rb") as f:
            while block := f.read(1 << 22):
                h.update(block)  # releases the GIL for large blocks
        return h.hexdigest()


class _S3Body(io.RawIOBase):
    """botocore's streaming body as a raw stream, so io.BufferedReader (and gzip) can wrap it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


# -- resolving ---------------------------------------------------------------------------------


def resolve(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
            data_format: str | None = None) -> list[DataFile]:
    """The files ``spec`` names (see the module docstring), sorted by path within each item.

    A directory or glob keeps the files whose extension is a data format's (with
    ``data_format``, those of that format, or every file when none has a known extension).
    Nothing found is an error that names what was looked for.
    """
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not items:
        raise DataError("no data given: name a file, a directory or a glob")
    files: list[DataFile] = []
    for item in items:
        text = os.fspath(item)
        found = _resolve_s3(text, data_format) if text.startswith("s3://") else \
            _resolve_local(text, data_format)
        files.extend(found)
    seen: set[str] = set()
    unique = [f for f in files if not (f.url in seen or seen.add(f.url))]
    return _labelled(unique)


def one_file(spec: str | os.PathLike[str] | DataFile) -> DataFile:
    """A single named file (local or S3), not a directory or a glob."""
    if isinstance(spec, DataFile):
        return spec
    text = os.fspath(spec)
    if text.startswith("s3://"):
        bucket, key = _split(text)
        head = _s3_head(text, bucket, key)
        if head is None:
            raise DataError(f"data file {text!r} does not exist")
        return DataFile(text, PurePosixPath(key).name, int(head["ContentLength"]),
                        head.get("ETag"))
    path = Path(text)
    if not path.is_file():
        raise DataError(f"data file {text!r} does not exist")
    return DataFile(text, path.name, path.stat().st_size)


def dataset_name(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> str:
    """How provenance names a dataset: a single file by its name, a directory, glob or URL as
    given, a list by its first items."""
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if text.startswith("s3://") or _WILDCARDS.search(text) or Path(text).is_dir():
            return text
        return Path(text).name
    names = [dataset_name(item) for item in spec]
    if len(names) == 1:
        return names[0]
    shown = ", ".join(names[:_MOST_NAMED])
    return shown + (f" and {len(names) - _MOST_NAMED} more" if len(names) > _MOST_NAMED else "")


def format_of(name: str) -> str | None:
    """The format a file name's extension says, or None."""
    lower = name.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return EXTENSIONS[ext]
    return None


def _keep(names: list[str], data_format: str | None) -> list[str]:
    """The data files among the files of a directory or glob (hidden ones already gone)."""
    known = [n for n in names if format_of(PurePosixPath(n).name) is not None]
    if data_format is None:
        return known
    same = [n for n in known if format_of(PurePosixPath(n).name) == data_format]
    return same or ([] if known else names)


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in PurePosixPath(relative).parts)


def _resolve_local(text: str, data_format: str | None) -> list[DataFile]:
    path = Path(text)
    if path.is_file():
        return [DataFile(text, path.name, path.stat().st_size)]
    if path.is_dir():
        names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        kept = _keep([n for n in names if not _hidden(n)], data_format)
        if not kept:
            raise DataError(f"directory {text!r} holds no data files (.csv, .csv.gz, .parquet, "
                            ".jsonl; names starting with . or _ are skipped)")
        return [_local(str(path / n)) for n in kept]
    if _WILDCARDS.search(text):
        matched = sorted(m for m in globbing.glob(text, recursive=True) if Path(m).is_file())
        kept = _keep([m for m in matched if not _hidden(Path(m).name)], data_format)
        if not kept:
            raise DataError(f"no data files match {text!r}")
        return [_local(m) for m in kept]
    raise DataError(f"data file {text!r} does not exist")


def _local(path: str) -> DataFile:
    return DataFile(path, Path(path).name, os.stat(path).st_size)


def _labelled(files: list[DataFile]) -> list[DataFile]:
    """Each file labelled by its path below the files' common folder (a single file: its
    name), so messages name ``year=2024/part-0.parquet``, not just ``part-0.parquet``."""
    if len(files) <= 1:
        return files
    parents = [PurePosixPath(f.url.replace(os.sep, "/")).parent for f in files]
    common = parents[0]
    for parent in parents[1:]:
        while common != parent and common not in parent.parents:
            common = common.parent
    return [DataFile(f.url, str(PurePosixPath(f.url.replace(os.sep, "/")).relative_to(common)),
                     f.size, f.etag) for f in files]


# -- S3 ----------------------------------------------------------------------------------------


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://"):].partition("/")
    if not bucket:
        raise DataError(f"{url!r} names no bucket: write s3://bucket/path")
    return bucket, key


def _resolve_s3(url: str, data_format: str | None) -> list[DataFile]:
    bucket, key = _split(url)
    wildcard = _WILDCARDS.search(key)
    if wildcard is None and key and not key.endswith("/"):
        head = _s3_head(url, bucket, key)
        if head is not None:
            return [DataFile(url, PurePosixPath(key).name, int(head["ContentLength"]),
                             head.get("ETag"))]
        key += "/"  # not an object: perhaps a folder
    if wildcard is not None:
        prefix = key[: wildcard.start()]
        pattern = _glob_pattern(key)
        objects = [o for o in _s3_list(url, bucket, prefix) if pattern.fullmatch(o["Key"])]
        relative = {o["Key"]: PurePosixPath(o["Key"]).name for o in objects}
    else:
        prefix = key
        objects = _s3_list(url, bucket, prefix)
        relative = {o["Key"]: o["Key"][len(prefix):] for o in objects}
    by_key = {o["Key"]: o for o in objects if not o["Key"].endswith("/")
              and not _hidden(relative[o["Key"]])}
    kept = _keep(sorted(by_key), data_format)
    if not kept:
        what = "match" if wildcard is not None else "are under"
        raise DataError(f"no data files {what} {url!r}")
    return [DataFile(f"s3://{bucket}/{k}", PurePosixPath(k).name, int(by_key[k]["Size"]),
                     by_key[k].get("ETag")) for k in kept]


def _glob_pattern(key: str) -> re.Pattern[str]:
    """A glob over S3 keys as a regular expression: ``**`` crosses ``/``, ``*`` and ``?`` do
    not (as local globs with ``recursive=True``)."""
    out, i = [], 0
    while i < len(key):
        if key.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif key.startswith("**", i):
            out.append(".*")
            i += 2
        elif key[i] == "*":
            out.append("[^/]*")
            i += 1
        elif key[i] == "?":
            out.append("[^/]")
            i += 1
        elif key[i] == "[":
            end = key.find("]", i + 1)
            if end < 0:
                out.append(re.escape(key[i]))
                i += 1
            else:
                body = key[i + 1 : end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end + 1
        else:
            out.append(re.escape(key[i]))
            i += 1
    return re.compile("".join(out))


_clients: dict[int, Any] = {}
_clients_lock = threading.Lock()


def _client() -> Any:
    """One boto3 client per process (a forked child builds its own)."""
    pid = os.getpid()
    with _clients_lock:
        client = _clients.get(pid)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(connect_timeout=5, read_timeout=60,
                            retries={"mode": "standard", "total_max_attempts": 3})
            client = boto3.session.Session().client("s3", config=config)
            _clients.clear()
            _clients[pid] = client
        return client


def _s3_call(method: str, url: str, **kwargs: Any) -> Any:
    """A boto3 call whose failures are DataErrors naming the URL and what S3 said."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return getattr(_client(), method)(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "NoSuchBucket":
            raise DataError(f"{url}: bucket {kwargs.get('Bucket')!r} does not exist") from None
        if code in ("NoSuchKey", "404", "NotFound"):
            raise DataError(f"data file {url!r} does not exist") from None
        message = error.get("Message") or code
        raise DataError(f"{url}: S3 refused {method}: {code} {message}".strip()) from None
    except BotoCoreError as exc:
        raise DataError(f"{url}: cannot reach S3: {exc}") from None


def _s3_head(url: str, bucket: str, key: str) -> dict[str, Any] | None:
    """The object's metadata, or None when there is no such object (in a bucket that exists)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _client().head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 404 and str(exc.response.get("Error", {}).get("Code")) not in (
                "404", "NoSuchKey", "NotFound"):
            raise DataError(f"{url}: S3 refused head_object: {status} "
                            f"{exc.response.get('Error', {}).get('Message', '')}".strip()
                            ) from None
    except BotoCoreError as exc:
        raise DataError(f"{url}: cannot reach S3: {exc}") from None
    try:  # no such key: but a missing bucket should say so
        _client().head_bucket(Bucket=bucket)
    except ClientError:
        raise DataError(f"{url}: bucket {bucket!r} does not exist or cannot be read") from None
    except BotoCoreError as exc:
        raise DataError(f"{url}: cannot reach S3: {exc}") from None
    return None


def _s3_list(url: str, bucket: str, prefix: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = _s3_call("list_objects_v2", url, Bucket=bucket, Prefix=prefix, **extra)
        objects.extend(page.get("Contents", ()))
        if not page.get("IsTruncated"):
            return objects
        token = page.get("NextContinuationToken")
