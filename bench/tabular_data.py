"""Seeded tabular files for the benchmarks and tests of issue 10: mixed, numeric and house data.

- :func:`mixed_csv` / :func:`mixed_parquet`: the issue's mixed benchmark, 1,000,000 rows of 10
  numeric columns (``n0`` .. ``n9``; 5% empty cells in ``n0``, ``n1``, ``n2``) and 5 text
  columns of 5, 20, 100, 1,000 and 10,000 levels (``s5`` .. ``s10000``; Zipf level
  frequencies; 5% empty in ``s100``), ``price`` linear in all of them plus noise.
- :func:`numeric_csv` (short decimals: bench/regression_file.py's 200 MB file),
  :func:`numeric_full_csv` (as pandas' ``to_csv`` writes floats: up to 17 digits) and
  :func:`numeric_parquet` (the same rows as :func:`numeric_full_csv`, bit for bit).
- :func:`house_frame` + :func:`write_house_files`: small house data as it exists (categories,
  gaps, an R ``write.csv`` row-name column, a row index, an all-distinct address with commas,
  yes/no words, the text "NA" as a level) as CSV, .csv.gz, Parquet and JSON lines of the same
  rows, for tests.

Every number is written at full precision (Python's shortest round-trip repr, as pandas'
``to_csv`` writes it) unless a function says otherwise. Big files are generated once into
``<tempdir>/sgdserve-bench`` under a name holding every parameter (and :data:`VERSION`), as
regression_file.py does, so benches and tests share them. Needs numpy, pandas and pyarrow (the
test extra); imports service/ only for ``make_regression``.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from regression_file import regression_csv  # noqa: E402  (bench/, beside this file)

__all__ = [
    "MIXED_LEVELS", "MIXED_MISSING_NUMERIC", "MIXED_MISSING_TEXT", "MIXED_NUMERIC", "VERSION",
    "cache_dir", "house_frame", "mixed_csv", "mixed_frame", "mixed_parquet", "numeric_csv",
    "numeric_frame", "numeric_full_csv", "numeric_parquet", "read_back", "read_csv_exact",
    "write_house_files", "write_jsonl", "write_r_csv",
]

# Part of every cached file's name: bump it when a generator changes what it writes.
VERSION = 2

MIXED_NUMERIC = tuple(f"n{i}" for i in range(10))
MIXED_LEVELS = (5, 20, 100, 1_000, 10_000)
MIXED_MISSING_NUMERIC = ("n0", "n1", "n2")
MIXED_MISSING_TEXT = "s100"
MISSING_FRACTION = 0.05
ZIPF_EXPONENT = 1.2


def cache_dir() -> Path:
    """``<tempdir>/sgdserve-bench``, shared with bench/regression_file.py."""
    folder = Path(tempfile.gettempdir()) / "sgdserve-bench"
    folder.mkdir(exist_ok=True)
    return folder


def _cached(name: str, write: Callable[[Path], None]) -> Path:
    """The file ``name`` in :func:`cache_dir`, written by ``write(tmp)`` the first time."""
    path = cache_dir() / name
    if not path.exists():
        print(f"writing {path} (once) ...", file=sys.stderr, flush=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            write(tmp)
            tmp.replace(path)  # a reader never sees half a file, even with two writers
        finally:
            tmp.unlink(missing_ok=True)
    return path


# --- the mixed benchmark --------------------------------------------------------------------

def _zipf_codes(rng: np.random.Generator, n_rows: int, n_levels: int) -> np.ndarray:
    """Level codes whose frequencies fall as 1 / rank**1.2 (rank 1 the most frequent)."""
    p = 1.0 / np.arange(1, n_levels + 1, dtype=np.float64) ** ZIPF_EXPONENT
    return rng.choice(n_levels, size=n_rows, p=p / p.sum())


def mixed_frame(rows: int = 1_000_000, seed: int = 0) -> pd.DataFrame:
    """The mixed benchmark's rows: ``n0`` .. ``n9``, ``s5`` .. ``s10000``, ``price``.

    The formulas of the file issue 10 measured: n_i = (i + 1) * N(0, 1) + i, price = 1 +
    sum_i 0.3 * (i mod 3 - 1) * n_i + sum_k effect_k[level] + N(0, 1), level effects N(0, 1)
    (so the optimum's holdout R^2 is about 0.975, and n1, n4, n7 do not matter). Empty cells are
    blanked after price is computed (a gap hides information, as in real data): NaN in numeric
    columns, None in text ones.
    """
    rng = np.random.default_rng(seed)
    price = np.ones(rows)
    columns: dict[str, object] = {}
    for i, name in enumerate(MIXED_NUMERIC):
        x = rng.standard_normal(rows) * (i + 1.0) + i
        price += 0.3 * (i % 3 - 1) * x
        if name in MIXED_MISSING_NUMERIC:
            x[rng.random(rows) < MISSING_FRACTION] = np.nan
        columns[name] = x
    for n_levels in MIXED_LEVELS:
        codes = _zipf_codes(rng, rows, n_levels)
        price += rng.standard_normal(n_levels)[codes]
        # Names in a shuffled order, so level order by name is not order by frequency.
        names = np.array([f"L{n_levels}_{j:05d}" for j in rng.permutation(n_levels)], object)
        text = names[codes]
        if f"s{n_levels}" == MIXED_MISSING_TEXT:
            text[rng.random(rows) < MISSING_FRACTION] = None
        columns[f"s{n_levels}"] = text
    columns["price"] = price + rng.standard_normal(rows)
    return pd.DataFrame(columns)


def mixed_csv(rows: int = 1_000_000, seed: int = 0) -> Path:
    """:func:`mixed_frame` as pandas' ``to_csv`` writes it (full precision, empty for missing)."""
    return _cached(f"mixed_{rows}_seed{seed}_v{VERSION}.csv",
                   lambda tmp: mixed_frame(rows, seed).to_csv(tmp, index=False))


def mixed_parquet(rows: int = 1_000_000, seed: int = 0) -> Path:
    """:func:`mixed_frame` as Parquet (pyarrow, snappy; text as strings, missing as null)."""
    return _cached(f"mixed_{rows}_seed{seed}_v{VERSION}.parquet",
                   lambda tmp: mixed_frame(rows, seed).to_parquet(tmp, index=False))


# --- all-numeric ----------------------------------------------------------------------------

def numeric_csv(rows: int = 1_000_000, features: int = 20, target: str = "y",
                seed: int = 0) -> Path:
    """The 200 MB benchmark CSV of bench/regression_file.py (7 significant digits)."""
    from service import data

    return regression_csv(data, rows, features, target, seed)


def numeric_frame(rows: int = 500_000, features: int = 20, target: str = "y",
                  seed: int = 0) -> pd.DataFrame:
    """``service.data.make_regression`` rows (x0, x1, ..., ``target``) at full precision."""
    from service import data

    X, y, _, _ = data.make_regression(rows, features, seed=seed)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(features)])
    frame[target] = y
    return frame


