"""service.data: reading CSV, .csv.gz, Parquet and JSON lines; kinds; encoding; streaming;
errors that name the column and the line; the holdout rule; the synthetic generators."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from service import data
from service.data import (
    HOUSE_FEATURES,
    TRUE_COEF,
    TRUE_INTERCEPT,
    EncodingOptions,
    Stream,
    holdout_mask,
    load,
    make_houses,
    make_regression,
    open_source,
    should_stream,
    write_houses_csv,
    write_rows_jsonl,
)
from service.data import dataset as dataset_module
from service.data import source as source_module
from service.engine.schema import BOOLEAN, CATEGORICAL, NUMERIC
from service.errors import DataError

SAMPLE = Path(data.__file__).parents[1] / "sample_data" / "houses.csv"
DEFAULT = EncodingOptions()


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def parquet(frame: pd.DataFrame, path: Path) -> Path:
    """A Parquet file written by polars (pandas would need pyarrow)."""
    pl.DataFrame({c: [None if pd.isna(v) else v for v in frame[c]] for c in frame.columns},
                 strict=False).write_parquet(path)
    return path


def read(path: Path, target: str = "price", options: EncodingOptions = DEFAULT, **kw):
    return load(path, target, options, fraction=0.2, seed=0, **kw)


def kinds(loaded) -> dict[str, str]:
    return {f.name: f.kind for f in loaded.schema.features}


def houses_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """House data as it exists: categories with rare levels, gaps, yes/no, an id column."""
    rng = np.random.default_rng(seed)
    hood = rng.choice(["NAmes", "CollgCr", "OldTown", "Edwards", "Rare"], n,
                      p=[0.4, 0.3, 0.2, 0.095, 0.005])
    frame = pd.DataFrame({
        "sqft": rng.uniform(600, 4000, n).round(1),
        "lot": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(1000, 20000, n).round()),
        "hood": hood,
        "alley": rng.choice(["Grvl", "Pave", None], n, p=[0.05, 0.05, 0.9]),
        "air": rng.choice(["Y", "N"], n, p=[0.9, 0.1]),
        "address": [f"{i} Elm St, Ames" for i in range(n)],
    })
    effect = {"NAmes": 0, "CollgCr": 25_000, "OldTown": -20_000, "Edwards": -5_000, "Rare": 0}
    frame["price"] = (30_000 + 110 * frame.sqft + 2 * frame.lot.fillna(9000)
                      + frame.hood.map(effect) + np.where(frame.air == "Y", 12_000, 0)
                      + np.where(frame.alley.isna(), 4_000, 0)
                      + rng.normal(0, 6_000, n)).round(2)
    return frame


# ---------------------------------------------------------------------------------------------
# Formats and names
# ---------------------------------------------------------------------------------------------


def test_csv_gz_parquet_and_json_lines_give_the_same_data(tmp_path):
    frame = houses_frame()
    frame.to_csv(tmp_path / "h.csv", index=False)
    frame.to_csv(tmp_path / "h.csv.gz", index=False)
    parquet(frame, tmp_path / "h.parquet")
    frame.to_json(tmp_path / "h.jsonl", orient="records", lines=True)
    whole = read(tmp_path / "h.csv")
    for name in ("h.csv.gz", "h.parquet", "h.jsonl"):
        other = read(tmp_path / name)
        assert other.schema.features == whole.schema.features, name
        assert np.array_equal(other.train.X, whole.train.X), name
        assert np.array_equal(other.train.codes, whole.train.codes), name
        assert np.array_equal(other.holdout.target, whole.holdout.target), name
        assert other.fingerprint.format == {"h.parquet": "parquet", "h.jsonl": "jsonl"}.get(
            name, "csv")


def test_the_format_comes_from_the_extension_or_is_given(tmp_path):
    frame = houses_frame(50)
    parquet(frame, tmp_path / "houses.bin")
    with pytest.raises(DataError, match=r"cannot tell the format of 'houses.bin'.*--format"):
        open_source(tmp_path / "houses.bin")
    assert open_source(tmp_path / "houses.bin", "parquet").columns == list(frame.columns)
    with pytest.raises(DataError, match="format must be one of csv, parquet, jsonl"):
        open_source(tmp_path / "houses.bin", "xlsx")


def test_empty_and_repeated_header_names_get_pandas_names_with_a_notice(tmp_path):
    path = write(tmp_path, ",a,b,a,,price\n1,2,x,3,4,5\n2,3,y,4,5,6\n3,5,x,6,7,9\n4,4,y,7,1,9\n")
    source = open_source(path)
    assert source.columns == ["Unnamed: 0", "a", "b", "a.1", "Unnamed: 4", "price"]
    assert source.notices == [
        "header column 1 has no name: called it 'Unnamed: 0'",
        "column 'a' appears again (header column 4): called it 'a.1'",
        "header column 5 has no name: called it 'Unnamed: 4'",
    ]
    loaded = read(path)
    assert "a.1" in loaded.schema.names and "Unnamed: 4" in loaded.schema.names
    assert ("Unnamed: 0", "the unnamed first column is a row index (as R's write.csv and "
            "pandas' to_csv write it)") in loaded.schema.dropped


def test_quoted_fields_with_commas_and_newlines_keep_their_lines(tmp_path):
    text = ('sqft,hood,price\n1500,"North, Ames",300000\n2000,"South\nAmes",350000\n'
            '1000,"North, Ames",200000\n1800,"South\nAmes",320000\n1200,"North, Ames",250000\n'
            'abc,"North, Ames",1\n1700,"South\nAmes",300000\n') + "1600,x,1\n" * 40
    with pytest.raises(DataError, match=r"^column 'sqft', line 9: 'abc' is not a number"):
        read(write(tmp_path, text))
    fine = read(write(tmp_path, text.replace("abc", "1100"), "fine.csv"),
                options=EncodingOptions(min_frequency=1))
    levels = fine.schema.features[1].levels
    assert "North, Ames" in levels and "South\nAmes" in levels


# ---------------------------------------------------------------------------------------------
# Kinds, inferred once and overridden
# ---------------------------------------------------------------------------------------------


def test_kinds_are_inferred_from_the_values(tmp_path):
    frame = houses_frame()
    frame.to_csv(tmp_path / "h.csv")  # pandas writes its row index as an unnamed column
    loaded = read(tmp_path / "h.csv")
    assert kinds(loaded) == {"sqft": NUMERIC, "lot": NUMERIC, "hood": CATEGORICAL,
                             "alley": CATEGORICAL, "air": BOOLEAN}
    dropped = dict(loaded.schema.dropped)
    assert set(dropped) == {"Unnamed: 0", "address"}
    assert "all different text" in dropped["address"] and "--categorical address" in \
        dropped["address"]
    decisions = "\n".join(loaded.decisions)
    assert "dropped 'address'" in decisions and "'lot':" in decisions and "imputed" in decisions


def test_numeric_gaps_are_imputed_with_the_training_mean_and_an_indicator(tmp_path):
    frame = houses_frame()
    frame.to_csv(tmp_path / "h.csv", index=False)
    loaded = read(tmp_path / "h.csv")
    lot = next(f for f in loaded.schema.features if f.name == "lot")
    train_rows = np.flatnonzero(~holdout_mask(0, len(frame), 0.2, 0))
    expected = frame.lot.iloc[train_rows]
    assert lot.indicator and lot.missing == int(expected.isna().sum())
    assert lot.mean == pytest.approx(expected.mean())  # the training rows only
    assert (lot.minimum, lot.maximum) == (expected.min(), expected.max())
    names = loaded.schema.design_names()
    assert names == ["sqft", "lot", "air", "lot (missing)"]
    X = loaded.train.X
    gaps = X[:, 3] == 1.0
    assert gaps.sum() == lot.missing and np.all(X[gaps, 1] == lot.mean)


def test_levels_rare_ones_pooled_empty_is_a_level_and_na_text_is_a_level(tmp_path):
    n = 300
    hood = ["A"] * 150 + ["B"] * 100 + ["C"] * 45 + ["rare"] * 3 + ["NA"] * 2
    alley = [""] * 200 + ["Pave"] * 100
    frame = pd.DataFrame({"hood": hood, "alley": alley, "x": np.arange(n) % 7,
                          "price": np.arange(n) * 3.0 % 11 + 1})
    frame.to_csv(tmp_path / "c.csv", index=False)
    options = EncodingOptions(min_frequency=3)
    loaded = load(tmp_path / "c.csv", "price", options, fraction=0.01, seed=0)
    hood_f, alley_f = loaded.schema.categorical
    assert hood_f.levels[:3] == ("A", "B", "C") and "rare" in hood_f.levels
    assert "NA" not in hood_f.levels and hood_f.pooled == 1  # 2 rows of "NA": below 3
    assert alley_f.levels == ("", "Pave")  # the empty cell is a level
    assert hood_f.code("NA") == hood_f.other == hood_f.code("never seen")
    strict = load(tmp_path / "c.csv", "price", EncodingOptions(min_frequency=50), fraction=0.01,
                  seed=0)
    assert strict.schema.categorical[0].levels == ("A", "B")
    capped = load(tmp_path / "c.csv", "price", EncodingOptions(max_levels=1, min_frequency=1),
                  fraction=0.01, seed=0)
    assert capped.schema.categorical[0].levels == ("A",)


def test_yes_no_words_in_any_case_are_boolean(tmp_path):
    rows = "".join(f"{w},{i % 5},{i}\n" for i, w in enumerate(["Yes", "no", "Y", "n", "TRUE",
                                                                "false"] * 5))
    loaded = read(write(tmp_path, "a,b,price\n" + rows))
    air = loaded.schema.features[0]
    assert air.kind == BOOLEAN and set(air.true_words) == {"Yes", "Y", "TRUE"}
    assert set(np.unique(loaded.train.X[:, 0])) == {0.0, 1.0}


def test_numbers_with_na_tokens_are_numeric_and_the_tokens_empty(tmp_path):
    rows = "".join(f"{'NA' if i % 4 == 0 else i * 1.5},{i % 3},{i}\n" for i in range(40))
    loaded = read(write(tmp_path, "a,b,price\n" + rows))
    a = loaded.schema.features[0]
    assert a.kind == NUMERIC and a.indicator and a.missing > 0


def test_nan_in_a_number_column_is_a_missing_value_in_every_format(tmp_path):
    # numpy's savetxt and some exporters write nan where pandas writes an empty cell.
    values = [float("nan") if i % 5 == 0 else i * 1.5 for i in range(40)]
    frame = pd.DataFrame({"a": values, "b": [i % 3 for i in range(40)], "price": range(40)})
    (tmp_path / "nan.csv").write_text("a,b,price\n" + "".join(
        f"{'nan' if np.isnan(a) else a},{b},{p}\n" for a, b, p in frame.itertuples(index=False)))
    parquet(frame, tmp_path / "nan.parquet")
    features = []
    for name in ("nan.csv", "nan.parquet"):
        loaded = read(tmp_path / name)
        a = loaded.schema.features[0]
        assert a.kind == NUMERIC and a.indicator and a.missing > 0, name
        assert np.isfinite(loaded.train.X).all() and np.isfinite(loaded.holdout.X).all()
        features.append(a)
    assert features[0] == features[1]


@pytest.mark.parametrize("option, column, kind", [
    ({"categorical": frozenset({"zip"})}, "zip", CATEGORICAL),
    ({"numeric": frozenset({"Order"})}, "Order", NUMERIC),
])
def test_overrides(tmp_path, option, column, kind):
    rows = "".join(f"{i + 1},{50010 + i % 4},{i % 9},{i * 2}\n" for i in range(60))
    path = write(tmp_path, "Order,zip,rooms,price\n" + rows)
    inferred = read(path)
    assert "Order" not in inferred.schema.names  # 1..n in file order: a row index
    assert kinds(inferred)["zip"] == NUMERIC
    assert kinds(read(path, options=EncodingOptions(**option)))[column] == kind


def test_drop_and_features(tmp_path):
    frame = houses_frame(100)
    frame.to_csv(tmp_path / "h.csv", index=False)
    dropped = read(tmp_path / "h.csv", options=EncodingOptions(drop=frozenset({"lot", "air"})))
    assert dropped.schema.names == ("sqft", "hood", "alley")
    picked = read(tmp_path / "h.csv", options=EncodingOptions(features=("air", "sqft")))
    assert picked.schema.names == ("air", "sqft")  # in the order asked for
    with pytest.raises(DataError, match="both categorical and numeric"):
        EncodingOptions(categorical=frozenset({"a"}), numeric=frozenset({"a"}))


def test_row_index_rules(tmp_path):
    n = 50
    base = {"x": np.arange(n) % 7, "price": (np.arange(n) * 7 % 13) + 1.0}
    cases = {
        "zero-based": ({"idx": np.arange(n), **base}, "idx"),
        "one-based": ({"idx": np.arange(1, n + 1), **base}, "idx"),
        "rownames": ({"rownames": np.random.default_rng(0).permutation(n) * 3, **base},
                     "rownames"),
    }
    for name, (columns, index) in cases.items():
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(columns).to_csv(path, index=False)
        assert index not in read(path).schema.names, name
    shuffled = {"order": np.random.default_rng(1).permutation(n), **base}
    pd.DataFrame(shuffled).to_csv(tmp_path / "kept.csv", index=False)
    assert "order" in read(tmp_path / "kept.csv").schema.names  # not in file order: a feature


def test_r_write_csv_row_names(tmp_path):
    # R's write.csv: the first header cell is "", row names quoted, NA for missing numbers.
    text = '"","sqft","hood","price"\n' + "".join(
        f'"{i + 1}",{"NA" if i % 10 == 0 else 1000 + i},"{"AB"[i % 2]}",{100 + i % 17}\n'
        for i in range(60))
    loaded = read(write(tmp_path, text))
    assert loaded.schema.names == ("sqft", "hood")
    assert loaded.schema.features[0].indicator  # NA read as empty


# ---------------------------------------------------------------------------------------------
# Errors name the column and the line
# ---------------------------------------------------------------------------------------------

NUMBERS = "".join(f"{i * 3 % 7},{i * 5 % 11},{i}\n" for i in range(1, 40))

ERROR_CASES = [
    # (file text, target, pattern, line)
    ("a,b,price\n" + NUMBERS[:20] + "7,abc,3\n" + NUMBERS[20:],
     r"^column 'b', line \d+: 'abc' is not a number$", None),
    ("a,b,price\n" + NUMBERS + "1,2,\n", r"^target column 'price', line 41: the value is empty$",
     41),
    ("a,b,price\n" + NUMBERS + "1,2,x\n", r"^target column 'price', line 41: 'x' is not a number$",
     41),
    ("a,b,price\n" + NUMBERS + "inf,2,1\n", r"^column 'a', line 41: inf is not a finite number$",
     41),
    ("a,b,price\n" + NUMBERS + "1,2,nan\n", r"^target column 'price', line 41: the value is "
     r"nan, not a finite number$", 41),
    ("a,b,price\n1,2,3\n4,5\n7,8,9\n", r"^line 3 has 2 fields, the header has 3$", 3),
    ("a,b,price\n" + NUMBERS + "4,5,6,7\n", r"^line 41 has 4 fields, the header has 3$", 41),
    ("a,b,price\n1,2,3\n", r"need at least 3 data rows", None),
    ("a,b,price\n", r"need at least 3 data rows", None),
    ("", r"data\.csv is empty", None),
    ("a,b\n1,2\n3,4\n", r"^target column 'price' is missing; the header has: a, b$", 1),
    ("a,price\n2,5\n1,5\n4,5\n3,5\n", r"target column 'price' is constant", None),
    ("price\n1\n2\n3\n", r"no feature columns are left", None),
]


@pytest.mark.parametrize("text, target_pattern, line", [(t, p, n) for t, p, n in ERROR_CASES],
                         ids=range(len(ERROR_CASES)))
@pytest.mark.parametrize("streamed", [False, True])
def test_errors(tmp_path, text, target_pattern, line, streamed):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=target_pattern) as info:
        if streamed:
            for _ in Stream(path, "price", DEFAULT, fraction=0.2, seed=0):
                pass
        else:
            read(path)
    if line is not None:
        assert info.value.line == line


def test_an_error_deep_in_a_large_file_names_the_exact_line(tmp_path, monkeypatch):
    monkeypatch.setattr(source_module, "BLOCK_BYTES", 50_000)  # many chunks when streamed
    X, y, _, _ = make_regression(30_000, 4, seed=3)
    lines = ["a,b,c,d,y"] + [",".join(f"{v:.7g}" for v in (*row, t))
                             for row, t in zip(X, y, strict=True)]
    lines[25_677] = lines[25_677].replace(lines[25_677].split(",")[2], "12.5x", 1)
    path = write(tmp_path, "\n".join(lines) + "\n")
    pattern = r"^column 'c', line 25678: '12.5x' is not a number$"
    with pytest.raises(DataError, match=pattern):
        read(path, "y")
    with pytest.raises(DataError, match=pattern):
        for _ in Stream(path, "y", DEFAULT, fraction=0.2, seed=0):
            pass


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data file .*nope.csv' does not exist"):
        read(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="does not exist"):
        should_stream(tmp_path / "nope.csv")


# ---------------------------------------------------------------------------------------------
# Whole, streamed, and the serving encoder: the same numbers
# ---------------------------------------------------------------------------------------------


def test_streaming_fits_the_same_schema_and_encodes_the_same_rows(tmp_path, monkeypatch):
    frame = houses_frame(3000, seed=4)
    frame.to_csv(tmp_path / "h.csv", index=False)
    whole = read(tmp_path / "h.csv")
    monkeypatch.setattr(source_module, "BLOCK_BYTES", 20_000)
    stream = Stream(tmp_path / "h.csv", "price", DEFAULT, fraction=0.2, seed=0)
    assert stream.fit_schema() == whole.schema
    chunks = list(stream)
    assert len(chunks) > 5
    X = np.concatenate([c.design.X for c in chunks])
    codes = np.concatenate([c.design.codes for c in chunks])
    mask = np.concatenate([c.holdout for c in chunks])
    order = np.concatenate([np.flatnonzero(~mask), np.flatnonzero(mask)])
    assert np.array_equal(X[order], np.concatenate([whole.train.X, whole.holdout.X]))
    assert np.array_equal(codes[order], np.concatenate([whole.train.codes, whole.holdout.codes]))
    assert stream.fingerprint == whole.fingerprint


def test_the_serving_encoder_gives_the_file_encoders_bits(tmp_path):
    frame = houses_frame(500, seed=2)
    frame.to_csv(tmp_path / "h.csv", index=False)
    loaded = read(tmp_path / "h.csv")
    schema = loaded.schema
    held = frame.iloc[loaded.holdout_rows]
    columns = [[None if pd.isna(v) else v for v in held[f.name].tolist()]
               for f in schema.features]
    encoded = schema.encode_columns(columns)
    assert np.array_equal(np.column_stack(encoded.values), loaded.holdout.X)
    assert np.array_equal(np.column_stack(encoded.codes), loaded.holdout.codes)
    assert encoded.imputed == {"lot": int(held.lot.isna().sum())}
    for i in range(20):
        row = schema.encode_row([c[i] for c in columns])
        assert row.values == loaded.holdout.X[i].tolist()
        assert row.codes == loaded.holdout.codes[i].tolist()


def test_fingerprint_hashes_the_file_bytes(tmp_path):
    path = write_houses_csv(tmp_path / "houses.csv", 300, seed=7)
    loaded = read(path)
    assert loaded.fingerprint.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.fingerprint.rows == 300 and loaded.fingerprint.file == "houses.csv"
    assert loaded.fingerprint.columns == [*HOUSE_FEATURES, "price"]


def test_streamed_json_lines_keep_every_record(tmp_path, monkeypatch):
    # JSON lines have no header: the first line is a record, in the first block like the rest
    # (an earlier reader took it for a header and dropped row 1 of a streamed file).
    frame = houses_frame(3000, seed=5)
    frame.to_json(tmp_path / "h.jsonl", orient="records", lines=True)
    whole = read(tmp_path / "h.jsonl")
    monkeypatch.setattr(source_module, "BLOCK_BYTES", 20_000)
    stream = Stream(tmp_path / "h.jsonl", "price", DEFAULT, fraction=0.2, seed=0)
    chunks = list(stream)
    assert len(chunks) > 5 and sum(len(c.design.X) for c in chunks) == 3000
    first = chunks[0]
    row0 = first.design.X[0] if not first.holdout[0] else None
    assert stream.fit_schema() == whole.schema
    mask = np.concatenate([c.holdout for c in chunks])
    X = np.concatenate([c.design.X for c in chunks])
    assert np.array_equal(X[~mask], whole.train.X) and np.array_equal(X[mask], whole.holdout.X)
    assert row0 is None or np.array_equal(row0, whole.train.X[0])


def test_a_csv_read_whole_in_small_blocks_is_polars_one_read(tmp_path, monkeypatch):
    # Quoted commas, quoted newlines and doubled quotes, cut across many 1 kB blocks.
    rows = ["sqft,hood,note,price"]
    rng = np.random.default_rng(3)
    for i in range(2000):
        note = ['plain', '"with, comma"', '"two\nlines"', '"say ""hi"""', ''][i % 5]
        rows.append(f"{rng.integers(500, 4000)},h{i % 7},{note},{rng.normal(3e5, 5e4):.2f}")
    path = write(tmp_path, "\n".join(rows) + "\n")
    monkeypatch.setattr(source_module, "READ_BLOCK_BYTES", 1_000)
    source = data.open_source(path)
    types = {"sqft": pl.Float64, "hood": pl.String, "note": pl.String, "price": pl.Float64}
    frame = source.read(types)
    assert frame.n_chunks() > 50
    assert frame.equals(pl.read_csv(path, schema_overrides=types))
    assert frame.height == 2000 and frame["note"][2] == "two\nlines" and \
        frame["note"][3] == 'say "hi"'


