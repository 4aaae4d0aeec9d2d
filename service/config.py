"""Settings: the one place that reads ``SGDSERVE_*`` environment variables.

Every setting has a documented default (README, "Configuration"). Tests and callers pass
overrides as keyword arguments to :meth:`Settings.from_env` or to ``create_app``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .util import parse_duration


@dataclass(frozen=True)
class Settings:
    """Configuration of sgdserve; field ``foo_bar`` is read from ``SGDSERVE_FOO_BAR``."""

    model_dir: Path | str = Path("models")  # a directory, or an s3://bucket/prefix URL (a str)
    model_name: str = "house-price"
    reload_interval: float = 1.0
    api_token: str | None = field(default=None, repr=False)
    max_batch_rows: int = 10_000
    max_body_bytes: int = 16 * 1024 * 1024
    max_upload_bytes: int = 1024 * 1024 * 1024
    promote_tolerance: float = 0.01
    keep_versions: int = 20
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    worker_class: str = "sync"
    threads: int = 1
    timeout: int = 30
    log_level: str = "info"
    metrics_dir: Path | None = None
    malloc_mmap_threshold: int = 4 * 1024 * 1024  # 0: leave glibc's malloc as it is
    # HMAC-SHA256 key every new version is signed with; unsigned or tampered versions are then
    # refused by every reader. The old keys are still accepted when verifying (key rotation).
    signing_key: str | None = field(default=None, repr=False)
    signing_old_keys: str | None = field(default=None, repr=False)  # comma-separated
    # The prediction and feedback logs (local disk per replica) and the monitoring report.
    log_dir: Path | None = None  # None: logs/ beside a local model dir, ./logs for s3://
    log_max_bytes: int = 1024 * 1024 * 1024  # every log file together
    prediction_log: bool = True
    # Key of the MAC inside prediction ids; None: derived from api_token (then every worker and
    # replica with the same token recognises every id).
    id_key: str | None = field(default=None, repr=False)
    monitor_window: float = 7 * 86400.0  # seconds of predictions the report covers
    monitor_level: float = 0.9  # the interval level whose coverage the report checks
    monitor_refresh: float = 60.0  # GET /monitoring joins again once the report is older

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", store_location(self.model_dir))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Defaults, then ``SGDSERVE_*`` variables from ``environ``, then ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get("SGDSERVE_" + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work, naming the variable and the value."""
        positive = {
            "reload_interval": self.reload_interval >= 0,
            "max_batch_rows": self.max_batch_rows > 0,
            "max_body_bytes": self.max_body_bytes > 0,
            "max_upload_bytes": self.max_upload_bytes > 0,
            "promote_tolerance": self.promote_tolerance >= 0,
            "keep_versions": self.keep_versions >= 2,
            "port": 0 <= self.port <= 65535,
            "workers": self.workers >= 1,
            "threads": self.threads >= 1,
            "timeout": self.timeout >= 0,
            "malloc_mmap_threshold": 0 <= self.malloc_mmap_threshold <= 32 * 1024 * 1024,
            "log_max_bytes": self.log_max_bytes >= 1024 * 1024,
            "monitor_window": self.monitor_window > 0,
            "monitor_level": 0 < self.monitor_level < 1,
            "monitor_refresh": self.monitor_refresh >= 0,
        }
        for name, ok in positive.items():
            if not ok:
                raise ValueError(
                    f"SGDSERVE_{name.upper()} is out of range, got {getattr(self, name)!r}"
                )
        for key in (self.signing_key, *self.old_keys()):
            if key is not None and len(key) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"SGDSERVE_SIGNING_KEY and SGDSERVE_SIGNING_OLD_KEYS must be at least "
                    f"{MIN_KEY_LENGTH} characters each (e.g. `python3 -c 'import secrets; "
                    f"print(secrets.token_urlsafe(32))'`), got one of {len(key)}"
                )
        if self.old_keys() and not self.signing_key:
            raise ValueError("SGDSERVE_SIGNING_OLD_KEYS is set but SGDSERVE_SIGNING_KEY is not: "
                             "old keys are only accepted beside a current one")
        if self.worker_class not in ("sync", "gthread"):
            raise ValueError(
                f"SGDSERVE_WORKER_CLASS must be 'sync' or 'gthread', got {self.worker_class!r}"
            )

    @property
    def is_object_store(self) -> bool:
        """Whether the model store is on S3-compatible object storage (an s3:// URL)."""
        return isinstance(self.model_dir, str)

    @property
    def store_path(self) -> Path:
        """Directory of the configured model inside the model dir (a local store only)."""
        if isinstance(self.model_dir, str):
            raise ValueError(f"the model store is {self.model_dir}, not a directory")
        return Path(self.model_dir) / self.model_name

    @property
    def logs_path(self) -> Path:
        """Where the prediction and feedback logs go: ``log_dir``, else ``logs`` beside a local
        model directory (never inside it, nor inside a version), else ``./logs``."""
        if self.log_dir is not None:
            return Path(self.log_dir)
        if isinstance(self.model_dir, str):  # s3://: the logs stay on this replica's disk
            return Path("logs")
        return Path(self.model_dir).parent / "logs"

    def old_keys(self) -> tuple[str, ...]:
        """The signing keys still accepted when verifying, in the order given."""
        raw = self.signing_old_keys or ""
        return tuple(k.strip() for k in raw.split(",") if k.strip())

    def with_overrides(self, **overrides: Any) -> Settings:
        new = dataclasses.replace(self, **overrides)
        new.validate()
        return new


MIN_KEY_LENGTH = 16
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# Bucket names as S3 allows them (3-63 characters: lower case, digits, '.', '-').
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def store_location(value: str | os.PathLike[str]) -> Path | str:
    """A model dir as the store takes it: a Path, or an ``s3://bucket/prefix`` URL kept as a str
    (``Path("s3://b/p")`` would fold the double slash and lose the scheme)."""
    if not isinstance(value, str):
        return Path(value)
    match = _SCHEME_RE.match(value)
    if match is None:
        return Path(value)
    if match.group(1) != "s3":
        raise ValueError(
            f"SGDSERVE_MODEL_DIR must be a directory or an s3://bucket/prefix URL, got {value!r}"
        )
    bucket, _, prefix = value[len("s3://"):].partition("/")
    if not _BUCKET_RE.fullmatch(bucket):
        raise ValueError(
            f"SGDSERVE_MODEL_DIR {value!r}: {bucket!r} is not an S3 bucket name "
            "(3-63 characters: lower-case letters, digits, '.' and '-')"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"SGDSERVE_MODEL_DIR {value!r}: the prefix has an empty, '.' or '..' part")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _convert(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
    if name == "model_dir":
        return store_location(raw)  # its own messages
    if kind == "bool":
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise ValueError(f"SGDSERVE_{name.upper()} must be on or off (1/0, true/false, yes/no), "
                         f"got {raw!r}")
    if name == "monitor_window":
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise ValueError(f"SGDSERVE_{name.upper()}: {exc}") from None
    try:
        if "Path" in kind:
            return Path(raw)
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"SGDSERVE_{name.upper()} must be a number, got {raw!r}") from None
    return raw