def numeric_full_csv(rows: int = 500_000, features: int = 20, target: str = "y",
                     seed: int = 0) -> Path:
    """:func:`numeric_frame` written by pandas' ``to_csv`` (floats up to 17 significant digits)."""
    return _cached(f"numeric_full_{rows}x{features}_{target}_seed{seed}_v{VERSION}.csv",
                   lambda tmp: numeric_frame(rows, features, target, seed).to_csv(tmp, index=False))


def numeric_parquet(rows: int = 500_000, features: int = 20, target: str = "y",
                    seed: int = 0) -> Path:
    """The rows of :func:`numeric_full_csv` as Parquet (float64, the same doubles)."""
    return _cached(
        f"numeric_full_{rows}x{features}_{target}_seed{seed}_v{VERSION}.parquet",
        lambda tmp: numeric_frame(rows, features, target, seed).to_parquet(tmp, index=False))


# --- house data as it exists ----------------------------------------------------------------

NEIGHBORHOODS = ("Old Town", "Northridge", "College Creek", "Edwards", "Somerset", "Gilbert",
                 "Sawyer", "Crawford", "Timberland", "Bluestem", "Greens", "Landmark")
NEIGHBORHOOD_EFFECT = (-30_000.0, 60_000.0, 5_000.0, -20_000.0, 40_000.0, 0.0, -10_000.0,
                       25_000.0, 70_000.0, -40_000.0, 20_000.0, -25_000.0)
