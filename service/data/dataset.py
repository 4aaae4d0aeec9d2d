"""Training data from a file: read, holdout split, schema, design, whole or in chunks.

:func:`load` reads a file whole: polars reads it with every column's type fixed, the seeded
per-row holdout rule marks the held-out rows, the schema is fitted on the training rows only,
and the training and holdout designs are written straight from the frame's columns (a boolean
``compress`` per column: no copy of the frame, no index gather). :class:`Stream` does the same
with bounded memory for files larger than memory: a statistics pass for the schema, then the
file again in chunks for each epoch. The same rows are held out, and the same schema fitted,
whichever way a file is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..engine.schema import Schema
from ..errors import DataError
from .encode import Design, encode, encode_parts, encode_target
from .holdout import holdout_mask
from .inference import ColumnStats, EncodingOptions, plan
from .source import Fingerprint, Source, open_source

__all__ = ["CHUNK_ROWS", "STREAM_THRESHOLD_BYTES", "Chunk", "Loaded", "Stream", "load",
           "should_stream"]

# Files up to this size are read whole: polars holds the columns (8 bytes a number, text as
# Arrow strings) and the design takes as much again, so 512 MiB of CSV peaks near 1 GB. Larger
# files stream in chunks with bounded memory, re-read on every pass.
STREAM_THRESHOLD_BYTES = 512 * 1024 * 1024
CHUNK_ROWS = 65_536


def should_stream(path: str | os.PathLike[str]) -> bool:
    """True when the file is larger than :data:`STREAM_THRESHOLD_BYTES` and should stream."""
    try:
        return os.stat(path).st_size > STREAM_THRESHOLD_BYTES
    except FileNotFoundError:
        raise DataError(f"data file {str(path)!r} does not exist") from None


def _holdout(start_row: int, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    mask = holdout_mask(start_row, n_rows, fraction, seed)
    if start_row == 0 and n_rows >= 3 and not mask.any():
        mask[-1] = True  # tiny files: hold out at least one row, deterministically
    return mask


@dataclass
class Loaded:
    """A file read whole: the fitted schema, the training and holdout designs, provenance."""

    schema: Schema
    train: Design
    holdout: Design
    fingerprint: Fingerprint
    source: Source
    holdout_frame: pl.DataFrame  # the holdout rows as read (to score another model on them)
    holdout_rows: np.ndarray  # their file row numbers
    notices: list[str] = field(default_factory=list)  # about the file (names it changed)
    decisions: list[str] = field(default_factory=list)  # what was inferred, in words


def load(path: str | os.PathLike[str], target: str, options: EncodingOptions, *,
         fraction: float, seed: int, data_format: str | None = None,
         target_transform: str = "none") -> Loaded:
    """Read, split and encode a file whole (see the module docstring)."""
    source = open_source(path, data_format)
    columns = plan(source, target, options)
    frame = source.read(columns.types, columns.read)
    # Hashed after the read, not during it: polars parses on every core, while what follows
    # (statistics, encoding, the fit) leaves one free (measured: read 0.52 s alone, 0.82-1.0 s
    # beside the hash; the hash itself 0.22 s for 260 MB).
    hasher = source.hash_in_background()
    n = frame.height
    if n < 3:
        raise source.ragged_line() or DataError(
            f"need at least 3 data rows to train and evaluate, got {n}")
    mask = _holdout(0, n, fraction, seed)
    train_rows, holdout_rows = np.flatnonzero(~mask), np.flatnonzero(mask)
    if len(train_rows) < 2:
        raise DataError(f"need at least 3 data rows to train and evaluate, got {n}")
    stats = ColumnStats(source, columns, options)
    stats.add(frame, 0, ~mask)
    schema, decisions = stats.schema()
    holdout_frame = frame.filter(pl.Series(mask))
    train, holdout = encode_parts(schema, frame, source, [~mask, mask], target=target,
                                  target_transform=target_transform)
    del frame
    _check_target(train.target, target, len(train_rows))
    fingerprint = Fingerprint(file=source.file, rows=n, columns=[*schema.names, target],
                              sha256=hasher.result(), format=source.format)
    return Loaded(schema=schema, train=train, holdout=holdout, fingerprint=fingerprint,
                  source=source, holdout_frame=holdout_frame, holdout_rows=holdout_rows,
                  notices=list(source.notices), decisions=decisions)


def _check_target(y: np.ndarray | None, target: str, n_train: int) -> None:
    assert y is not None
    if n_train and float(y[:n_train].min()) == float(y[:n_train].max()):
        raise DataError(f"target column {target!r} is constant ({float(y[0])!r}): "
                        "there is nothing to learn")


@dataclass
class Chunk:
    """Consecutive rows of a streamed file: their design, and which are held out."""

    design: Design
    start_row: int
    holdout: np.ndarray
    frame: pl.DataFrame  # the rows as read (to score another model on them)


class Stream:
    """A file read in chunks, as often as needed, with its schema fitted by a first pass."""

    def __init__(self, path: str | os.PathLike[str], target: str, options: EncodingOptions,
                 *, fraction: float, seed: int, data_format: str | None = None,
                 target_transform: str = "none", chunk_rows: int = CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.source: Source = open_source(path, data_format)
        self.target = target
        self.plan = plan(self.source, target, options)
        self.options = options
        self.fraction, self.seed = fraction, seed
        self.target_transform = target_transform
        self.chunk_rows = chunk_rows
        self.schema: Schema | None = None
        self.notices: list[str] = list(self.source.notices)
        self.decisions: list[str] = []
        self.fingerprint: Fingerprint | None = None

    def fit_schema(self) -> Schema:
        """The statistics pass: the schema from the training rows of the whole file."""
        stats = ColumnStats(self.source, self.plan, self.options)
        hasher = self.source.hash_in_background()
        low, high = np.inf, -np.inf
        for start, frame in self._frames():
            train = ~_holdout(start, frame.height, self.fraction, self.seed)
            stats.add(frame, start, train)
            y = encode_target(frame[self.target], self.source, start)[train]
            if len(y):
                low, high = min(low, float(y.min())), max(high, float(y.max()))
        if stats.rows < 3:
            raise self.source.ragged_line() or DataError(
                f"need at least 3 data rows to train and evaluate, got {stats.rows}")
        if low == high:
            raise DataError(f"target column {self.target!r} is constant ({low!r}): "
                            "there is nothing to learn")
        self.schema, self.decisions = stats.schema()
        self.fingerprint = Fingerprint(file=self.source.file, rows=stats.rows,
                                       columns=[*self.schema.names, self.target],
                                       sha256=hasher.result(), format=self.source.format)
        return self.schema

    def _frames(self) -> Iterator[tuple[int, pl.DataFrame]]:
        start = 0
        for frame in self.source.batches(self.plan.types, self.plan.read):
            if frame.height:
                yield start, frame
                start += frame.height

    def __iter__(self) -> Iterator[Chunk]:
        if self.schema is None:
            self.fit_schema()
        assert self.schema is not None
        for start, frame in self._frames():
            design = encode(self.schema, frame, self.source, start_row=start,
                            target=self.target, target_transform=self.target_transform)
            yield Chunk(design, start, _holdout(start, frame.height, self.fraction, self.seed),
                        frame)
