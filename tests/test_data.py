"""service.data: generator, CSV reader (fast and careful paths), streaming, holdout rule, rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from service import data
from service.data import (
    HOUSE_FEATURES,
    TRUE_COEF,
    TRUE_INTERCEPT,
    holdout_mask,
    iter_chunks,
    iter_prediction_chunks,
    make_houses,
    make_regression,
    read_csv,
    should_stream,
    write_csv,
    write_houses_csv,
    write_rows_csv,
)
from service.data import reader as csv_reader
from service.errors import DataError

SAMPLE = Path(data.__file__).parents[1] / "sample_data" / "houses.csv"


def write(tmp_path: Path, text: str | bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


@pytest.fixture
def houses_csv(tmp_path: Path) -> Path:
    return write_houses_csv(tmp_path / "houses.csv", 3000, seed=7)


@pytest.fixture
def wide_csv(tmp_path: Path) -> Path:
    """About 1.7 MB: several parse pieces, so the thread pool and piece seams are exercised."""
    X, y, _, _ = make_regression(30_000, 6, seed=3)
    columns = {f"x{j}": X[:, j] for j in range(6)}
    columns["y"] = y
    return write_csv(tmp_path / "wide.csv", columns, default_format="%.7g")


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
# read_csv: values
# ---------------------------------------------------------------------------------------------


def test_round_trip_generator_csv_reader(houses_csv):
    X, y, names = make_houses(3000, seed=7)
    ds = read_csv(houses_csv, "price")
    assert np.array_equal(ds.X, X) and np.array_equal(ds.y, y)
    assert ds.feature_names == names and ds.target == "price"
    assert ds.X.dtype == np.float64 and ds.X.flags.c_contiguous and ds.y.shape == (3000,)


def test_fingerprint_hashes_the_file_bytes(houses_csv):
    fp = read_csv(houses_csv, "price").fingerprint
    assert fp.sha256 == hashlib.sha256(houses_csv.read_bytes()).hexdigest()
    assert fp.file == "houses.csv" and fp.rows == 3000
    assert fp.to_dict() == {"file": "houses.csv", "rows": 3000,
                            "columns": [*HOUSE_FEATURES, "price"], "sha256": fp.sha256}


def test_chosen_features_in_the_given_order_and_other_columns_ignored(tmp_path):
    path = write(tmp_path, "id,b,name,a,t\n1,2,x y,3,4\n5,6,\"q,r\",7,8\n9,10,,11,12\n")
    ds = read_csv(path, "t", features=["a", "b"])
    assert ds.feature_names == ["a", "b"]
    assert ds.X.tolist() == [[3, 2], [7, 6], [11, 10]] and ds.y.tolist() == [4, 8, 12]


NUMBER_TEXTS = [
    "0", "7", "-7", "12345678", "-1234567", "3.25", "-0.5", ".5", "-.5", "5.", "0.00000001",
    "1234567.8", "-123456.78", "99999999.99999999", "007", "1e3", "-2.5E-7", "+4.5",
    "0.1234567890123456789", "123456789012", "1.7976931348623157e308", " 42 ", "6.02e23",
    "90071992.54740993", "90071993.54740993", "-0", "-0.0", "-00.000", "-0e5", "-.0",
]


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as IEEE doubles bit for bit: -0.0 is not 0.0 here."""
    return a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a, np.float64).view(np.uint64),
        np.ascontiguousarray(b, np.float64).view(np.uint64))


@pytest.mark.parametrize("rows", [1, 3000])
def test_every_number_form_reads_exactly_like_float(tmp_path, rows):
    rng = np.random.default_rng(0)
    texts = [NUMBER_TEXTS[i] for i in rng.integers(0, len(NUMBER_TEXTS), (rows * 8,))]
    generated = [repr(float(v)) for v in rng.normal(0, 1e3, rows)]
    lines = ["a,b,c,d,e,f,g,h,y"]
    for r in range(rows):
        lines.append(",".join(texts[r * 8:r * 8 + 8] + [generated[r]]))
    lines.append("1,2,3,4,5,6,7,8,-1")  # y must not be constant when rows == 1
    ds = read_csv(write(tmp_path, "\n".join(lines) + "\n"), "y")
    expected = np.array([[float(t) for t in line.split(",")] for line in lines[1:]])
    assert same_bits(ds.X, expected[:, :8]) and same_bits(ds.y, expected[:, 8])