# The last levels are rare (about 2 and 1 rows in 500): for --min-frequency and pooling.
NEIGHBORHOOD_SHARE = (0.29, 0.2, 0.15, 0.1, 0.08, 0.06, 0.05, 0.03, 0.02, 0.014, 0.004, 0.002)
STYLES = ("1Story", "2Story", "1.5 Story, finished", "Split, foyer")
STYLE_EFFECT = (0.0, 15_000.0, -5_000.0, -12_000.0)
ZIPS = (50010, 50011, 50012, 50013, 50014)
ZIP_EFFECT = (8_000.0, -4_000.0, 0.0, 12_000.0, -9_000.0)
STREETS = ("Oak", "Maple", "Elm", "Cedar", "Pine", "Walnut", "Ash", "Birch", "Hickory", "Lincoln")
SUFFIXES = ("St", "Ave", "Dr", "Ln", "Ct")


def house_frame(rows: int = 500, seed: int = 0) -> pd.DataFrame:
    """House sales as real files have them; ``price`` is linear in the features plus noise.

    Columns, and what each tests:

    - ``listing``: 1..n in file order, a row index (to be dropped: it would leak a sort order).
    - ``address``: all distinct text, with a comma (``"412 Oak St, Ames"``): quoted fields, and
      a column not to one-hot encode.
    - ``sqft``, ``bedrooms``, ``bathrooms`` (x.5), ``year_built``: numeric, no gaps.
    - ``lot_acres``: numeric at full precision, about 12% empty.
    - ``garage_year``: numeric, empty where there is no garage (about 10%), so pandas reads
      floats.
    - ``neighborhood``: 12 levels of falling frequency (the last two rare: a row or two in 500).
    - ``style``: 4 levels, two with a comma inside (quoted).
    - ``zip``: integer zip codes, 5 values: categorical only when the user says so.
    - ``alley``: "Gravel" / "Paved", empty for most houses (empty means no alley: its own level,
      which predicts price).
    - ``basement``: "full" / "partial" / "NA" (the text NA is a level: no basement).
    - ``central_air``: "Y" / "N"; ``waterfront``: "yes" / "no" (yes/no words).
    """
    if rows < 20:
        raise ValueError(f"rows must be >= 20, got {rows}")
    rng = np.random.default_rng(seed)
    sqft = np.clip(np.round(rng.lognormal(np.log(1700.0), 0.35, rows)), 500, 6000)
    bedrooms = np.clip(np.round(1 + sqft / 800 + rng.normal(0, 0.6, rows)), 1, 6).astype(np.int64)
    bathrooms = np.clip(np.round(2 * (0.5 + sqft / 1500 + rng.normal(0, 0.3, rows))) / 2, 1, 4)
    year_built = rng.integers(1900, 2024, rows)
    lot_acres = rng.lognormal(np.log(0.25), 0.5, rows)  # full-precision doubles
    has_garage = rng.random(rows) >= 0.10
    garage_year = np.where(has_garage,
                           np.minimum(2024, year_built + rng.integers(0, 30, rows)), np.nan)
    hood = rng.choice(len(NEIGHBORHOODS), rows, p=NEIGHBORHOOD_SHARE)
    style = rng.choice(len(STYLES), rows, p=[0.5, 0.3, 0.12, 0.08])
    zip_code = rng.integers(0, len(ZIPS), rows)
    alley = rng.choice(3, rows, p=[0.85, 0.09, 0.06])  # 0: no alley (empty cell)
    basement = rng.choice(3, rows, p=[0.6, 0.3, 0.1])  # 2: no basement ("NA")
    central_air = rng.random(rows) < 0.85
    waterfront = rng.random(rows) < 0.07

    price = (20_000.0 + 110.0 * sqft + 4_000.0 * bedrooms + 9_000.0 * bathrooms
             + 600.0 * (year_built - 1900) + 30_000.0 * lot_acres
             + np.where(has_garage, 15_000.0 + 300.0 * (np.nan_to_num(garage_year) - 1950), 0.0)
             + np.take(NEIGHBORHOOD_EFFECT, hood) + np.take(STYLE_EFFECT, style)
             + np.take(ZIP_EFFECT, zip_code) + np.take([0.0, -8_000.0, -3_000.0], alley)
             + np.take([10_000.0, 4_000.0, -15_000.0], basement)
             + 12_000.0 * central_air + 80_000.0 * waterfront
             + rng.normal(0.0, 15_000.0, rows))
    lot_acres[rng.random(rows) < 0.12] = np.nan  # blanked after price: the gap hides it

    numbers = rng.choice(np.arange(100, 100 + 20 * rows), rows, replace=False)
    address = [f"{n} {STREETS[n % 10]} {SUFFIXES[n // 10 % 5]}, Ames" for n in numbers]
    return pd.DataFrame({
        "listing": np.arange(1, rows + 1),
        "address": pd.Series(address, dtype=object),
        "sqft": sqft.astype(np.int64),
        "bedrooms": bedrooms,
        "bathrooms": bathrooms,
        "year_built": year_built,
        "lot_acres": lot_acres,
        "garage_year": garage_year,
        "neighborhood": pd.Series(np.take(NEIGHBORHOODS, hood), dtype=object),
        "style": pd.Series(np.take(STYLES, style), dtype=object),
        "zip": np.take(ZIPS, zip_code),
        "alley": pd.Series(np.take(np.array([None, "Gravel", "Paved"], object), alley),
                           dtype=object),
        "basement": pd.Series(np.take(["full", "partial", "NA"], basement), dtype=object),
        "central_air": pd.Series(np.where(central_air, "Y", "N"), dtype=object),
        "waterfront": pd.Series(np.where(waterfront, "yes", "no"), dtype=object),
        "price": np.round(price).astype(np.int64),
    })


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _r_number(value: object) -> str:
    """A number as R's ``write.csv`` writes it: 15 significant digits, no ``.0``."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.15g}"


def _r_quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def write_r_csv(frame: pd.DataFrame, path: str | os.PathLike[str],
                row_names: list[str] | None = None) -> Path:
    """``frame`` as R's ``write.csv(frame, path)`` writes it.

    The header's first cell is ``""`` (the row names' column), then the quoted names; each row
    starts with its quoted row name (``"1"``, ``"2"``, ... unless ``row_names`` are given); text is
    quoted (inner quotes doubled), numbers have 15 significant digits, and a missing value is an
    unquoted ``NA`` in any column, while the text "NA" is quoted, as R does.
    """
    path = Path(path)
    labels = row_names if row_names is not None else [str(i) for i in range(1, len(frame) + 1)]
    text = [not pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(",".join([_r_quote("")] + [_r_quote(str(c)) for c in frame.columns]) + "\n")
        for label, row in zip(labels, frame.itertuples(index=False, name=None), strict=True):
            cells = [_r_quote(str(label))]
            cells += ["NA" if _is_missing(v) else _r_quote(str(v)) if is_text else _r_number(v)
                      for v, is_text in zip(row, text, strict=True)]
            fh.write(",".join(cells) + "\n")
    return path


def _json_value(value: object) -> object:
    if _is_missing(value):
        return None
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_jsonl(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """One JSON object per row; missing values are ``null``, floats at full precision.

    (pandas' ``to_json`` rounds floats to 10 digits, so this writes with the json module.)
    """
    path = Path(path)
    columns = list(frame.columns)
    with open(path, "w", encoding="utf-8") as fh:
        for row in frame.itertuples(index=False, name=None):
            record = {c: _json_value(v) for c, v in zip(columns, row, strict=True)}
            fh.write(json.dumps(record, allow_nan=False) + "\n")
    return path


def write_house_files(frame: pd.DataFrame, folder: str | os.PathLike[str],
                      stem: str = "houses") -> dict[str, Path]:
    """The same rows in every form the reader must take, in ``folder``.

    Keys: ``csv`` (pandas ``to_csv(index=False)``: empty cells, the text NA unquoted), ``csv_gz``
    (that file gzipped), ``csv_r`` (R's ``write.csv``: an unnamed first column of row names
    1..n, quoted text, NA for missing), ``csv_index`` (pandas ``to_csv()`` with its index: an
    unnamed first column 0..n-1), ``parquet`` (text as strings, missing as null) and ``jsonl``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": folder / f"{stem}.csv",
        "csv_gz": folder / f"{stem}.csv.gz",
        "csv_r": folder / f"{stem}_r.csv",
        "csv_index": folder / f"{stem}_index.csv",
        "parquet": folder / f"{stem}.parquet",
        "jsonl": folder / f"{stem}.jsonl",
    }
    frame.to_csv(paths["csv"], index=False)
    with open(paths["csv"], "rb") as src, \
            gzip.GzipFile(paths["csv_gz"], "wb", mtime=0) as dst:  # mtime 0: the same bytes
        dst.write(src.read())
    write_r_csv(frame, paths["csv_r"])
    frame.to_csv(paths["csv_index"])
    frame.to_parquet(paths["parquet"], index=False)
    write_jsonl(frame, paths["jsonl"])
    return paths


