"""Datasets of several files: a directory, a glob or a list, on disk or in S3 (moto on loopback).

The same rows read as one file or split over several files give the same holdout rows, schema,
design and model; errors name the file as well as the line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from service.cli import main
from service.data import (
    EncodingOptions,
    Stream,
    dataset_name,
    load,
    make_houses,
    open_sources,
    resolve,
    should_stream,
)
from service.errors import DataError
from service.store import LocalStore
from service.training import train

DEFAULT = EncodingOptions()


def houses_frame(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    X, y, names = make_houses(n, seed=seed)
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({name: X[:, j] for j, name in enumerate(names)})
    return frame.with_columns(
        pl.Series("zone", rng.choice(["north", "south", "east", "west"], n)),
        pl.Series("price", y),
    )


def split_write(frame: pl.DataFrame, folder: Path, parts: int, fmt: str = "csv",
                sizes: list[int] | None = None) -> list[Path]:
    """``frame`` in ``parts`` consecutive files ``part-0.<fmt>`` ... under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = np.cumsum([0] + (sizes or [frame.height // parts] * (parts - 1)))
    bounds = [*cuts.tolist(), frame.height] if sizes is None else [*cuts.tolist(), frame.height]
    paths = []
    for i in range(parts):
        piece = frame.slice(bounds[i], bounds[i + 1] - bounds[i])
        path = folder / f"part-{i}.{fmt}"
        if fmt == "csv":
            piece.write_csv(path)
        else:
            piece.write_parquet(path)
        paths.append(path)
    return paths


def read(spec, **kw):
    return load(spec, "price", DEFAULT, fraction=0.2, seed=0, **kw)


def same_loaded(a, b) -> None:
    assert a.schema == b.schema
    np.testing.assert_array_equal(a.holdout_rows, b.holdout_rows)
    for x, y in ((a.train, b.train), (a.holdout, b.holdout)):
        np.testing.assert_array_equal(x.X, y.X)
        np.testing.assert_array_equal(x.codes, y.codes)
        np.testing.assert_array_equal(x.y, y.y)
    assert a.holdout_frame.equals(b.holdout_frame)
    assert a.fingerprint.rows == b.fingerprint.rows


# -- resolving ---------------------------------------------------------------------------------


def test_a_directory_a_glob_and_a_list_name_the_same_files_in_order(tmp_path: Path) -> None:
    paths = split_write(houses_frame(300), tmp_path / "houses", 3)
    (tmp_path / "houses" / "_SUCCESS").write_text("")
    (tmp_path / "houses" / ".part-0.csv.crc").write_text("x")
    (tmp_path / "houses" / "README.md").write_text("not data")
    expected = [str(p) for p in paths]
    assert [f.url for f in resolve(tmp_path / "houses")] == expected
    assert [f.url for f in resolve(str(tmp_path / "houses" / "part-*.csv"))] == expected
    assert [f.url for f in resolve([str(p) for p in reversed(paths)])] == expected[::-1]
    assert [f.label for f in resolve(tmp_path / "houses")] == [p.name for p in paths]
    assert dataset_name(str(tmp_path / "houses")) == str(tmp_path / "houses")
    assert dataset_name(str(paths[0])) == "part-0.csv"
    assert dataset_name([str(p) for p in paths] * 2) == \
        "part-0.csv, part-1.csv, part-2.csv and 3 more"


def test_hive_style_folders_are_read_at_any_depth_and_labelled_by_their_path(
        tmp_path: Path) -> None:
    frame = houses_frame(200)
    for year, piece in ((2023, frame.head(100)), (2024, frame.tail(100))):
        folder = tmp_path / "sales" / f"year={year}"
        folder.mkdir(parents=True)
        piece.write_parquet(folder / "part-0.parquet")
    files = resolve(tmp_path / "sales")
    assert [f.label for f in files] == ["year=2023/part-0.parquet", "year=2024/part-0.parquet"]
    assert [f.url for f in resolve(str(tmp_path / "sales" / "**" / "*.parquet"))] == \
        [f.url for f in files]


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.csv", "data file '{p}' does not exist"),
    (lambda d: d / "nothing-*.csv", "no data files match '{p}'"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "directory '{p}' holds no data files"),
])
def test_nothing_to_read_is_an_error_naming_what_was_looked_for(tmp_path: Path, make,
                                                                 message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(DataError, match=message.format(p=path).replace("*", r"\*")):
        resolve(str(path))


def test_a_dataset_of_two_formats_is_refused(tmp_path: Path) -> None:
    frame = houses_frame(100)
    frame.write_csv(tmp_path / "a.csv")
    frame.write_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"mixes formats: a.csv \(csv\), b.parquet \(parquet\)"):
        read(tmp_path)
    assert len(resolve(tmp_path, "parquet")) == 1  # --format picks one of them


# -- the same rows, one file or several --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_rows_split_over_files_load_like_one_file(tmp_path: Path, fmt: str) -> None:
    frame = houses_frame(3000)
    whole = tmp_path / f"whole.{fmt}"
    frame.write_csv(whole) if fmt == "csv" else frame.write_parquet(whole)
    split_write(frame, tmp_path / "parts", 3, fmt, sizes=[1000, 700])
    one, several = read(whole), read(tmp_path / "parts")
    same_loaded(one, several)
    assert several.fingerprint.files == 3
    assert several.fingerprint.file == str(tmp_path / "parts")
    assert several.fingerprint.to_dict()["files"] == 3
    assert "files" not in one.fingerprint.to_dict()  # a single file's provenance is unchanged
    # Training and held-out rows are two Fortran-order designs, as for one file (the fit's
    # column access), each written once.
    assert several.train.X.flags.f_contiguous and several.holdout.X.flags.f_contiguous


def test_the_holdout_rows_as_read_are_kept_only_when_asked_for(tmp_path: Path) -> None:
    """A run with no active model to score keeps no copy of the holdout rows as read; the
    designs are the same either way, and the kept frame is exactly the held-out rows."""
    frame = houses_frame(3000)
    path = tmp_path / "houses.csv"
    frame.write_csv(path)
    kept, bare = read(path), read(path, holdout_frame=False)
    assert bare.holdout_frame is None
    np.testing.assert_array_equal(kept.holdout.X, bare.holdout.X)
    np.testing.assert_array_equal(kept.train.X, bare.train.X)
    assert kept.holdout_frame.equals(frame[kept.holdout_rows.tolist()])


def test_the_dataset_digest_covers_every_file(tmp_path: Path) -> None:
    paths = split_write(houses_frame(300), tmp_path / "d", 2)
    listing = "".join(f"{p.name}\t{p.stat().st_size}\t{hashlib.sha256(p.read_bytes()).hexdigest()}"
                      "\n" for p in paths)
    assert read(tmp_path / "d").fingerprint.sha256 == hashlib.sha256(listing.encode()).hexdigest()
    before = read(tmp_path / "d").fingerprint.sha256
    paths[1].write_text(paths[1].read_text().replace("north", "north", 1) + "")
    pl.read_csv(paths[1]).head(149).write_csv(paths[1])
    assert read(tmp_path / "d").fingerprint.sha256 != before


def test_a_streamed_dataset_holds_out_and_fits_the_same_as_one_read_whole(
        tmp_path: Path) -> None:
    frame = houses_frame(3000)
    split_write(frame, tmp_path / "parts", 4)
    whole = read(tmp_path / "parts")
    stream = Stream(tmp_path / "parts", "price", DEFAULT, fraction=0.2, seed=0, chunk_rows=500)
    assert stream.fit_schema() == whole.schema
    held = np.concatenate([c.start_row + np.flatnonzero(c.holdout) for c in stream])
    np.testing.assert_array_equal(held, whole.holdout_rows)
    assert stream.fingerprint == whole.fingerprint
    assert should_stream(tmp_path / "parts") is False


def test_training_on_a_folder_gives_the_model_of_the_concatenated_file(tmp_path: Path) -> None:
    frame = houses_frame(3000)
    frame.write_csv(tmp_path / "whole.csv")
    split_write(frame, tmp_path / "parts", 3)
    one = train(LocalStore(tmp_path / "a"), tmp_path / "whole.csv", target="price")
    several = train(LocalStore(tmp_path / "b"), tmp_path / "parts", target="price")
    assert several.coefficients == one.coefficients
    assert several.metrics == one.metrics
    manifest = LocalStore(tmp_path / "b").get(several.version)
    assert manifest["data"]["files"] == 3 and manifest["data"]["source"] == str(tmp_path / "parts")
    streamed = train(LocalStore(tmp_path / "c"), [str(p) for p in sorted(
        (tmp_path / "parts").iterdir())], target="price", stream=True)
    assert streamed.metrics["holdout"]["rows"] == one.metrics["holdout"]["rows"]
    assert streamed.metrics["holdout"]["rmse"] == pytest.approx(
        one.metrics["holdout"]["rmse"], rel=1e-2)


def test_the_cli_takes_a_folder_or_several_files(tmp_path: Path, capsys, clean_env) -> None:
    paths = split_write(houses_frame(1000), tmp_path / "parts", 2)
    models = str(tmp_path / "models")
    assert main(["train", "--data", str(tmp_path / "parts"), "--target", "price",
                 "--model-dir", models, "--json"]) == 0
    assert main(["train", "--data", *map(str, paths), "--target", "price",
                 "--model-dir", models, "--json"]) == 0
    assert main(["train", "--data", str(tmp_path / "nope"), "--target", "price",
                 "--model-dir", models]) == 2
    err = capsys.readouterr().err
    assert err.strip().endswith(f"data file '{tmp_path / 'nope'}' does not exist")


# -- errors name the file ----------------------------------------------------------------------


def test_a_bad_value_in_a_later_file_is_named_by_file_and_line(tmp_path: Path) -> None:
    paths = split_write(houses_frame(300), tmp_path / "d", 3)
    lines = paths[1].read_text().splitlines()
    cells = lines[6].split(",")
    cells[0] = "abc"
    lines[6] = ",".join(cells)
    paths[1].write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"^part-1.csv: column 'sqft', line 7: 'abc' is not a "
                                        "number$"):
        read(tmp_path / "d")
    with pytest.raises(DataError, match=r"^part-1.csv: column 'sqft', line 7: 'abc'"):
        for _ in Stream(tmp_path / "d", "price", DEFAULT, fraction=0.2, seed=0):
            pass