def test_short_decimals_are_bit_exact_on_the_fast_path(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, 40_000) * 10.0 ** rng.integers(-3, 7, 40_000)
    texts = [f"{v:.{int(p)}f}" for v, p in zip(values, rng.integers(0, 9, 40_000), strict=True)]
    body = "\n".join(",".join(texts[i:i + 4]) for i in range(0, len(texts), 4))
    ds = read_csv(write(tmp_path, "a,b,c,y\n" + body + "\n"), "y")
    expected = np.array([float(t) for t in texts]).reshape(-1, 4)
    assert same_bits(ds.X, expected[:, :3]) and same_bits(ds.y, expected[:, 3])


@pytest.mark.parametrize("block_bytes", [None, 3000, 300_000])
def test_threaded_read_of_a_larger_file_matches_the_written_values(wide_csv, monkeypatch,
                                                                    block_bytes):
    if block_bytes:  # blocks smaller than a line, and blocks that split the file unevenly
        monkeypatch.setattr(csv_reader, "_BLOCK_BYTES", block_bytes)
    ds = read_csv(wide_csv, "y")
    lines = wide_csv.read_text().splitlines()[1:]
    expected = np.array([[float(t) for t in line.split(",")] for line in lines])
    assert np.array_equal(ds.X, expected[:, :6]) and np.array_equal(ds.y, expected[:, 6])


@pytest.mark.parametrize("true_word,false_word", [
    ("yes", "no"), ("YES", "NO"), ("Yes", "No"), ("true", "false"), ("TRUE", "False"),
    ("y", "n"), ("Y", "N"), (" yes ", " no"), ("tRuE", "fAlSe"),
])
def test_yes_no_columns_become_one_and_zero(tmp_path, true_word, false_word):
    rows = [f"{true_word if i % 3 else false_word},{i},{i * 2}" for i in range(10)]
    ds = read_csv(write(tmp_path, "garage,sqft,price\n" + "\n".join(rows) + "\n"), "price")
    assert ds.X[:, 0].tolist() == [0.0 if i % 3 == 0 else 1.0 for i in range(10)]
    assert ds.X[:, 1].tolist() == list(range(10))


def test_yes_no_column_in_a_larger_file(tmp_path):
    words = ["yes", "No", "TRUE", "false", "y", "N"]
    rows = [f"{i},{words[i % 6]},{i % 7}" for i in range(60_000)]
    ds = read_csv(write(tmp_path, "a,flag,y\n" + "\n".join(rows) + "\n"), "y")
    assert ds.X[:, 1].tolist() == [1.0 if i % 6 in (0, 2, 4) else 0.0 for i in range(60_000)]


def test_line_endings_bom_quotes_and_blank_lines(tmp_path):
    plain = read_csv(write(tmp_path, "a,b,y\n1,2,3\n4,5,6\n7,8,9\n", "plain.csv"), "y")
    variants = [
        "a,b,y\r\n1,2,3\r\n4,5,6\r\n7,8,9\r\n",
        "a,b,y\n1,2,3\n4,5,6\n7,8,9",
        "\ufeffa,b,y\n1,2,3\n4,5,6\n7,8,9\n",
        '"a","b","y"\n1,2,3\n4,5,6\n7,8,9\n',
        'a,b,y\n"1",2,3\n4,5,6\n7,8,"9"\n',
        "a,b,y\n1,2,3\n\n4,5,6\n   \n7,8,9\n\n\n",
        "a, b ,y\n1, 2,3\n4 ,5,6\n7,8,9 \n",
    ]
    for i, text in enumerate(variants):
        ds = read_csv(write(tmp_path, text, f"v{i}.csv"), "y")
        assert np.array_equal(ds.X, plain.X) and np.array_equal(ds.y, plain.y), text
        assert ds.feature_names == ["a", "b"]


# ---------------------------------------------------------------------------------------------
# read_csv: errors name the column and the line
# ---------------------------------------------------------------------------------------------