def test_should_stream_uses_the_threshold(tmp_path, monkeypatch):
    path = write_houses_csv(tmp_path / "houses.csv", 300, seed=7)
    assert not should_stream(path)
    monkeypatch.setattr(dataset_module, "STREAM_THRESHOLD_BYTES", 100)
    assert should_stream(path)


def test_streamed_batches_keep_memory_bounded_by_the_block(tmp_path, monkeypatch):
    monkeypatch.setattr(source_module, "BLOCK_BYTES", 30_000)
    path = write_houses_csv(tmp_path / "houses.csv", 20_000, seed=7)
    source = open_source(path)
    sizes = [f.height for f in source.batches({c: pl.Float64 for c in source.columns})]
    assert sum(sizes) == 20_000 and len(sizes) > 10
    assert max(sizes) * path.stat().st_size / 20_000 < 2 * 30_000


# ---------------------------------------------------------------------------------------------
# JSON rows
# ---------------------------------------------------------------------------------------------


def test_write_rows_jsonl_round_trip(tmp_path):
    rows = [{"sqft": 1500, "hood": "NAmes", "air": "Y", "lot": None, "price": 200000.5},
            {"sqft": 900, "hood": "OldTown", "air": "N", "lot": 7000, "price": 120000}]
    path = write_rows_jsonl(rows, tmp_path / "rows.jsonl")
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows


