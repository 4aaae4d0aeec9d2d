"""Each column's kind, inferred once from the training data, and the statistics it is encoded by.

:func:`plan` decides from a file's header and first rows which columns to read and as what
polars type; :class:`ColumnStats` then takes the data in one or more chunks (the training rows
marked) and :meth:`ColumnStats.schema` gives the model's :class:`~service.engine.schema.Schema`,
with a notice for everything a user should know: columns dropped and why, levels pooled,
columns imputed, names changed.

The rules (docs/data.md has them with examples):

- numbers are ``numeric``; text is ``categorical``, unless every value is a yes/no, true/false
  or y/n word (``boolean``), or nearly every value is a number (``numeric``: the tokens ``NA``,
  ``N/A``, ``NaN``, ``null`` read as empty, and any other text is an error naming its line, a
  typo more likely than a category);
- a row index is dropped: the unnamed first column that R's write.csv and pandas' to_csv write,
  a column named ``rownames`` or ``Unnamed: 0`` holding distinct integers, or one whose values
  are 0..n-1 or 1..n in file order (kept as a feature, a row index of a sorted file leaks the
  target);
- text with a distinct value in every row (an address, an id) is dropped, not one-hot encoded;
- a categorical level is kept when it has at least ``min_frequency`` training rows (at most
  ``max_levels`` per column, the most frequent); the rest are pooled into one "other" level,
  which also takes levels never seen in training; an empty cell is a level of its own, and the
  text "NA" in a text column is a level, not a missing value;
- ``--categorical``, ``--numeric`` and ``--drop`` override the inferred kind.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ..engine.schema import (
    BOOLEAN,
    CATEGORICAL,
    DEFAULT_MAX_LEVELS,
    DEFAULT_MIN_FREQUENCY,
    FALSE_WORDS,
    NUMERIC,
    TRUE_WORDS,
    Feature,
    Schema,
)
from ..errors import DataError
from .source import Source, Sources, is_number_type

__all__ = [
    "DEFAULT_MAX_LEVELS",
    "DEFAULT_MIN_FREQUENCY",
    "NA_TOKENS",
    "ColumnPlan",
    "ColumnStats",
    "EncodingOptions",
    "plan",
]

NA_TOKENS = ("NA", "N/A", "NaN", "nan", "null", "NULL", "None")
_BOOL_WORDS = frozenset(TRUE_WORDS + FALSE_WORDS)
_INDEX_NAMES = ("rownames", "unnamed: 0")
_DISTINCT_MIN_ROWS = 20  # fewer rows than this: too few to call a text column an id
# A text column whose non-numbers are one value, or at most this share of its values, is
# numbers with typos.
_TYPO_SHARE = 0.05


@dataclass(frozen=True)
class EncodingOptions:
    """How to read and encode the columns; the defaults infer everything."""

    features: tuple[str, ...] | None = None  # only these columns (default: all but the target)
    categorical: frozenset[str] = frozenset()
    numeric: frozenset[str] = frozenset()
    drop: frozenset[str] = frozenset()
    min_frequency: int = DEFAULT_MIN_FREQUENCY
    max_levels: int = DEFAULT_MAX_LEVELS

    def __post_init__(self) -> None:
        both = self.categorical & self.numeric
        if both:
            raise DataError(f"column {sorted(both)[0]!r} is named both categorical and numeric")
        if self.min_frequency < 1:
            raise DataError(f"min_frequency must be >= 1, got {self.min_frequency}")
        if self.max_levels < 1:
            raise DataError(f"max_levels must be >= 1, got {self.max_levels}")


@dataclass
class ColumnPlan:
    """What to read: the target and feature columns, each with the polars type to read it as."""

    target: str
    columns: list[str]  # candidate features, file order
    types: dict[str, pl.DataType]  # for the target and every candidate
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (column, why): not read

    @property
    def read(self) -> list[str]:
        return [*self.columns, self.target]


def plan(source: Source | Sources, target: str, options: EncodingOptions) -> ColumnPlan:
    """The columns to read and their types, from the header and the first rows."""
    header = source.columns
    if target not in header:
        raise DataError(f"target column {target!r} is missing; the header has: "
                        f"{_names(header)}", column=target, line=1)
    for name in [*(options.features or ()), *options.categorical, *options.numeric,
                 *options.drop]:
        if name not in header:
            raise DataError(f"feature column {name!r} is missing; the header has: "
                            f"{_names(header)}", column=name, line=1)
    if target in options.categorical:
        raise DataError(f"the target {target!r} cannot be categorical: it must be a number")
    if options.features is not None and not options.features:
        raise DataError("the list of features is empty; name at least one column")
    wanted = set(options.features) if options.features is not None else None
    columns, dropped = [], []
    for name in header:
        if name == target:
            continue
        if name in options.drop:
            dropped.append((name, "dropped on request (--drop)"))
        elif wanted is not None and name not in wanted:
            dropped.append((name, "not among the features asked for"))
        else:
            columns.append(name)
    if options.features is not None:  # in the order asked for
        columns = [name for name in options.features if name in columns]
    if not columns:
        raise DataError("no feature columns are left to train on")
    types = {name: _read_type(source.dtypes[name], name in options.categorical)
             for name in [*columns, target]}
    return ColumnPlan(target=target, columns=columns, types=types, dropped=dropped)


def _read_type(dtype: pl.DataType, categorical: bool) -> pl.DataType:
    if categorical:
        return pl.String
    if is_number_type(dtype):
        return pl.Float64
    if dtype == pl.Boolean:
        return pl.Boolean
    return pl.String  # text, an all-empty sample (Null), dates: decided from the values


class _Numbers:
    """Training statistics of a column read as numbers (or text that reads as numbers)."""

    def __init__(self) -> None:
        self.count = 0  # non-empty training rows
        self.total = 0.0
        self.missing = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.index = True  # every value so far is its row number (0- or 1-based, all rows)
        self.index_base: float | None = None
        self.distinct: set[float] = set()  # for a column named like an index
        self.distinct_ok = True

    def add(self, values: np.ndarray, train: np.ndarray, start_row: int,
            track_distinct: bool) -> None:
        """Take one chunk's values (NaN for missing) as an array."""
        present = ~np.isnan(values)
        kept = values[train & present]
        index = None
        if self.index and len(values):
            rows = np.arange(start_row, start_row + len(values), dtype=np.float64)
            base = float(values[0]) - start_row
            index = base if np.array_equal(values, rows + base) else None
        self.take(len(kept), float(kept.sum()), int((train & ~present).sum()),
                   float(kept.min()) if len(kept) else None,
                   float(kept.max()) if len(kept) else None, len(values), index)
        if track_distinct:
            self.add_distinct(values)

    def take(self, count: int, total: float, missing: int, minimum: float | None,
             maximum: float | None, rows: int, index: float | None) -> None:
        """Take one chunk's aggregates: training rows with a value, their sum, training rows
        without one, the range, the chunk's rows, and ``index``: the base b when every value
        of the chunk is its row number + b, else None."""
        self.count += count
        self.total += total
        self.missing += missing
        if minimum is not None and maximum is not None:
            self.minimum = min(self.minimum, minimum)
            self.maximum = max(self.maximum, maximum)
        if self.index and rows:
            if self.index_base is None:
                self.index_base = index
            self.index = (index is not None and index == self.index_base
                          and self.index_base in (0.0, 1.0))

    def add_distinct(self, values: np.ndarray) -> None:
        """Track whether the values so far are distinct integers (a column named rownames)."""
        if self.distinct_ok:
            whole = values[~np.isnan(values)]
            new = set(whole.tolist())
            if not np.all(whole == np.round(whole)) or len(new) < len(whole) or \
                    not self.distinct.isdisjoint(new):
                self.distinct_ok = False
            else:
                self.distinct |= new

    def merge(self, other: _Numbers) -> None:
        """Take the statistics of the rows right after these (consecutive partitions)."""
        self.count += other.count
        self.total += other.total
        self.missing += other.missing
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)
        if self.index_base is None:
            self.index, self.index_base = other.index, other.index_base
        elif other.index_base is not None:
            self.index = self.index and other.index and other.index_base == self.index_base
        self.distinct_ok = self.distinct_ok and other.distinct_ok and \
            self.distinct.isdisjoint(other.distinct)
        if self.distinct_ok:
            self.distinct |= other.distinct

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class _Text:
    """Training statistics of a column read as text."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()  # training rows per value ("" for empty)
        self.rows = 0  # training rows
        self.missing = 0  # empty training rows
        self.not_numbers = 0  # non-empty values (any row) that are not numbers or NA tokens
        self.numbers = 0  # values that are numbers
        self.not_words = 0  # non-empty values that are not yes/no words
        self.as_numbers = _Numbers()  # in case every value reads as a number (or NA)

    def add(self, series: pl.Series, train: np.ndarray, start_row: int) -> None:
        """Take one chunk. The checks run on the chunk's distinct values weighted by their
        counts (a category column has far fewer values than rows); only a column that may
        still be numbers is converted row by row."""
        # One hash pass by value, counting all rows and training rows: 1.5-4x faster than
        # counting the training rows and then all rows, and on the mixed benchmark's five
        # columns 0.11 s and 75 MB of polars' memory against 0.15 s and 138 MB when grouped by
        # (value, is training), whose two keys polars encodes row by row.
        every = pl.DataFrame([series.fill_null("").alias("v"), pl.Series("t", train)]) \
            .group_by("v").agg(pl.len(), pl.col("t").sum().alias("train"))
        in_training = every.filter(pl.col("train") > 0)
        levels, counts = in_training["v"], in_training["train"]
        self.counts.update(dict(zip(levels.to_list(), counts.to_list(), strict=True)))
        self.rows += int(counts.sum())
        self.missing += int(counts.filter(levels.str.strip_chars() == "").sum())
        values, weights = every["v"], every["len"]
        stripped = values.str.strip_chars()
        present = stripped != ""
        as_number = stripped.cast(pl.Float64, strict=False)
        not_numbers = int(weights.filter(present & ~stripped.is_in(list(NA_TOKENS))
                                         & as_number.is_null()).sum())
        self.numbers += int(weights.filter(present & as_number.is_not_null()).sum())
        self.not_words += int(weights.filter(present & ~stripped.str.to_lowercase().is_in(
            list(_BOOL_WORDS))).sum())
        if self.not_numbers == 0 and not_numbers == 0:  # still a column of numbers
            numbers = series.str.strip_chars().cast(pl.Float64, strict=False)
            self.as_numbers.add(numbers.to_numpy(), train, start_row, False)
        self.not_numbers += not_numbers

    def merge(self, other: _Text) -> None:
        """Take the statistics of the rows right after these (consecutive partitions)."""
        if self.not_numbers == 0:
            self.as_numbers.merge(other.as_numbers)
        self.counts.update(other.counts)
        self.rows += other.rows
        self.missing += other.missing
        self.not_numbers += other.not_numbers
        self.numbers += other.numbers
        self.not_words += other.not_words


class ColumnStats:
    """Statistics of the planned columns over the training rows, chunk by chunk."""

    def __init__(self, source: Source | Sources, plan: ColumnPlan,
                 options: EncodingOptions) -> None:
        self.source = source
        self.plan = plan
        self.options = options
        self.numbers: dict[str, _Numbers] = {}
        self.texts: dict[str, _Text] = {}
        self.booleans: dict[str, list[int]] = {}  # [true, false, missing] training rows
        self.rows = 0
        self.train_rows = 0
        for name in plan.columns:
            dtype = plan.types[name]
            if dtype == pl.Float64:
                self.numbers[name] = _Numbers()
            elif dtype == pl.Boolean:
                self.booleans[name] = [0, 0, 0]
            else:
                self.texts[name] = _Text()

    def add(self, frame: pl.DataFrame, start_row: int, train: np.ndarray,
            source: Source | None = None) -> None:
        """Take one chunk; ``train`` marks its training rows (the rest are held out).

        ``start_row`` is the chunk's first row in the whole data; ``source`` is the file it
        came from when the data is several files (errors name its lines).
        """
        self.rows += frame.height
        self.train_rows += int(train.sum())
        if self.numbers:
            self._add_numbers(frame, start_row, train, source or self.source)
        for name, stats in self.texts.items():
            stats.add(frame[name], train, start_row)
        for name, counts in self.booleans.items():
            series = frame[name].filter(pl.Series(train))
            counts[0] += int(series.sum() or 0)
            counts[2] += series.null_count()
            counts[1] += len(series) - series.null_count() - int(series.sum() or 0)

    def merge(self, other: ColumnStats) -> ColumnStats:
        """Take the statistics of the rows right after these: partial statistics of
        consecutive partitions, merged in order, are those of one pass; returns self."""
        self.rows += other.rows
        self.train_rows += other.train_rows
        for name, stats in self.numbers.items():
            stats.merge(other.numbers[name])
        for name, text in self.texts.items():
            text.merge(other.texts[name])
        for name, counts in self.booleans.items():
            counts[:] = [a + b for a, b in zip(counts, other.booleans[name], strict=True)]
        return self

    def _add_numbers(self, frame: pl.DataFrame, start_row: int, train: np.ndarray,
                     source: Source | Sources) -> None:
        """The numeric columns' aggregates over the chunk. NaN is a missing value, as an empty
        cell is; infinity is an error naming its line."""
        picked = None  # the training rows' positions, found once for every column
        for name, stats in self.numbers.items():
            values = frame[name].to_numpy()  # a view when nothing is missing; NaN for empty
            low, high = float(values.min()), float(values.max())  # NaN if any is missing
            if math.isinf(low) or math.isinf(high) or (
                    math.isnan(low) and np.isinf(values).any()):
                row = int(np.flatnonzero(np.isinf(values))[0])
                line = source.line_of_row(start_row + row)
                raise DataError(f"column {name!r}, line {line}: {float(values[row])!r} is not "
                                "a finite number", column=name, line=line)
            if math.isnan(low):  # some are missing: the general path
                stats.add(values, train, start_row, name.lower() in _INDEX_NAMES)
                continue
            # Nothing missing (the common case): one gather of the training rows, no masks (by
            # position: 2x faster than by the boolean mask, which finds them again each time).
            if picked is None:
                picked = np.flatnonzero(train)
            kept = np.take(values, picked)
            n = len(values)
            index = None
            base = float(values[0]) - start_row
            if base in (0.0, 1.0) and float(values[-1]) == base + start_row + n - 1:
                rows = np.arange(start_row, start_row + n, dtype=np.float64)
                index = base if np.array_equal(values, rows + base) else None
            stats.take(len(kept), float(kept.sum()), 0,
                        float(kept.min()) if len(kept) else None,
                        float(kept.max()) if len(kept) else None, n, index)
            if name.lower() in _INDEX_NAMES:
                stats.add_distinct(values)

    # -- the schema ------------------------------------------------------------------------

    def schema(self) -> tuple[Schema, list[str]]:
        """The features, in file order, and the notices about what was decided."""
        options = self.options
        notices: list[str] = []
        features: list[Feature] = []
        dropped = list(self.plan.dropped)
        first = self.source.columns[0]
        for name in self.plan.columns:
            why = None
            if name in self.numbers:
                stats = self.numbers[name]
                forced = name in options.numeric or (
                    options.features is not None and name in options.features)
                if not forced:
                    why = self._index_reason(name, first, stats)
                if why is None and stats.count == 0:
                    why = "every value is empty"
                if why is None:
                    features.append(self._numeric(name, stats))
            elif name in self.booleans:
                true, false, missing = self.booleans[name]
                total = true + false
                mean = true / total if total else 0.0
                features.append(Feature(name, BOOLEAN, mean=mean, indicator=missing > 0,
                                        missing=missing, true_words=("true",),
                                        false_words=("false",)))
            else:
                feature, why = self._from_text(name, self.texts[name])
                if feature is not None:
                    features.append(feature)
            if why is not None:
                dropped.append((name, why))
        for name, why in dropped:
            if why.startswith(("not among", "dropped on request")):
                continue
            notices.append(f"dropped {name!r}: {why}")
        if not features:
            raise DataError("no feature columns are left to train on: "
                            + "; ".join(f"{n!r} {w}" for n, w in dropped))
        for f in features:
            if f.kind == CATEGORICAL and f.pooled:
                notices.append(f"{f.name!r}: {len(f.levels)} levels kept, {f.pooled} rare ones "
                               f"(fewer than {options.min_frequency} rows) pooled as other")
            if f.kind != CATEGORICAL and f.missing:
                notices.append(f"{f.name!r}: {f.missing} empty values imputed with the mean "
                               f"({f.mean:.6g}), with a missing indicator")
        return Schema(tuple(features), tuple(dropped)), notices

    def _index_reason(self, name: str, first: str, stats: _Numbers) -> str | None:
        if name == first and name.startswith("Unnamed: ") and not self.source.header[0]:
            return "the unnamed first column is a row index (as R's write.csv and pandas' " \
                   "to_csv write it)"
        if name.lower() in _INDEX_NAMES and stats.distinct_ok and stats.missing == 0 and \
                len(stats.distinct) == self.rows:
            return f"a column named {name!r} holding distinct integers is a row index"
        if stats.index and self.rows >= 3 and stats.missing == 0:
            base = int(stats.index_base or 0)
            return (f"its values are {base}..{self.rows - 1 + base} in file order: a row index "
                    f"(as a feature it could leak the file's order into the model; keep it with "
                    f"--numeric {name})")
        return None

    def _numeric(self, name: str, stats: _Numbers) -> Feature:
        return Feature(name, NUMERIC, mean=stats.mean, indicator=stats.missing > 0,
                       minimum=stats.minimum, maximum=stats.maximum, missing=stats.missing)

    def _from_text(self, name: str, stats: _Text) -> tuple[Feature | None, str | None]:
        options = self.options
        non_empty = stats.rows - stats.missing
        mostly_numbers = stats.numbers > stats.not_numbers and stats.not_numbers <= max(
            1, _TYPO_SHARE * (stats.numbers + stats.not_numbers))
        if name in options.numeric or (name not in options.categorical and mostly_numbers):
            if stats.not_numbers:
                raise self._not_a_number(name)
            return self._numeric(name, stats.as_numbers), None
        if name not in options.categorical and stats.not_words == 0 and non_empty > 0:
            words = {w for w in stats.counts if w}
            true_words = tuple(sorted(w for w in words if w.strip().lower() in TRUE_WORDS))
            false_words = tuple(sorted(w for w in words if w.strip().lower() in FALSE_WORDS))
            true = sum(c for w, c in stats.counts.items() if w in true_words)
            mean = true / non_empty if non_empty else 0.0
            return Feature(name, BOOLEAN, mean=mean, indicator=stats.missing > 0,
                           missing=stats.missing, true_words=true_words,
                           false_words=false_words), None
        if name not in options.categorical and non_empty >= _DISTINCT_MIN_ROWS and \
                len(stats.counts) - ("" in stats.counts) == non_empty:
            return None, (f"its {non_empty} values are all different text (an id or an "
                          f"address?): one weight per row would only memorise; derive a "
                          f"feature from it, or keep it with --categorical {name}")
        if non_empty == 0 and name not in options.categorical:
            return None, "every value is empty"
        ranked = sorted(stats.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [(lv, c) for lv, c in ranked if c >= options.min_frequency][:options.max_levels]
        pooled_count = stats.rows - sum(c for _, c in kept)
        return Feature(
            name, CATEGORICAL, missing=stats.missing,
            levels=tuple(lv for lv, _ in kept), counts=tuple(c for _, c in kept),
            other_count=pooled_count, pooled=len(ranked) - len(kept),
            pooled_levels=tuple(lv for lv, _ in ranked[len(kept):]),
        ), None

    def _not_a_number(self, name: str) -> DataError:
        located = self.source.locate(name, pl.Float64)
        if located is not None:
            return located
        return DataError(f"column {name!r} holds values that are not numbers", column=name)


def _names(columns: Sequence[str]) -> str:
    text = ", ".join(columns)
    return text if len(text) <= 200 else text[:197] + "..."