def test_a_later_file_without_a_column_is_named(tmp_path: Path) -> None:
    frame = houses_frame(300)
    (tmp_path / "d").mkdir()
    frame.head(150).write_csv(tmp_path / "d" / "a.csv")
    frame.tail(150).drop("zone").write_csv(tmp_path / "d" / "b.csv")
    with pytest.raises(DataError, match=r"^b.csv: column 'zone' is missing \(the dataset's "
                                        r"first file, a.csv, has it\)"):
        read(tmp_path / "d")
    # In a different order, the same columns are the same data.
    frame.tail(150).select(reversed(frame.columns)).write_csv(tmp_path / "d" / "b.csv")
    assert read(tmp_path / "d").fingerprint.rows == 300


def test_a_text_column_only_a_later_file_shows_is_located_there(tmp_path: Path) -> None:
    frame = houses_frame(300).with_columns(pl.col("bedrooms").cast(pl.String))
    values = frame["bedrooms"].to_list()
    values[250] = "many"
    frame = frame.with_columns(pl.Series("bedrooms", values))
    split_write(frame, tmp_path / "d", 2)
    with pytest.raises(DataError, match=r"^part-1.csv: column 'bedrooms', line 102: 'many' is "
                                        "not a number"):
        read(tmp_path / "d")