ERROR_CASES = [
    # (file text, target, features, message pattern, column, line)
    ("sqft,price\n1,2\n3,4\n5,6\n7,8\n9,10\nabc,12\n", "price", None,
     r"^column 'sqft', line 7: 'abc' is not a number$", "sqft", 7),
    ("a,b,price\n1,2,3\n4,,6\n7,8,9\n", "price", None,
     r"^column 'b', line 3: the value is empty$", "b", 3),
    ("a,price\n1,2\n3,\n", "price", None, r"^column 'price', line 3: the value is empty$",
     "price", 3),
    ("a,price\n1,2\nnan,3\n", "price", None, r"column 'a', line 3: 'nan' is not a finite", "a", 3),
    ("a,price\n1,2\n2,3\n-inf,4\n", "price", None, r"column 'a', line 4: '-inf' is not a finite",
     "a", 4),
    ("a,price\n1,2\n2,Infinity\n", "price", None,
     r"column 'price', line 3: 'Infinity' is not a finite", "price", 3),
    ("a,price\n1,2\n2,NaN\n", "price", None, r"column 'price', line 3: 'NaN' is not a finite",
     "price", 3),
    ("a,price\n1,2\n1e999,3\n", "price", None, r"column 'a', line 3: '1e999' is not a finite",
     "a", 3),
    ("a,price\n1,2\n1_000,3\n", "price", None, r"column 'a', line 3: '1_000' is not a number",
     "a", 3),
    ("a,price\n1,2\n1.2.3,3\n", "price", None, r"column 'a', line 3: '1.2.3' is not a number",
     "a", 3),
    ("a,price\n1,2\n--1,3\n", "price", None, r"column 'a', line 3: '--1' is not a number", "a", 3),
    ("a,price\n1,2\n-,3\n", "price", None, r"column 'a', line 3: '-' is not a number", "a", 3),
    ("a,price\n1,2\n.,3\n", "price", None, r"column 'a', line 3: '.' is not a number", "a", 3),
    ("a,price\n1,2\n0x10,3\n", "price", None, r"column 'a', line 3: '0x10' is not a number",
     "a", 3),
    ("a,price\n1,2\nyes,3\n", "price", None,
     r"column 'a', line 3: 'yes' is not a number \(the column's first value is a number\)",
     "a", 3),
    ("a,price\nyes,2\nmaybe,3\n", "price", None,
     r"column 'a', line 3: 'maybe' is not yes/no, true/false or y/n", "a", 3),
    ("a,price\nno,2\n1,3\n", "price", None, r"column 'a', line 3: '1' is not yes/no", "a", 3),
    ("sqft,bedrooms\n1,2\n3,4\n", "price", None,
     r"^target column 'price' is missing; the header has: sqft, bedrooms$", "price", 1),
    ("sqft,price\n1,2\n3,4\n", "price", ["sqft", "rooms"],
     r"^feature column 'rooms' is missing; the header has: sqft, price$", "rooms", 1),
    ("sqft,price\n1,2\n3,4\n", "price", ["sqft", "price"],
     r"^target column 'price' is also listed as a feature$", "price", None),
    ("a,b,price\n1,2,3\n4,5,6\n", "price", ["a", "a"], r"^feature 'a' is listed twice$", "a", None),
    ("a,a,price\n1,2,3\n4,5,6\n", "price", None,
     r"^column 'a' appears twice in the header \(line 1\)$", "a", 1),
    ("a,,price\n1,2,3\n4,5,6\n", "price", None, r"header column 2 has no name \(line 1\)", None, 1),
    ("a,b,price\n1,2,3\n4,5\n7,8,9\n", "price", None, r"^line 3 has 2 fields, the header has 3$",
     None, 3),
    ("a,b,price\n1,2,3\n4,5,6,7\n", "price", None, r"^line 3 has 4 fields, the header has 3$",
     None, 3),
    ("a,b,price\n1,2,3,4\n4,5,6\n", "price", None, r"^line 2 has 4 fields, the header has 3$",
     None, 2),
    ("a,price\n1,2\n", "price", None, r"has 1 data row; at least 2 are needed", None, 2),
    ("a,price\n", "price", None, r"has 0 data rows; at least 2 are needed", None, 1),
    ("a,price\n\n\n", "price", None, r"has 0 data rows; at least 2 are needed", None, 1),
    ("a,price\n1,5\n2,5\n3,5\n", "price", None,
     r"^target column 'price' is constant \(every row is 5\); there is nothing to learn$",
     "price", None),
    ("price\n1\n2\n", "price", None, r"no feature columns besides the target 'price'", "price", 1),
    ("", "price", None, r"data\.csv' is empty$", None, None),
    (b"a,price\n1,2\n\xff\xfe,3\n", "price", None, r"data\.csv' is not UTF-8 text \(line 3\)",
     None, 3),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "price", None,
     r"is not UTF-8 text \(line 1\)", None, 1),
]