def read_back(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Any file of :func:`write_house_files` as a pandas frame (a reference for tests).

    CSV text "NA" stays a level (``keep_default_na=False``, only empty cells and R's unquoted
    NA are missing), as issue 10 asks; the unnamed row-name column is left in.
    """
    path = Path(path)
    name = path.name
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith(".jsonl"):
        return pd.read_json(path, lines=True, dtype=False, precise_float=True)
    if name.endswith("_r.csv"):
        # R writes missing as NA unquoted and the text NA quoted: quoting tells them apart.
        return _read_r_csv(path)
    return read_csv_exact(path, keep_default_na=False, na_values=[""])


def read_csv_exact(path: str | os.PathLike[str], **options: object) -> pd.DataFrame:
    """``pandas.read_csv`` with every double exact (pandas 3's default; pandas 2 must ask)."""
    if int(pd.__version__.split(".")[0]) < 3:
        options.setdefault("float_precision", "round_trip")
    return pd.read_csv(path, **options)


def _read_r_csv(path: Path) -> pd.DataFrame:
    """pandas' reading of an R CSV, except that only an unquoted NA is missing."""
    with open(path, encoding="utf-8") as fh:
        header = [f[0] for f in _split_r_line(fh.readline().rstrip("\n"))]
        records = [_split_r_line(line.rstrip("\n")) for line in fh]
    columns = {}
    for j, name in enumerate(header):
        values = pd.Series([None if r[j] is None else r[j][0] for r in records], dtype=object)
        try:  # pandas' rule: a column is numeric when every value present reads as a number
            columns[name or "Unnamed: 0"] = pd.to_numeric(values)
        except (ValueError, TypeError):
            columns[name or "Unnamed: 0"] = values
    return pd.DataFrame(columns)


def _split_r_line(line: str) -> list[tuple[str, bool] | None]:
    """Fields of one R CSV line as (text, quoted), or None for an unquoted NA."""
    fields: list[tuple[str, bool] | None] = []
    i, n = 0, len(line)
    while True:
        if i < n and line[i] == '"':
            j, parts = i + 1, []
            while True:
                k = line.index('"', j)
                parts.append(line[j:k])
                if k + 1 < n and line[k + 1] == '"':
                    parts.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            fields.append(("".join(parts), True))
        else:
            k = line.find(",", i)
            k = n if k < 0 else k
            text = line[i:k]
            fields.append(None if text in ("NA", "") else (text, False))
            i = k
        if i >= n:
            return fields
        i += 1  # the comma