# -- S3 ----------------------------------------------------------------------------------------


def upload(s3, key: str, body: bytes) -> None:
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=body)


def csv_bytes(frame: pl.DataFrame, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    frame.write_csv(buf)
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def test_s3_prefixes_globs_and_objects_resolve_like_folders(s3, tmp_path: Path) -> None:
    frame = houses_frame(300)
    for i in range(3):
        upload(s3, f"houses/part-{i}.parquet", parquet_bytes(frame.slice(100 * i, 100)))
    upload(s3, "houses/_SUCCESS", b"")
    upload(s3, "houses/other/x.csv", csv_bytes(frame.head(5)))
    base = f"s3://{s3.bucket}/houses"
    labels = [f.label for f in resolve(base + "/")]
    assert labels == ["other/x.csv", "part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert [f.label for f in resolve(base, "parquet")] == labels[1:]
    glob = resolve(base + "/part-*.parquet")
    assert [f.url for f in glob] == [f"{base}/part-{i}.parquet" for i in range(3)]
    assert all(f.etag and f.size > 0 for f in glob)
    assert [f.url for f in resolve(base + "/part-1.parquet")] == [f"{base}/part-1.parquet"]
    with pytest.raises(DataError, match="no data files match"):
        resolve(base + "/*.jsonl")
    with pytest.raises(DataError, match="no data files are under"):
        resolve(f"s3://{s3.bucket}/nothing/")
    with pytest.raises(DataError, match="bucket 'no-such-bucket' does not exist"):
        resolve("s3://no-such-bucket/houses/")


def test_training_on_s3_reads_parquet_and_streams_csv_like_local_files(
        s3, tmp_path: Path) -> None:
    frame = houses_frame(3000)
    split_write(frame, tmp_path / "parts", 3, "parquet")
    for i, part in enumerate(sorted((tmp_path / "parts").iterdir())):
        upload(s3, f"houses/{part.name}", part.read_bytes())
        upload(s3, f"csv/part-{i}.csv.gz", csv_bytes(pl.read_parquet(part), gz=True))
    local = train(LocalStore(tmp_path / "a"), tmp_path / "parts", target="price")
    remote = train(LocalStore(tmp_path / "b"), f"s3://{s3.bucket}/houses/", target="price")
    assert remote.coefficients == local.coefficients
    manifest = LocalStore(tmp_path / "b").get(remote.version)
    assert manifest["data"]["file"] == f"s3://{s3.bucket}/houses/"
    streamed = train(LocalStore(tmp_path / "c"), f"s3://{s3.bucket}/csv/*.csv.gz",
                     target="price", stream=True)
    assert streamed.metrics["holdout"]["rows"] == local.metrics["holdout"]["rows"]
    assert streamed.metrics["holdout"]["rmse"] == pytest.approx(
        local.metrics["holdout"]["rmse"], rel=1e-2)
    whole = read(f"s3://{s3.bucket}/csv/")
    same_loaded(whole, read(tmp_path / "parts"))


def test_a_bad_value_in_an_s3_csv_names_the_object_and_line(s3) -> None:
    text = csv_bytes(houses_frame(50)).decode().splitlines()
    text[3] = "x" + text[3][1:]
    upload(s3, "bad/a.csv", csv_bytes(houses_frame(50, seed=1)))
    upload(s3, "bad/b.csv", ("\n".join(text) + "\n").encode())
    sources = open_sources(f"s3://{s3.bucket}/bad/")
    assert sources.columns == houses_frame(5).columns
    with pytest.raises(DataError, match=r"^b.csv: column 'sqft', line 4: "):
        read(sources)