@pytest.mark.parametrize("text,target,features,pattern,column,line", ERROR_CASES)
def test_read_csv_errors(tmp_path, text, target, features, pattern, column, line):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        read_csv(path, target, features)
    assert info.value.column == column
    assert info.value.line == line


@pytest.mark.parametrize("text,target,features,pattern,column,line",
                         [c for c in ERROR_CASES if c[5] not in (None, 1) or "empty$" in c[3]])
def test_streaming_gives_the_same_errors(tmp_path, text, target, features, pattern, column, line):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        for _ in iter_chunks(path, target, features, chunk_rows=2):
            pass
    assert info.value.line == line


def test_errors_deep_in_a_large_file_name_the_exact_line(wide_csv, tmp_path):
    lines = wide_csv.read_text().splitlines()
    for line_no, (bad, expect) in {
        25_678: ("12.5x", r"column 'x3', line 25678: '12.5x' is not a number"),
        20_001: ("", r"column 'x3', line 20001: the value is empty"),
        30_001: ("nan", r"column 'x3', line 30001: 'nan' is not a finite number"),
    }.items():
        assert line_no <= len(lines)
        changed = list(lines)
        fields = changed[line_no - 1].split(",")
        fields[3] = bad
        changed[line_no - 1] = ",".join(fields)
        path = write(tmp_path, "\n".join(changed) + "\n", "bad.csv")
        with pytest.raises(DataError, match=expect) as info:
            read_csv(path, "y")
        assert (info.value.column, info.value.line) == ("x3", line_no)
    changed = list(lines)
    changed[12_345 - 1] += ",1"
    path = write(tmp_path, "\n".join(changed) + "\n", "bad.csv")
    with pytest.raises(DataError, match=r"^line 12345 has 8 fields, the header has 7$"):
        read_csv(path, "y")


def test_the_first_error_in_the_file_is_reported(wide_csv, tmp_path):
    lines = wide_csv.read_text().splitlines()
    lines[25_000] = "oops," + lines[25_000].split(",", 1)[1]
    lines[3_000] = lines[3_000].rsplit(",", 1)[0] + ",bad"
    path = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"column 'y', line 3001: 'bad' is not a number"):
        read_csv(path, "y")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"does not exist") as info:
        read_csv(tmp_path / "nope.csv", "price")
    assert "nope.csv" in str(info.value)
    with pytest.raises(DataError, match=r"is a directory"):
        read_csv(tmp_path, "price")
    with pytest.raises(DataError, match=r"does not exist"):
        iter_chunks(tmp_path / "nope.csv", "price")
    with pytest.raises(DataError, match=r"does not exist"):
        should_stream(tmp_path / "nope.csv")


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, "a,price\n1,2\n\n3,4\n\n5,x\n")
    with pytest.raises(DataError, match=r"column 'price', line 6: 'x' is not a number"):
        read_csv(path, "price")


# ---------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000, 2999, 3000, 4096, 65536])
def test_chunks_equal_the_whole_file(houses_csv, chunk_rows):
    whole = read_csv(houses_csv, "price")
    reader = iter_chunks(houses_csv, "price", chunk_rows=chunk_rows)
    assert reader.feature_names == whole.feature_names and reader.target == "price"
    assert reader.fingerprint is None
    chunks = list(reader)
    assert all(0 < len(c.y) <= chunk_rows and c.X.shape == (len(c.y), 4) for c in chunks)
    assert [c.start_row for c in chunks] == list(range(0, 3000, chunk_rows))
    assert np.array_equal(np.concatenate([c.X for c in chunks]), whole.X)
    assert np.array_equal(np.concatenate([c.y for c in chunks]), whole.y)
    assert reader.fingerprint == whole.fingerprint


