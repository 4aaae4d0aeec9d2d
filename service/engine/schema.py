"""What a model knows about its inputs: each feature's kind and what it learned of it.

A :class:`Feature` is plain data (names, numbers, tuples of strings), fitted once from the
training data and stored with the model, in the spirit of scikit-learn's fitted encoders
(``OneHotEncoder.categories_``, ``SimpleImputer.statistics_``):

- ``numeric``: a number; an empty value is replaced by the training mean (``mean``), and when the
  training data had empty values a missing-indicator column is added (``indicator``);
- ``boolean``: yes/no, true/false, y/n words (any case) or 0/1, encoded 1/0; empty as numeric;
- ``categorical``: text; one weight per kept level (``levels``, in code order; ``""`` is the
  empty cell), and one more, code ``len(levels)``, for the levels pooled as rare and for any
  level never seen in training ("other").

The design the estimator fits is a float matrix with one column per numeric or boolean feature,
then one per missing indicator (:meth:`Schema.design_names`), and one integer code column per
categorical feature. This module encodes Python values for serving; the data layer encodes
whole files the same way (service/data/encode.py), and tests hold the two to the same bits.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "BOOLEAN",
    "DEFAULT_MAX_LEVELS",
    "DEFAULT_MIN_FREQUENCY",
    "CATEGORICAL",
    "FALSE_WORDS",
    "KINDS",
    "NUMERIC",
    "TRUE_WORDS",
    "Encoded",
    "Feature",
    "Schema",
    "ValueProblem",
]

NUMERIC, BOOLEAN, CATEGORICAL = "numeric", "boolean", "categorical"
_MISSING = {None: 1.0}  # .get(value, 0.0): the missing indicator of one value
# A categorical level is kept when it has this many training rows (the rest are pooled as
# "other"), and at most this many per column: chosen by measurement (docs/benchmarks-tabular.md).
DEFAULT_MIN_FREQUENCY = 1  # no pooling: every k > 1 lost on Ames (docs/benchmarks-tabular.md)
DEFAULT_MAX_LEVELS = 10_000
KINDS = (NUMERIC, BOOLEAN, CATEGORICAL)
TRUE_WORDS = ("yes", "true", "y")
FALSE_WORDS = ("no", "false", "n")
_BOOL_WORDS = {**dict.fromkeys(TRUE_WORDS, 1.0), **dict.fromkeys(FALSE_WORDS, 0.0)}


class ValueProblem(ValueError):
    """A value a feature cannot take; ``expected`` says what it takes, in words."""

    def __init__(self, feature: str, value: Any, expected: str):
        super().__init__(f"feature {feature!r} must be {expected}")
        self.feature = feature
        self.value = value
        self.expected = expected


@dataclass(frozen=True)
class Feature:
    """One input column of a model: its kind and the statistics it was fitted with."""

    name: str
    kind: str
    mean: float = 0.0  # numeric, boolean: the value an empty cell takes (training mean)
    indicator: bool = False  # numeric, boolean: a missing-indicator column follows
    minimum: float | None = None  # numeric: the training range, a hint for forms
    maximum: float | None = None
    missing: int = 0  # training rows with an empty value
    true_words: tuple[str, ...] = ()  # boolean: the words seen in training (as written)
    false_words: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()  # categorical: kept levels in code order
    counts: tuple[int, ...] = ()  # categorical: training rows per kept level
    other_count: int = 0  # categorical: training rows pooled into "other"
    pooled: int = 0  # categorical: how many levels were pooled
    pooled_levels: tuple[str, ...] = ()  # categorical: their names (to tell them from unseen)
    _index: Mapping[Any, int] = field(default_factory=dict, compare=False, repr=False)
    _known: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: kind must be one of {KINDS}, "
                             f"got {self.kind!r}")
        if self.kind == CATEGORICAL:
            if len(set(self.levels)) != len(self.levels):
                raise ValueError(f"feature {self.name!r}: levels must be distinct")
            index: dict[Any, int] = {lv: i for i, lv in enumerate(self.levels)}
            index[None] = index.get("", self.other)  # null is the empty cell
            object.__setattr__(self, "_index", index)
            object.__setattr__(self, "_known", frozenset(self.levels) | frozenset(
                self.pooled_levels))

    @property
    def other(self) -> int:
        """The code of the "other" level (rare and unseen levels)."""
        return len(self.levels)

    @property
    def n_levels(self) -> int:
        return len(self.levels) + 1

    @property
    def imputes(self) -> bool:
        """Whether an empty value is allowed (always, for every kind: see the module doc)."""
        return True

    # -- encoding one value ----------------------------------------------------------------

    def number(self, value: Any) -> tuple[float, float]:
        """A numeric or boolean value as (design value, missing indicator)."""
        if value is None:
            return self.mean, 1.0
        if self.kind == BOOLEAN:
            return self._boolean(value), 0.0
        if type(value) is bool or type(value) not in (int, float):
            raise ValueProblem(self.name, value, "a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueProblem(self.name, value, "a finite number")
        return number, 0.0

    def _boolean(self, value: Any) -> float:
        if value is True or value is False:
            return 1.0 if value else 0.0
        if type(value) in (int, float) and value in (0, 1):
            return float(value)
        if isinstance(value, str):
            found = _BOOL_WORDS.get(value.strip().lower())
            if found is not None:
                return found
        words = "/".join(self.true_words[:1] + self.false_words[:1]) or "yes/no"
        raise ValueProblem(self.name, value, f"true/false, 1/0 or {words}")

    def code(self, value: Any) -> int:
        """A categorical value's code: its level, or "other" for one never kept."""
        if value is not None and not isinstance(value, str):
            raise ValueProblem(self.name, value, "a string (one of its levels) or null")
        return self._index.get(value, self.other)

    def seen(self, value: Any) -> bool:
        """Whether a categorical value occurred in training (kept or pooled): the others are
        unseen levels, counted by the service."""
        return (value if value is not None else "") in self._known

    # -- encoding a column (values already of the right JSON types) -------------------------

    def numbers(self, column: Sequence[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """A numeric column (floats, None for empty) as (values, missing flags or None when
        nothing is missing); a boolean column goes value by value."""
        if self.kind == NUMERIC:
            values = np.array(column, dtype=np.float64)  # None becomes NaN
            # NaN is only ever a None here (JSON has no NaN, the decoders refuse "NaN"): one
            # pass over the array, not a scan of the list for None (a third of the time).
            missing = np.isnan(values)
            if not missing.any():
                return values, None
            values[missing] = self.mean
            return values, missing.astype(np.float64)
        if isinstance(column, np.ndarray):  # 0/1 from a protocol's numeric tensor
            values = np.asarray(column, dtype=np.float64)
            bad = np.flatnonzero((values != 0) & (values != 1))
            if len(bad):
                raise ValueProblem(self.name, float(values[bad[0]]), "true/false, 1/0 or "
                                   + ("/".join(self.true_words[:1] + self.false_words[:1])
                                      or "yes/no"))
            return values, None
        # Boolean: each distinct value encoded once (a column holds a few spellings), then
        # looked up per row; True, 1 and 1.0 are one key and encode alike.
        distinct = set(column)
        numbers = {value: self.number(value)[0] for value in distinct}
        values = np.fromiter(map(numbers.__getitem__, column), np.float64, len(column))
        if None not in distinct:
            return values, None
        return values, np.fromiter(map(_MISSING.get, column, itertools.repeat(0.0, len(column))),
                                   np.float64, len(column))

    def codes(self, column: Sequence[Any]) -> np.ndarray:
        """A categorical column (strings, None for empty) as level codes."""
        get, n = self._index.get, len(column)
        return np.fromiter(map(get, column, itertools.repeat(self.other, n)), np.int64, n)

    # -- plain data --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.name, "kind": self.kind,
                                 "missing": int(self.missing)}
        if self.kind in (NUMERIC, BOOLEAN):
            state.update(mean=float(self.mean), indicator=bool(self.indicator),
                         minimum=self.minimum, maximum=self.maximum)
        if self.kind == BOOLEAN:
            state.update(true_words=list(self.true_words), false_words=list(self.false_words))
        if self.kind == CATEGORICAL:
            state.update(levels=pack_strings(self.levels),
                         counts=np.array(self.counts, dtype=np.int64),
                         other_count=int(self.other_count), pooled=int(self.pooled),
                         pooled_levels=pack_strings(self.pooled_levels))
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Feature:
        def opt(key: str) -> float | None:
            value = state.get(key)
            return None if value is None else float(value)

        return cls(
            name=str(state["name"]), kind=str(state["kind"]),
            mean=float(state.get("mean", 0.0)), indicator=bool(state.get("indicator", False)),
            minimum=opt("minimum"), maximum=opt("maximum"), missing=int(state.get("missing", 0)),
            true_words=tuple(map(str, state.get("true_words", ()))),
            false_words=tuple(map(str, state.get("false_words", ()))),
            levels=unpack_strings(state.get("levels", ())),
            counts=tuple(np.asarray(state.get("counts", ()), dtype=np.int64).tolist()),
            other_count=int(state.get("other_count", 0)), pooled=int(state.get("pooled", 0)),
            pooled_levels=unpack_strings(state.get("pooled_levels", ())),
        )


def pack_strings(strings: Sequence[str]) -> dict[str, Any]:
    """A list of strings as one string and the end offset of each: two objects to pickle, not
    one per level (10,000 levels: 38 ms to dump and 24 ms to load through the safe unpickler,
    against 2.5 and 1.2 ms packed; docs/model-store.md)."""
    ends = np.cumsum([len(text) for text in strings], dtype=np.int64)
    return {"text": "".join(strings), "ends": ends}


def unpack_strings(packed: Any) -> tuple[str, ...]:
    """:func:`pack_strings` undone; a plain list of strings (format 2 states) as it is."""
    if isinstance(packed, Mapping):
        text, ends = str(packed["text"]), np.asarray(packed["ends"], dtype=np.int64)
        if len(ends) and (ends[-1] != len(text) or (np.diff(ends) < 0).any() or ends[0] < 0):
            raise ValueError("packed strings: the offsets do not fit the text")
        bounds = ends.tolist()
        return tuple(text[a:b] for a, b in zip([0, *bounds][:len(bounds)], bounds,
                                                strict=True))
    return tuple(map(str, packed))


@dataclass
class Encoded:
    """Rows encoded for a model: design columns and level codes, and what was filled in."""

    values: list[Any]  # one per design column: floats (a row) or arrays (a batch)
    codes: list[Any]  # one per categorical feature
    imputed: dict[str, int]  # feature -> empty values replaced by the training mean
    unseen: dict[str, int]  # feature -> levels never seen in training


@dataclass(frozen=True)
class Schema:
    """The features of a model in input order, and the columns dropped when it was trained."""

    features: tuple[Feature, ...]
    dropped: tuple[tuple[str, str], ...] = ()  # (column, why): accepted and ignored at serving

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if not names:
            raise ValueError("a schema needs at least one feature")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def numeric(self) -> tuple[Feature, ...]:
        """Numeric and boolean features: one design column each, in input order."""
        return tuple(f for f in self.features if f.kind != CATEGORICAL)

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == CATEGORICAL)

    @property
    def n_levels(self) -> tuple[int, ...]:
        return tuple(f.n_levels for f in self.categorical)

    @property
    def plain(self) -> bool:
        """All numeric, no indicator: the design is the input itself (the fastest path)."""
        return all(f.kind == NUMERIC and not f.indicator for f in self.features)

    def design_names(self) -> list[str]:
        """Names of the design's float columns: each numeric feature, then the indicators."""
        return [f.name for f in self.numeric] + [
            f"{f.name} (missing)" for f in self.numeric if f.indicator]

    def encode_columns(self, columns: Sequence[Any]) -> Encoded:
        """One value list per input feature (Python values of the right JSON types, None for
        empty) as the design of a batch: float columns and code columns (numpy arrays)."""
        values: list[Any] = []
        indicators: list[Any] = []
        codes: list[Any] = []
        imputed: dict[str, int] = {}
        unseen: dict[str, int] = {}
        for feature, column in zip(self.features, columns, strict=True):
            if feature.kind == CATEGORICAL:
                code = feature.codes(column)
                codes.append(code)
                others = np.flatnonzero(code == feature.other)
                if len(others):
                    count = sum(not feature.seen(column[i]) for i in others.tolist())
                    if count:
                        unseen[feature.name] = count
                continue
            number, missing = feature.numbers(column)
            values.append(number)
            if missing is not None:
                imputed[feature.name] = int(missing.sum())
            if feature.indicator:
                indicators.append(missing if missing is not None else np.zeros(len(number)))
        return Encoded(values + indicators, codes, imputed, unseen)

    def encode_row(self, row: Sequence[Any]) -> Encoded:
        """One row's values (input order) as design floats and codes, with no numpy."""
        values: list[float] = []
        indicators: list[float] = []
        codes: list[int] = []
        imputed: dict[str, int] = {}
        unseen: dict[str, int] = {}
        for feature, value in zip(self.features, row, strict=True):
            if feature.kind == CATEGORICAL:
                code = feature.code(value)
                codes.append(code)
                if code == feature.other and not feature.seen(value):
                    unseen[feature.name] = 1
                continue
            number, missing = feature.number(value)
            values.append(number)
            if missing:
                imputed[feature.name] = 1
            if feature.indicator:
                indicators.append(missing)
        return Encoded(values + indicators, codes, imputed, unseen)

    def to_state(self) -> dict[str, Any]:
        return {"features": [f.to_state() for f in self.features],
                "dropped": [[name, why] for name, why in self.dropped]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Schema:
        return cls(
            features=tuple(Feature.from_state(f) for f in state["features"]),
            dropped=tuple((str(n), str(w)) for n, w in state.get("dropped", ())),
        )

    @classmethod
    def numeric_only(cls, names: Sequence[str], means: Sequence[float]) -> Schema:
        """All-numeric features with no missing values (models made before schemas)."""
        return cls(tuple(Feature(str(n), NUMERIC, mean=float(m))
                         for n, m in zip(names, means, strict=True)))
