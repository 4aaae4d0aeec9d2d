"""One file of a dataset as a partition: what a cluster engine runs where the file is read.

A partition is read once (:func:`read`), summarised for the schema (:func:`column_stats`),
encoded by the fitted schema (:func:`encode`) and scored at the end (:func:`score`). Its rows
are numbered across the dataset from ``row_offset``, so the holdout rule, the schema and the
design are exactly those of a local run on the same files (``service.data.dataset.load``).
Every function here is deterministic in its arguments: a task rerun after a lost worker
gives the same answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..engine import LinearModel, RegressionSums
from ..engine.schema import Schema
from .dataset import _holdout
from .encode import Design, encode_parts, encode_target
from .encode import encode as encode_design
from .files import DataFile
from .holdout import HoldoutSample
from .inference import ColumnPlan, ColumnStats, EncodingOptions
from .source import Source, open_source

__all__ = ["Partition", "RawPartition", "Scores", "column_stats", "encode", "read", "score"]


@dataclass
class RawPartition:
    """A file as read: its source (for errors), its planned columns, its digest."""

    index: int
    source: Source
    frame: pl.DataFrame
    digest: str

    @property
    def rows(self) -> int:
        return self.frame.height


def read(file: DataFile, index: int, plan: ColumnPlan, *, named: bool, first: str,
         data_format: str | None = None) -> RawPartition:
    """Read file ``index`` of a dataset with the plan's column types (``first`` names the
    dataset's first file, for a column this one lacks)."""
    source = open_source(file, data_format)
    source.named = named
    with source.naming():
        if index > 0:
            source.check_columns(plan.read, first)
        frame = source.read(plan.types, plan.read)
    return RawPartition(index, source, frame, file.digest())


def _numbered(raw: RawPartition, row_offset: int) -> Source:
    return dataclasses.replace(raw.source, row_offset=row_offset)  # the input is not changed


def column_stats(raw: RawPartition, row_offset: int, plan: ColumnPlan,
                 options: EncodingOptions, *, fraction: float, seed: int
                 ) -> tuple[ColumnStats, float, float]:
    """The partition's column statistics over its training rows (merged in file order by the
    driver), and its training target's range (a constant target is refused)."""
    source = _numbered(raw, row_offset)
    stats = ColumnStats(source, plan, options)
    train = ~_holdout(row_offset, raw.rows, fraction, seed)
    with source.naming():
        stats.add(raw.frame, row_offset, train, source=source)
        y = encode_target(raw.frame[plan.target], source, row_offset)[train]
    low, high = (float(y.min()), float(y.max())) if len(y) else (np.inf, -np.inf)
    stats.source = raw.source  # the frame's rows stay on the worker
    return stats, low, high


@dataclass
class Partition:
    """A partition encoded by the schema: its training rows and its held-out ones, in file
    order, each a Fortran-ordered design as ``load`` writes them (and as Dask keeps them when
    it moves a partition between workers: a C-ordered copy would change the products'
    rounding), and the held-out rows as read."""

    index: int
    row_offset: int
    train: Design
    holdout: Design
    holdout_rows: np.ndarray  # dataset row numbers
    holdout_frame: pl.DataFrame
    source: Source

    @property
    def rows(self) -> int:
        return len(self.train) + len(self.holdout)


def encode(raw: RawPartition, row_offset: int, schema: Schema, target: str, *, fraction: float,
           seed: int, target_transform: str = "none") -> Partition:
    """The partition's design by the fitted schema (training rows first, in file order)."""
    source = _numbered(raw, row_offset)
    mask = _holdout(row_offset, raw.rows, fraction, seed)
    holdout_rows = np.flatnonzero(mask)
    with source.naming():
        train, holdout = encode_parts(schema, raw.frame, source, [~mask, mask],
                                      start_row=row_offset, target=target,
                                      target_transform=target_transform)
    return Partition(raw.index, row_offset, train, holdout, row_offset + holdout_rows,
                     raw.frame.filter(pl.Series(mask)), source)


@dataclass
class Scores:
    """A partition's evaluation: metric sums (they merge), and its holdout sample."""

    train: RegressionSums
    holdout: RegressionSums
    active: RegressionSums | None
    sample: HoldoutSample


def score(part: Partition, candidate: LinearModel, active: LinearModel | None,
          seed: int) -> Scores:
    """The candidate on the training and held-out rows, and ``active`` (when it can be
    compared) on the same held-out rows, read again by its own schema."""
    train, hold = part.train, part.holdout
    scores = Scores(RegressionSums(), RegressionSums(), None, HoldoutSample(seed))
    scores.train.add(train.target, candidate.predict(train.X, train.codes))
    if len(hold):
        predicted = candidate.predict(hold.X, hold.codes)
        scores.holdout.add(hold.target, predicted)
        scores.sample.add(part.holdout_rows, hold.target, predicted)
    if active is not None:
        scores.active = RegressionSums()
        if len(hold):
            with part.source.naming():
                theirs = encode_design(active.schema, part.holdout_frame, part.source)
            scores.active.add(hold.target, active.predict(theirs.X, theirs.codes))
    return scores