@pytest.mark.parametrize("block_bytes", [None, 20_000, 100_000])
def test_chunks_of_a_larger_file_and_a_second_pass(wide_csv, monkeypatch, block_bytes):
    if block_bytes:
        monkeypatch.setattr(csv_reader, "_BLOCK_BYTES", block_bytes)
    whole = read_csv(wide_csv, "y", features=["x5", "x0"])
    reader = iter_chunks(wide_csv, "y", features=["x5", "x0"], chunk_rows=10_000)
    for _ in range(2):  # the trainer passes once for the scaler, then once per epoch
        chunks = list(reader)
        assert [len(c.y) for c in chunks] == [10_000, 10_000, 10_000]
        assert np.array_equal(np.concatenate([c.X for c in chunks]), whole.X)
    assert reader.fingerprint == whole.fingerprint


def test_chunks_with_blank_lines_crlf_and_no_final_newline(tmp_path):
    text = "a,b,y\r\n1,2,3\r\n\r\n4,5,6\r\n7,8,9\r\n\r\n10,11,12"
    whole = read_csv(write(tmp_path, text), "y")
    chunks = list(iter_chunks(tmp_path / "data.csv", "y", chunk_rows=2))
    assert np.array_equal(np.concatenate([c.X for c in chunks]), whole.X)
    starts = [c.start_row for c in chunks]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(len(c.y) for c in chunks) == 4


def test_streamed_error_after_good_chunks_has_the_file_line(houses_csv, tmp_path, monkeypatch):
    monkeypatch.setattr(csv_reader, "_BLOCK_BYTES", 16 * 1024)  # errors surface block by block
    lines = houses_csv.read_text().splitlines()
    lines[2500] = lines[2500].replace(",", ",x", 1)
    path = write(tmp_path, "\n".join(lines) + "\n")
    reader = iter_chunks(path, "price", chunk_rows=1000)
    seen = []
    with pytest.raises(DataError, match=r"column 'bedrooms', line 2501: 'x\d' is not a number"):
        for chunk in reader:
            seen.append(chunk.start_row)
    assert seen == [0, 1000]


def test_should_stream_uses_the_threshold(houses_csv, monkeypatch):
    assert not should_stream(houses_csv)
    monkeypatch.setattr(csv_reader, "STREAM_THRESHOLD_BYTES", 1000)
    assert should_stream(houses_csv)


def test_chunk_rows_must_be_positive(houses_csv):
    with pytest.raises(ValueError, match="chunk_rows must be >= 1, got 0"):
        iter_chunks(houses_csv, "price", chunk_rows=0)


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


# ---------------------------------------------------------------------------------------------
# Batch scoring input
# ---------------------------------------------------------------------------------------------


def test_prediction_chunks_keep_lines_and_pick_features(tmp_path):
    text = "id,sqft,name,price,age_years\n1,1500,a,3,10\n2,2500,\"b, c\",4,20\n\n3,900,d,5,30\n"
    path = write(tmp_path, text)
    chunks = list(iter_prediction_chunks(path, ["age_years", "sqft"], chunk_rows=2))
    header = {c[0] for c in chunks}
    assert header == {"id,sqft,name,price,age_years"}
    lines = [line for c in chunks for line in c[1]]
    X = np.concatenate([c[2] for c in chunks])
    assert lines == ["1,1500,a,3,10", '2,2500,"b, c",4,20', "3,900,d,5,30"]
    assert X.tolist() == [[10, 1500], [20, 2500], [30, 900]]
    assert all(len(c[1]) == len(c[2]) for c in chunks)


def test_prediction_chunks_of_the_sample_without_target(houses_csv):
    whole = read_csv(houses_csv, "price")
    chunks = list(iter_prediction_chunks(houses_csv, list(HOUSE_FEATURES), chunk_rows=700))
    assert np.array_equal(np.concatenate([c[2] for c in chunks]), whole.X)
    assert sum(len(c[1]) for c in chunks) == 3000
    assert chunks[0][1][0] == houses_csv.read_text().splitlines()[1]