@pytest.mark.parametrize("rows, pattern", [
    ([], "non-empty list"),
    ([1], r"rows\[0\] is not an object"),
    ([{"a": 1}, {"b": 2}], r"rows\[1\]: key 'a' is missing"),
    ([{"a": 1}, {"a": 2, "b": 3}], r"rows\[1\]: key 'b' is not in rows\[0\]"),
    ([{"a": [1]}], r"rows\[0\], key 'a': .* is not a number, a string, a boolean or null"),
    ([{"a": float("inf")}], r"rows\[0\], key 'a': inf is not a finite number"),
])
def test_write_rows_jsonl_errors(tmp_path, rows, pattern):
    with pytest.raises(DataError, match=pattern):
        write_rows_jsonl(rows, tmp_path / "rows.jsonl")


def test_gzip_is_read_as_text(tmp_path):
    frame = houses_frame(60)
    with gzip.open(tmp_path / "h.csv.gz", "wt") as f:
        frame.to_csv(f, index=False)
    assert read(tmp_path / "h.csv.gz").fingerprint.rows == 60


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def test_make_houses_is_deterministic_by_seed():
    a = make_houses(500, seed=1)
    b = make_houses(500, seed=1)
    c = make_houses(500, seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert a[2] == list(HOUSE_FEATURES)


def test_make_houses_ranges_are_realistic():
    X, y, names = make_houses(20_000, seed=0)
    col = {name: X[:, j] for j, name in enumerate(names)}
    assert X.shape == (20_000, 4) and X.dtype == np.float64 and X.flags.c_contiguous
    assert 500 <= col["sqft"].min() and col["sqft"].max() <= 5000
    assert 1200 < np.median(col["sqft"]) < 2500
    assert set(np.unique(col["bedrooms"])) <= {1, 2, 3, 4, 5, 6}
    assert len(np.unique(col["bedrooms"])) >= 5
    assert set(np.unique(col["bathrooms"])) <= set(np.arange(1.0, 4.01, 0.5))
    assert set(np.unique(col["age_years"])) == set(range(101))
    # Bigger houses have more rooms.
    assert np.corrcoef(col["sqft"], col["bedrooms"])[0, 1] > 0.5
    assert np.corrcoef(col["sqft"], col["bathrooms"])[0, 1] > 0.5
    assert np.array_equal(y, np.round(y, 2))


def test_make_houses_price_is_the_stated_linear_model():
    X, y, names = make_houses(50_000, seed=0)
    A = np.column_stack([X, np.ones(len(X))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    for j, name in enumerate(names):
        assert coef[j] == pytest.approx(TRUE_COEF[name], rel=0.05)
    assert coef[-1] == pytest.approx(TRUE_INTERCEPT, abs=5_000)
    residual = y - A @ coef
    assert 20_000 < residual.std() < 30_000


def test_make_regression_recovers_its_coefficients():
    X, y, coef, intercept = make_regression(5000, 5, seed=4, noise=0.5)
    assert X.shape == (5000, 5) and y.shape == (5000,)
    assert X.std(axis=0).max() / X.std(axis=0).min() > 10  # badly scaled on purpose
    A = np.column_stack([X, np.ones(len(X))])
    fitted, *_ = np.linalg.lstsq(A, y, rcond=None)
    np.testing.assert_allclose(fitted[:-1], coef, rtol=0.02)
    assert fitted[-1] == pytest.approx(intercept, abs=0.5)
    again = make_regression(5000, 5, seed=4, noise=0.5)
    assert np.array_equal(again[0], X) and np.array_equal(again[1], y)


def test_write_houses_csv_format(tmp_path):
    path = write_houses_csv(tmp_path / "h.csv", 5, seed=0)
    lines = path.read_text().splitlines()
    assert lines[0] == "sqft,bedrooms,bathrooms,age_years,price"
    for line in lines[1:]:
        sqft, bedrooms, bathrooms, age, price = line.split(",")
        assert sqft.isdigit() and bedrooms.isdigit() and age.isdigit()
        assert bathrooms in {"1", "1.5", "2", "2.5", "3", "3.5", "4"}
        assert len(price.split(".")[1]) == 2


def test_bundled_sample_is_the_generator_output(tmp_path):
    fresh = write_houses_csv(tmp_path / "houses.csv", 1000, seed=0)
    assert SAMPLE.read_bytes() == fresh.read_bytes()


# ---------------------------------------------------------------------------------------------
# Holdout rule
# ---------------------------------------------------------------------------------------------


def test_holdout_mask_is_independent_of_chunking():
    whole = holdout_mask(0, 10_000, 0.2, seed=5)
    for size in (1, 3, 64, 999, 4096):
        parts = [holdout_mask(s, min(size, 10_000 - s), 0.2, seed=5)
                 for s in range(0, 10_000, size)]
        assert np.array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.9])
def test_holdout_mask_fraction_and_seed(fraction):
    mask = holdout_mask(0, 200_000, fraction, seed=0)
    assert mask.dtype == bool and mask.shape == (200_000,)
    assert abs(mask.mean() - fraction) < 0.005
    other = holdout_mask(0, 200_000, fraction, seed=1)
    assert not np.array_equal(mask, other)
    assert np.array_equal(mask, holdout_mask(0, 200_000, fraction, seed=0))
    # Not a pattern in the row index: neighbouring rows are independent.
    assert abs(np.mean(mask[1:] & mask[:-1]) - fraction**2) < 0.01


def test_holdout_mask_edges():
    assert not holdout_mask(0, 1000, 0.0, seed=0).any()
    assert holdout_mask(0, 1000, 1.0, seed=0).all()
    assert holdout_mask(10, 0, 0.2, seed=0).shape == (0,)
    with pytest.raises(ValueError, match=r"fraction must be between 0 and 1, got 1.5"):
        holdout_mask(0, 10, 1.5, seed=0)
    with pytest.raises(ValueError, match=r"start_row and n_rows must be >= 0"):
        holdout_mask(-1, 10, 0.2, seed=0)




# -- a model's levels in its file -----------------------------------------------------------


def test_levels_are_packed_in_the_model_state_and_come_back_exactly(tmp_path):
    import joblib

    from service.engine import LinearModel
    from service.engine.schema import Feature, Schema, pack_strings, unpack_strings
    from service.store import LocalStore
    from service.store.safe_pickle import loads

    levels = ("", "NA", "StoneBr", "a,b", "é 北京", "x" * 300, "end")
    assert unpack_strings(pack_strings(levels)) == levels
    assert unpack_strings(pack_strings(())) == ()
    assert unpack_strings(["a", "b"]) == ("a", "b")  # a format 2 state's plain list
    for text, ends in (("abc", [1, 5]), ("abc", [2, 1, 3]), ("abc", [-1, 3])):
        with pytest.raises(ValueError, match="offsets do not fit"):
            unpack_strings({"text": text, "ends": np.array(ends)})

    feature = Feature("hood", CATEGORICAL, levels=levels, counts=tuple(range(7, 0, -1)),
                      other_count=3, pooled=2, pooled_levels=("rare1", "rare2"))
    state = feature.to_state()
    assert isinstance(state["levels"], dict) and isinstance(state["counts"], np.ndarray)
    assert Feature.from_state(state) == feature
    assert Feature.from_state(state).code("é 北京") == 4

    model = LinearModel(schema=Schema((Feature("sqft", NUMERIC, mean=1.0), feature)),
                        target="price", coef=np.array([2.0]), intercept=1.0,
                        x_mean=np.array([1.0]), x_scale=np.array([1.0]), y_mean=0.0,
                        y_scale=1.0, coef_std=np.array([2.0]), intercept_std=1.0,
                        level_coef=(np.arange(8.0),))
    store = LocalStore(tmp_path / "models")
    version = store.save(model, {}, parent=None)
    loaded, _ = store.load(version)
    assert loaded.schema == model.schema
    assert loaded.predict_columns([[1.0, 2.0], ["é 北京", "never seen"]]).tolist() == \
        model.predict_columns([[1.0, 2.0], ["é 北京", "never seen"]]).tolist()

    # A format 2 file (levels as lists) still loads, to the same model.
    old = model.to_state()
    old["format"] = 2
    for f in old["schema"]["features"]:
        if f["kind"] == CATEGORICAL:
            f.update(levels=list(levels), counts=list(range(7, 0, -1)),
                     pooled_levels=["rare1", "rare2"])
    path = tmp_path / "old.joblib"
    joblib.dump(old, path)
    assert LinearModel.from_state(loads(path.read_bytes())).schema == model.schema
