"""Training data from a file or a dataset of files: read, holdout split, schema, design, whole
or in chunks.

:func:`load` reads the data whole: polars reads it with every column's type fixed, the seeded
per-row holdout rule marks the held-out rows, the schema is fitted on the training rows only,
and the training and holdout designs are written straight from the frame's columns (a boolean
``compress`` per column: no copy of the frame, no index gather). :class:`Stream` does the same
with bounded memory for data larger than memory: a statistics pass for the schema, then the
data again in chunks for each epoch. The same rows are held out, and the same schema fitted,
whichever way the data is read, and whether it is one file or the same rows in several
(:class:`~service.data.source.Sources`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..engine.schema import Schema
from ..errors import DataError
from .encode import Design, encode, encode_parts, encode_target
from .files import resolve
from .holdout import holdout_mask
from .inference import ColumnStats, EncodingOptions, plan
from .source import Fingerprint, Source, Sources, open_sources

__all__ = ["CHUNK_ROWS", "STREAM_THRESHOLD_BYTES", "Chunk", "Loaded", "Stream", "load",
           "should_stream"]

# Files up to this size are read whole: polars holds the columns (8 bytes a number, text as
# Arrow strings) and the design takes as much again, so 512 MiB of CSV peaks near 1 GB. Larger
# files stream in chunks with bounded memory, re-read on every pass.
STREAM_THRESHOLD_BYTES = 512 * 1024 * 1024
CHUNK_ROWS = 65_536


DataSpec = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Sources


def should_stream(path: DataSpec) -> bool:
    """True when the data (all its files) is larger than :data:`STREAM_THRESHOLD_BYTES` and
    should stream."""
    if isinstance(path, Sources):
        return path.size > STREAM_THRESHOLD_BYTES
    return sum(f.size for f in resolve(path)) > STREAM_THRESHOLD_BYTES


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
    source: Source | Sources
    # The holdout rows as read, to score another model on them (None if load was told not to).
    holdout_frame: pl.DataFrame | None
    holdout_rows: np.ndarray  # their file row numbers
    notices: list[str] = field(default_factory=list)  # about the file (names it changed)
    decisions: list[str] = field(default_factory=list)  # what was inferred, in words


def load(path: DataSpec, target: str, options: EncodingOptions, *,
         fraction: float, seed: int, data_format: str | None = None,
         target_transform: str = "none", holdout_frame: bool = True) -> Loaded:
    """Read, split and encode a file or dataset whole (see the module docstring).

    ``holdout_frame=False`` keeps no copy of the holdout rows as read (a training run with no
    model to compare against needs none: a filter and 10-30 MB of the mixed benchmark's peak).
    """
    sources = open_sources(path, data_format)
    columns = plan(sources, target, options)
    stats = ColumnStats(sources, columns, options)
    frames, masks, start = [], [], 0
    for i in range(len(sources)):
        part = sources.part(i)
        with part.naming():
            sources.check(part, columns.read)
            frame = part.read(columns.types, columns.read)
            mask = _holdout(start, frame.height, fraction, seed)
            stats.add(frame, start, ~mask, source=part)
        sources.read_rows(i, frame.height)
        frames.append(frame)
        masks.append(mask)
        start += frame.height
    # Hashed after the read, not during it: polars parses on every core, while what follows
    # (statistics, encoding, the fit) leaves one free (measured: read 0.52 s alone, 0.82-1.0 s
    # beside the hash; the hash itself 0.22 s for 260 MB).
    hasher = sources.hash_in_background()
    n = start
    if n < 3:
        raise sources.ragged_line() or DataError(
            f"need at least 3 data rows to train and evaluate, got {n}")
    n_train = int(sum(int((~m).sum()) for m in masks))
    if n_train < 2:
        raise DataError(f"need at least 3 data rows to train and evaluate, got {n}")
    if n_train == n:
        raise DataError("the data is too small to hold out rows for evaluation")
    schema, decisions = stats.schema()
    train, holdout = _encode_parts(schema, sources, frames, masks, target, target_transform,
                                   n_train)
    offsets = np.cumsum([0] + [f.height for f in frames[:-1]])
    holdout_rows = np.concatenate([o + np.flatnonzero(m) for o, m in zip(offsets, masks,
                                                                         strict=True)])
    held = pl.concat([f.filter(pl.Series(m)) for f, m in zip(frames, masks, strict=True)]) \
        if holdout_frame else None
    del frames
    _check_target(train.target, target, n_train)
    fingerprint = Fingerprint(file=sources.file, rows=n, columns=[*schema.names, target],
                              sha256=hasher.result(), format=sources.format,
                              files=len(sources))
    source = sources.first if len(sources) == 1 else sources
    return Loaded(schema=schema, train=train, holdout=holdout, fingerprint=fingerprint,
                  source=source, holdout_frame=held, holdout_rows=holdout_rows,
                  notices=list(sources.notices), decisions=decisions)


def _encode_parts(schema: Schema, sources: Sources, frames: list[pl.DataFrame],
                  masks: list[np.ndarray], target: str, transform: str, n_train: int
                  ) -> tuple[Design, Design]:
    """Every file's training rows as one design and its held-out rows as another, in file
    order; one file is written straight from its frame (no copy)."""
    if len(frames) == 1:
        with sources.first.naming():
            train, holdout = encode_parts(schema, frames[0], sources.first,
                                          [~masks[0], masks[0]], target=target,
                                          target_transform=transform)
        return train, holdout
    n = sum(f.height for f in frames)
    out: list[Design] | None = None
    at = [0, 0]
    for i, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        part = sources.part(i)
        with part.naming():
            parts = encode_parts(schema, frame, part, [~mask, mask], start_row=part.row_offset,
                                 target=target, target_transform=transform)
        if out is None:
            out = [_empty_like(parts[0], n_train), _empty_like(parts[1], n - n_train)]
        for k, design in enumerate(parts):
            _put(out[k], design, at[k])
            at[k] += len(design)
    assert out is not None
    return out[0], out[1]


def _empty_like(design: Design, n: int) -> Design:
    X = np.empty((n, design.X.shape[1]), order="F")
    codes = None if design.codes is None else np.empty((n, design.codes.shape[1]), np.int32)
    raw = np.empty(n)
    y = raw if design.y is design.target else np.empty(n)  # one array unless transformed
    return Design(X, codes, y, raw)


def _put(out: Design, rows: Design, at: int) -> None:
    end = at + len(rows)
    out.X[at:end] = rows.X
    if out.codes is not None:
        out.codes[at:end] = rows.codes
    assert out.target is not None and rows.target is not None
    out.target[at:end] = rows.target
    if out.y is not out.target:
        out.y[at:end] = rows.y  # type: ignore[index]


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

    def __init__(self, path: DataSpec, target: str, options: EncodingOptions,
                 *, fraction: float, seed: int, data_format: str | None = None,
                 target_transform: str = "none", chunk_rows: int = CHUNK_ROWS) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.sources = open_sources(path, data_format)
        self.source: Source | Sources = \
            self.sources.first if len(self.sources) == 1 else self.sources
        self.target = target
        self.plan = plan(self.sources, target, options)
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
        stats = ColumnStats(self.sources, self.plan, self.options)
        hasher = self.sources.hash_in_background()
        low, high = np.inf, -np.inf
        for start, frame, part in self._frames():
            train = ~_holdout(start, frame.height, self.fraction, self.seed)
            with part.naming():
                stats.add(frame, start, train, source=part)
                y = encode_target(frame[self.target], part, start)[train]
            if len(y):
                low, high = min(low, float(y.min())), max(high, float(y.max()))
        if stats.rows < 3:
            raise self.sources.ragged_line() or DataError(
                f"need at least 3 data rows to train and evaluate, got {stats.rows}")
        if low == high:
            raise DataError(f"target column {self.target!r} is constant ({low!r}): "
                            "there is nothing to learn")
        self.schema, self.decisions = stats.schema()
        self.fingerprint = Fingerprint(file=self.sources.file, rows=stats.rows,
                                       columns=[*self.schema.names, self.target],
                                       sha256=hasher.result(), format=self.sources.format,
                                       files=len(self.sources))
        return self.schema

    def _frames(self) -> Iterator[tuple[int, pl.DataFrame, Source]]:
        """(first row, chunk, its file) over every file in order, rows numbered across files."""
        start = 0
        for i in range(len(self.sources)):
            part = self.sources.part(i, row_offset=start)
            with part.naming():
                self.sources.check(part, self.plan.read)
                batches = part.batches(self.plan.types, self.plan.read)
            while True:
                with part.naming():  # a read error names the file (not the caller's errors)
                    frame = next(batches, None)
                if frame is None:
                    break
                if frame.height:
                    yield start, frame, part
                    start += frame.height
            self.sources.read_rows(i, start - part.row_offset)

    def __iter__(self) -> Iterator[Chunk]:
        if self.schema is None:
            self.fit_schema()
        assert self.schema is not None
        for start, frame, part in self._frames():
            with part.naming():
                design = encode(self.schema, frame, part, start_row=start,
                                target=self.target, target_transform=self.target_transform)
            yield Chunk(design, start, _holdout(start, frame.height, self.fraction, self.seed),
                        frame)