def test_prediction_chunks_errors(tmp_path):
    path = write(tmp_path, "sqft,price\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"feature column 'age_years' is missing; the header has"):
        list(iter_prediction_chunks(path, ["sqft", "age_years"]))
    path = write(tmp_path, "sqft,price\n1,2\nbig,4\n")
    with pytest.raises(DataError, match=r"column 'sqft', line 3: 'big' is not a number"):
        list(iter_prediction_chunks(path, ["sqft"]))
    # A bad value in an ignored column is not an error.
    path = write(tmp_path, "sqft,price\n1,2\n3,oops\n")
    assert len(list(iter_prediction_chunks(path, ["sqft"]))[0][1]) == 2


# ---------------------------------------------------------------------------------------------
# JSON rows
# ---------------------------------------------------------------------------------------------


def test_write_rows_csv_round_trip(tmp_path):
    rows = [
        {"sqft": 1500, "garage": True, "pool": "yes", "bathrooms": 1.5, "price": 300000.25},
        {"sqft": 2100.0, "garage": False, "pool": "No", "bathrooms": "2", "price": 420000},
        {"sqft": 0.1 + 0.2, "garage": True, "pool": "n", "bathrooms": 3, "price": 1e6},
    ]
    path = write_rows_csv(rows, tmp_path / "rows.csv")
    assert path.read_text().splitlines()[0] == "sqft,garage,pool,bathrooms,price"
    ds = read_csv(path, "price")
    assert ds.X.tolist() == [[1500, 1, 1, 1.5], [2100, 0, 0, 2], [0.1 + 0.2, 1, 0, 3]]
    assert ds.y.tolist() == [300000.25, 420000, 1e6]


@pytest.mark.parametrize("rows,pattern,column", [
    ([], r"rows must be a non-empty list of objects", None),
    ([{"a": 1}, {"a": 2}, {"b": 3}], r"^rows\[2\]: key 'a' is missing$", "a"),
    ([{"a": 1}, {"a": 2, "b": 3}], r"^rows\[1\]: key 'b' is not in rows\[0\]$", "b"),
    ([{"a": 1}, {"a": "abc"}], r"^rows\[1\], key 'a': 'abc' is not a number, a bool or yes/no$",
     "a"),
    ([{"a": 1}, {"a": None}], r"rows\[1\], key 'a': None is not a number", "a"),
    ([{"a": float("nan")}], r"rows\[0\], key 'a': nan is not a finite number", "a"),
    ([{"a": 1}, [1]], r"rows\[1\] is not an object", None),
    ([{"a,b": 1}], r"rows\[0\]: 'a,b' is not a usable column name", "a,b"),
])
def test_write_rows_csv_errors(tmp_path, rows, pattern, column):
    with pytest.raises(DataError, match=pattern) as info:
        write_rows_csv(rows, tmp_path / "rows.csv")
    assert info.value.column == column


def test_plain_numbers_never_need_the_careful_pass(houses_csv, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the careful pass ran")

    monkeypatch.setattr(csv_reader, "_parse_slow", refuse)
    monkeypatch.setattr(csv_reader, "_convert", refuse)
    monkeypatch.setattr(csv_reader, "_parse_long", refuse)
    monkeypatch.setattr(csv_reader, "_parse_other", refuse)
    assert read_csv(houses_csv, "price").fingerprint.rows == 3000
    X, y, _, _ = make_regression(30_000, 6, seed=3)
    columns = {f"x{j}": X[:, j] for j in range(6)}
    columns["y"] = y
    path = write_csv(houses_csv.parent / "plain.csv", columns, default_format="%.4f")
    assert read_csv(path, "y").fingerprint.rows == 30_000


def test_numpy_savetxt_default_format_and_its_errors(tmp_path):
    X, y, _, _ = make_regression(5000, 3, seed=2)
    matrix = np.column_stack([X, y])
    path = tmp_path / "savetxt.csv"
    np.savetxt(path, matrix, delimiter=",", header="a,b,c,y", comments="")  # '%.18e'
    ds = read_csv(path, "y")
    assert np.array_equal(ds.X, X) and np.array_equal(ds.y, y)
    lines = path.read_text().splitlines()
    for bad, pattern in [("nan", r"'nan' is not a finite number"),
                         ("1.5e", r"'1.5e' is not a number")]:
        changed = list(lines)
        changed[4321] = changed[4321].rsplit(",", 1)[0] + "," + bad
        write(tmp_path, "\n".join(changed) + "\n", "bad.csv")
        with pytest.raises(DataError, match=rf"column 'y', line 4322: {pattern}"):
            read_csv(tmp_path / "bad.csv", "y")
    changed = list(lines)
    changed[1234] += ",7"
    write(tmp_path, "\n".join(changed) + "\n", "bad.csv")
    with pytest.raises(DataError, match=r"^line 1235 has 5 fields, the header has 4$"):
        read_csv(tmp_path / "bad.csv", "y", features=["a"])
