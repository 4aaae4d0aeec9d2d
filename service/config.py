"""Settings: the one place that reads ``SGDSERVE_*`` environment variables.

Every setting has a documented default (README, "Configuration"). Tests and callers pass
overrides as keyword arguments to :meth:`Settings.from_env` or to ``create_app``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Configuration of sgdserve; field ``foo_bar`` is read from ``SGDSERVE_FOO_BAR``."""

    model_dir: Path = Path("models")
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
        }
        for name, ok in positive.items():
            if not ok:
                raise ValueError(
                    f"SGDSERVE_{name.upper()} is out of range, got {getattr(self, name)!r}"
                )
        if self.worker_class not in ("sync", "gthread"):
            raise ValueError(
                f"SGDSERVE_WORKER_CLASS must be 'sync' or 'gthread', got {self.worker_class!r}"
            )

    @property
    def store_path(self) -> Path:
        """Directory of the configured model inside the model dir."""
        return Path(self.model_dir) / self.model_name

    def with_overrides(self, **overrides: Any) -> Settings:
        new = dataclasses.replace(self, **overrides)
        new.validate()
        return new


def _convert(name: str, annotation: Any, raw: str) -> Any:
    kind = str(annotation)
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
