"""Tabular files as they come: CSV (also .csv.gz), Parquet and JSON lines, read with polars.

:func:`open_source` looks at a file once: its format (by extension, or ``format``), its column
names (an empty header cell or a repeated name gets pandas' name, ``Unnamed: 0`` or ``x.1``,
with a notice), and the column types polars infers from the first rows. Reading is then whole
(:meth:`Source.read`) or in record batches with bounded memory (:meth:`Source.batches`), always
with every column's type fixed, so a later row cannot change it.

polars reports a value it cannot parse without its line; :func:`locate` finds it on the error
path only (re-reading that column as text), so errors name the column and the file's line:
``column 'sqft', line 7: 'abc' is not a number``. The choice of polars, measured against pandas
and pyarrow on this machine, is in docs/benchmarks-data.md.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import polars as pl

from ..errors import DataError
from .files import DataFile, dataset_name, format_of, one_file, resolve

__all__ = ["FORMATS", "Fingerprint", "Source", "Sources", "detect_format", "open_source",
           "open_sources"]

FORMATS = ("csv", "parquet", "jsonl")
SAMPLE_ROWS = 10_000  # rows polars infers column types from
# Text per streamed batch, about 20,000 rows of 200 bytes: streaming a 200 MB file took 52 MB of
# memory with 4 MiB blocks and 84 MB with 8 MiB, in the same time (2 MiB: 35 MB, 15% slower).
BLOCK_BYTES = 4 * 1024 * 1024
# Text per block of a whole-file CSV read (Source.read): the peak is the frame and one block.
READ_BLOCK_BYTES = 8 * 1024 * 1024
# polars names the column of a value it cannot parse: "... at column 'a' (column number 2)".
_POLARS_COLUMN = re.compile(r"at column '(.*?)' \(column number (\d+)\)")
_NUMERIC = (pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8,
            pl.UInt16, pl.UInt32, pl.UInt64)


@dataclass(frozen=True)
class Fingerprint:
    """What was read: file name, data rows, the columns used and the sha256 of the bytes.

    For a dataset of several files, ``file`` is the dataset as given and ``sha256`` the digest
    of its listing: each file's label, size and digest. An S3 object's digest is that of its
    URL, size and ETag (S3 changes the ETag whenever the bytes change), not of its bytes.
    """

    file: str
    rows: int
    columns: list[str]
    sha256: str
    format: str = "csv"
    files: int = 1

    def to_dict(self) -> dict[str, Any]:
        out = {"file": self.file, "rows": self.rows, "columns": list(self.columns),
               "sha256": self.sha256, "format": self.format}
        if self.files > 1:
            out["files"] = self.files
        return out


def detect_format(path: str | os.PathLike[str], override: str | None = None) -> str:
    """``csv``, ``parquet`` or ``jsonl``: ``override`` if given, else by the file's extension."""
    if override is not None:
        if override not in FORMATS:
            raise DataError(f"format must be one of {', '.join(FORMATS)}, got {override!r}")
        return override
    name = os.fspath(path).replace(os.sep, "/").rsplit("/", 1)[-1]
    found = format_of(name)
    if found is None:
        raise DataError(f"cannot tell the format of {name!r} from its extension; "
                        f"give --format ({', '.join(FORMATS)})")
    return found


@dataclass
class Source:
    """One data file: format, normalised column names, inferred types, notices.

    As one file of several (:class:`Sources`), ``row_offset`` is the dataset's row number of
    its first row (row numbers given to its methods are the dataset's), and ``named`` makes
    :meth:`naming` put the file's label in front of errors.
    """

    location: DataFile
    format: str
    columns: list[str]  # as sgdserve names them (see open_source)
    header: list[str]  # as the file names them
    dtypes: dict[str, pl.DataType]  # polars' types from the first rows, by sgdserve's name
    notices: list[str] = field(default_factory=list)
    row_offset: int = 0
    named: bool = False

    @property
    def file(self) -> str:
        return self.location.label

    @property
    def size(self) -> int:
        return self.location.size

    @contextlib.contextmanager
    def naming(self) -> Iterator[None]:
        """Errors raised inside name this file first, when it is one of several."""
        try:
            yield
        except DataError as exc:
            if not self.named or str(exc).startswith(self.file + ":"):
                raise
            raise DataError(f"{self.file}: {exc}", column=exc.column, line=exc.line) from None

    def check_columns(self, wanted: Sequence[str], first: str) -> None:
        """Every column in ``wanted`` is in this file (``first`` names the file that had them)."""
        missing = [name for name in wanted if name not in self.columns]
        if missing:
            raise DataError(f"{self.file}: column {missing[0]!r} is missing (the dataset's "
                            f"first file, {first}, has it); this file has: "
                            f"{', '.join(self.columns)[:200]}", column=missing[0])

    # -- reading -----------------------------------------------------------------------------

    def read(self, types: dict[str, pl.DataType], columns: Sequence[str] | None = None
             ) -> pl.DataFrame:
        """The whole file with these column types (only ``columns``, by default all).

        A CSV is parsed block by block (:data:`READ_BLOCK_BYTES`) and the frames are joined
        without a copy: polars' whole-file read holds all of the file's bytes beside the frame
        it makes (peak 444-501 MB for the 204 and 259 MB benchmark files, against 273-290 MB
        in 8 MiB blocks), for much the same time (docs/benchmarks-data.md).
        """
        wanted = list(columns) if columns is not None else list(self.columns)
        if self.format == "csv":
            frames = list(self.batches(types, wanted, block_bytes=READ_BLOCK_BYTES))
            if frames:
                return pl.concat(frames, how="vertical", rechunk=False)
        try:
            frame = self._lazy(types).select(wanted).collect()
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
            raise self.explain(exc, types) from None
        return frame

    def batches(self, types: dict[str, pl.DataType], columns: Sequence[str] | None = None,
                block_bytes: int | None = None) -> Iterator[pl.DataFrame]:
        """The file in record batches of about ``block_bytes`` of text each, in file order.

        Memory stays bounded by the block: polars' own batched collection reads a CSV whole
        before it hands out the first batch (measured: 230 MB of a 200 MB file), so CSV and JSON
        lines are cut here into blocks of whole records and each block is parsed on its own.
        """
        wanted = list(columns) if columns is not None else list(self.columns)
        try:
            if self.format == "parquet":
                yield from self._lazy(types).select(wanted).collect_batches(
                    chunk_size=65_536, maintain_order=True)
                return
            schema = {name: types.get(name, pl.String) for name in self.columns}
            is_csv = self.format == "csv"
            blocks = _record_blocks(self.location, block_bytes or BLOCK_BYTES, quoted=is_csv,
                                    header=is_csv)
            for text in _prefetched(blocks):
                if is_csv:
                    frame = pl.read_csv(
                        io.BytesIO(text), has_header=True,
                        new_columns=list(self.columns), schema_overrides=schema,
                        infer_schema_length=0, columns=wanted)
                else:
                    frame = pl.read_ndjson(io.BytesIO(text),
                                           schema=self._json_schema(schema))
                    frame = self._as_named(frame, schema).select(wanted)
                yield frame
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
            raise self.explain(exc, types) from None

    def _as_named(self, frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
        renames = {h: c for h, c in zip(self.header, self.columns, strict=True) if h != c}
        if renames:
            frame = frame.rename(renames)
        casts = [pl.col(n).cast(t) for n, t in schema.items() if self.dtypes.get(n) != t]
        return frame.with_columns(casts) if casts else frame

    def _lazy(self, types: dict[str, pl.DataType]) -> pl.LazyFrame:
        schema = {name: types.get(name, pl.String) for name in self.columns}
        if self.format == "csv":
            return pl.scan_csv(
                self.location.url, has_header=True, new_columns=list(self.columns),
                schema_overrides=schema, infer_schema_length=0, raise_if_empty=False,
            )
        if self.format == "parquet":
            lazy = pl.scan_parquet(self.location.url)
        else:
            lazy = pl.scan_ndjson(self.location.url, schema=self._json_schema(schema))
        renames = {h: c for h, c in zip(self.header, self.columns, strict=True) if h != c}
        if renames:
            lazy = lazy.rename(renames)
        casts = [pl.col(n).cast(t) for n, t in schema.items() if self.dtypes.get(n) != t]
        return lazy.with_columns(casts) if casts else lazy

    def _json_schema(self, schema: dict[str, pl.DataType]) -> dict[str, pl.DataType]:
        # JSON lines are read with the types they have; casts happen afterwards.
        return {h: self.dtypes[c] for h, c in zip(self.header, self.columns, strict=True)}

    # -- errors with a line ------------------------------------------------------------------

    def explain(self, exc: BaseException, types: dict[str, pl.DataType]) -> DataError:
        """A reader's failure as a DataError naming the column and the line, when it can."""
        if "more fields than defined" in str(exc) and self.format == "csv":
            ragged = self.ragged_line()
            if ragged is not None:
                return ragged
        found = _POLARS_COLUMN.search(str(exc))
        if found is not None and 0 < int(found.group(2)) <= len(self.columns):
            name = self.columns[int(found.group(2)) - 1]
            located = self.locate(name, types.get(name, pl.Float64))
            if located is not None:
                return located
        text = " ".join(str(exc).split("\n")[0].split())
        return DataError(f"{self.file}: cannot read the data: {text[:300]}")

    def locate(self, name: str, dtype: pl.DataType) -> DataError | None:
        """The first value of column ``name`` that is not a ``dtype``, with its line."""
        try:
            if self.format == "csv":
                raw = pl.scan_csv(self.location.url, has_header=True,
                                  new_columns=list(self.columns),
                                  infer_schema_length=0).select(name).collect()[name]
            elif self.format == "jsonl":
                return self._locate_json(name, dtype)
            else:
                return None
        except pl.exceptions.PolarsError:
            return None
        as_number = raw.str.strip_chars().cast(pl.Float64, strict=False)
        bad = (raw.is_not_null() & as_number.is_null()).arg_true()
        if len(bad) == 0:
            return None
        row = int(bad[0])  # of this file
        line = self.line_of_row(self.row_offset + row)
        return DataError(f"column {name!r}, line {line}: {raw[row]!r} is not a number",
                         column=name, line=line)

    def _locate_json(self, name: str, dtype: pl.DataType) -> DataError | None:
        header = self.header[self.columns.index(name)]
        with _open_text(self.location) as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                value = json.loads(line).get(header)
                if value is not None and (type(value) is bool or
                                          not isinstance(value, (int, float))):
                    return DataError(f"column {name!r}, line {line_number}: "
                                     f"{json.dumps(value)[:40]} is not a number",
                                     column=name, line=line_number)
        return None

    def ragged_line(self, row: int | None = None) -> DataError | None:
        """The first data line (or the line of data row ``row``) whose field count is not the
        header's, as an error (the error path only: it reads the file with the csv module)."""
        if self.format != "csv":
            return None
        if row is not None:
            row -= self.row_offset
        width = len(self.header)
        with _open_text(self.location) as f:
            reader = csv.reader(f)
            next(reader, None)
            for i, record in enumerate(reader):
                if row is not None and i != row:
                    continue
                if record and len(record) != width:
                    line = _record_line(reader.line_num, record)
                    return DataError(f"line {line} has {len(record)} fields, the header has "
                                     f"{width}", line=line)
                if row is not None:
                    return None
        return None

    def line_of_row(self, row: int) -> int:
        """The 1-based file line where data row ``row`` (0-based) starts: quoted fields may
        span lines, so count records, not newlines (the error path only)."""
        row -= self.row_offset
        if self.format != "csv":
            return row + 1
        with _open_text(self.location) as f:
            reader = csv.reader(f)
            next(reader, None)  # the header
            for i, record in enumerate(reader):
                if i == row:
                    return _record_line(reader.line_num, record)
        return row + 2

    # -- fingerprint -------------------------------------------------------------------------

    def hash_in_background(self) -> _Hasher:
        """Start hashing the file's bytes in a thread (it overlaps with polars' parse)."""
        return _Hasher(self.location)


def _open_binary(location: DataFile) -> BinaryIO:
    """The file's bytes, uncompressed when its name ends in .gz."""
    raw = location.open()
    return _Gunzip(raw) if location.compressed else raw  # type: ignore[return-value]


class _Gunzip(gzip.GzipFile):
    """A gzip stream over another stream that closes both (GzipFile leaves ``fileobj`` open)."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _record_blocks(location: DataFile, block_bytes: int, *, quoted: bool,
                   header: bool = True) -> Iterator[bytes]:
    """Blocks of whole records over a text file, each one text; with ``header`` (CSV) the
    file's first line is a header, repeated first in every block (JSON lines have none: their
    first line is a record). A record ends at a newline outside quotes: with RFC 4180 quoting
    ("" inside a quoted field) that is a newline after an even number of quote characters.

    Each block is copied once (``bytes.join`` over the header, the previous block's partial
    record and a view of what was read): three copies per block took 0.16-0.27 s of a 200 MB
    file."""
    with _open_binary(location) as f:
        head = f.readline() if header else b""
        rest = b""  # the start of a record (a cut is always outside quotes)
        while True:
            data = f.read(block_bytes)
            if not data:
                if rest.strip():
                    yield b"".join((head, rest, b"" if rest.endswith(b"\n") else b"\n"))
                return
            parity = rest.count(b'"') % 2 if quoted else None  # quotes open where data starts
            cut = _last_record_end(data, parity)
            if cut < 0:
                rest += data  # no complete record yet: read more
                continue
            yield b"".join((head, rest, memoryview(data)[: cut + 1]))
            rest = data[cut + 1 :]


def _prefetched(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """``blocks``, each read in a thread while the caller parses the one before (reading and
    copying a block is a few ms of a file's time that would otherwise add to the parse)."""
    with ThreadPoolExecutor(1, thread_name_prefix="sgdserve-read") as pool:
        pending = pool.submit(next, blocks, None)
        try:
            while (block := pending.result()) is not None:
                pending = pool.submit(next, blocks, None)
                yield block
        finally:
            pending.cancel()
            with contextlib.suppress(Exception):
                pending.result()  # the read in flight, if any, ends before the file closes
            blocks.close()  # type: ignore[attr-defined]


def _last_record_end(buf: bytes, parity: int | None) -> int:
    """Index of the last newline in ``buf`` that ends a record, or -1."""
    if parity is None or b'"' not in buf:
        return buf.rfind(b"\n")
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 0x0A)
    if len(newlines) == 0:
        return -1
    quotes_before = np.cumsum(arr == 0x22)[newlines]
    outside = newlines[(quotes_before + parity) % 2 == 0]
    return int(outside[-1]) if len(outside) else -1


def _record_line(end_line: int, record: list[str]) -> int:
    """The line a record starts on, from the line it ended on (csv's line_num)."""
    return end_line - sum(field.count("\n") for field in record)


class _Hasher(threading.Thread):
    """The digest of one file (given several, of the dataset's listing), in a thread."""

    def __init__(self, *locations: DataFile) -> None:
        super().__init__(daemon=True)
        self.locations = locations
        self.digest: str | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            if len(self.locations) == 1:
                self.digest = self.locations[0].digest()
            else:
                self.digest = listing_digest(
                    [(f.label, f.size, f.digest()) for f in self.locations])
        except BaseException as exc:  # reported by result()
            self.error = exc

    def result(self) -> str:
        self.join()
        if self.error is not None:
            raise self.error
        assert self.digest is not None
        return self.digest


def listing_digest(entries: Sequence[tuple[str, int, str]]) -> str:
    """The sha256 of a dataset's listing: a line of label, size and digest per file."""
    text = "".join(f"{label}\t{size}\t{digest}\n" for label, size, digest in entries)
    return hashlib.sha256(text.encode()).hexdigest()


def _open_text(location: DataFile) -> io.TextIOBase:
    return io.TextIOWrapper(_open_binary(location), encoding="utf-8-sig", newline="")


# -- opening -----------------------------------------------------------------------------------


def open_source(path: str | os.PathLike[str] | DataFile, format: str | None = None) -> Source:
    """Look at a data file (local or ``s3://``): its format, column names and the types of its
    first rows."""
    path = one_file(path)
    kind = detect_format(path.name, format)
    try:
        if kind == "csv":
            header = _csv_header(path)
            # The first block of records only: given the path, polars reads the whole file
            # into memory to take its first rows (measured: 186 MB of a 200 MB file).
            first = next(_record_blocks(path, BLOCK_BYTES, quoted=True), None)
            text = first if first is not None else _first_line(path)
            sample = pl.read_csv(io.BytesIO(text), n_rows=SAMPLE_ROWS,
                                 infer_schema_length=SAMPLE_ROWS, has_header=True,
                                 raise_if_empty=False)
            dtypes_by_position = list(sample.schema.values())
        elif kind == "parquet":
            schema = pl.read_parquet_schema(path.url)
            header, dtypes_by_position = list(schema), list(schema.values())
        else:
            sample = pl.read_ndjson(_head_lines(path, SAMPLE_ROWS),
                                    infer_schema_length=SAMPLE_ROWS)
            header, dtypes_by_position = list(sample.columns), list(sample.schema.values())
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError, EOFError) as exc:
        if kind == "csv" and "more fields than defined" in str(exc):
            ragged = Source(path, kind, normalise_names(header)[0], header, {}).ragged_line()
            if ragged is not None:
                raise ragged from None
        text = " ".join(str(exc).split("\n")[0].split())
        raise DataError(f"{path.label}: cannot read it as {kind}: {text[:300]}") from None
    if not header:
        raise DataError(f"{path.label} has no columns (is it empty?)")
    columns, notices = normalise_names(header)
    if len(dtypes_by_position) != len(columns):  # a header polars read differently
        raise DataError(f"{path.label}: the header has {len(columns)} columns but the rows have "
                        f"{len(dtypes_by_position)}")
    return Source(location=path, format=kind, columns=columns, header=header,
                  dtypes=dict(zip(columns, dtypes_by_position, strict=True)), notices=notices)


def _csv_header(path: DataFile) -> list[str]:
    with _open_text(path) as f:
        try:
            row = next(csv.reader(f), None)
        except csv.Error as exc:
            raise DataError(f"{path.label}: the first line is not a CSV header: {exc}") from None
    if not row or not any(cell.strip() for cell in row):
        raise DataError(f"{path.label} is empty: it has no header row", line=1)
    return [cell.strip() for cell in row]


def _first_line(path: DataFile) -> bytes:
    with _open_binary(path) as f:
        return f.readline()


def _head_lines(path: DataFile, n: int) -> io.BytesIO:
    out = io.BytesIO()
    with _open_binary(path) as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    out.seek(0)
    return out


def normalise_names(header: Sequence[str]) -> tuple[list[str], list[str]]:
    """pandas' names for empty and repeated header cells (``Unnamed: 3``, ``x.1``), with a
    notice for each: never a refusal."""
    names: list[str] = []
    notices: list[str] = []
    seen: dict[str, int] = {}
    taken = set(header)
    for i, raw in enumerate(header):
        name = raw if raw else f"Unnamed: {i}"
        if not raw:
            notices.append(f"header column {i + 1} has no name: called it {name!r}")
        if name in seen:
            k = seen[name]
            candidate = f"{name}.{k}"
            while candidate in taken or candidate in seen:
                k += 1
                candidate = f"{name}.{k}"
            seen[name] = k + 1
            notices.append(f"column {name!r} appears again (header column {i + 1}): "
                           f"called it {candidate!r}")
            name = candidate
        seen.setdefault(name, 1)
        names.append(name)
    return names, notices


def is_number_type(dtype: pl.DataType) -> bool:
    return dtype in _NUMERIC


# -- datasets of several files -----------------------------------------------------------------


class Sources:
    """The files of one dataset read as one table, in order (a single file is a dataset of one).

    The first file decides the column names and types, as a file's first rows do; every other
    file is opened when it is read and must have the columns read, in any order. Rows are
    numbered across the files, so the holdout rule holds out the same rows as in the files
    concatenated, and errors about a row name its file when there are several.
    """

    def __init__(self, name: str, files: Sequence[DataFile], data_format: str | None = None):
        if not files:
            raise DataError(f"{name}: no data files")
        self.name = name
        self.files = list(files)
        kinds = {f.label: detect_format(f.name, data_format) for f in self.files}
        if len(set(kinds.values())) > 1:
            shown = ", ".join(f"{label} ({kind})" for label, kind in list(kinds.items())[:6])
            raise DataError(f"{name} mixes formats: {shown}; a dataset is files of one format")
        self.data_format = data_format
        first = open_source(self.files[0], data_format)
        first.named = len(self.files) > 1
        self._parts: dict[int, Source] = {0: first}
        self._offsets: list[int | None] = [0] + [None] * (len(self.files) - 1)

    # -- the first file's view of the table ------------------------------------------------

    @property
    def first(self) -> Source:
        return self._parts[0]

    @property
    def format(self) -> str:
        return self.first.format

    @property
    def columns(self) -> list[str]:
        return self.first.columns

    @property
    def header(self) -> list[str]:
        return self.first.header

    @property
    def dtypes(self) -> dict[str, pl.DataType]:
        return self.first.dtypes

    @property
    def notices(self) -> list[str]:
        return self.first.notices

    @property
    def file(self) -> str:
        return self.name

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def __len__(self) -> int:
        return len(self.files)

    # -- the parts -------------------------------------------------------------------------

    def part(self, i: int, row_offset: int | None = None) -> Source:
        """File ``i`` (opened on first use), its first row numbered ``row_offset`` (by default
        the row after the previous file's last, once that file has been read)."""
        source = self._parts.get(i)
        if source is None:
            source = open_source(self.files[i], self.data_format)
            source.named = True
            self._parts[i] = source
        if row_offset is not None:
            self._offsets[i] = row_offset
        if self._offsets[i] is not None:
            source.row_offset = self._offsets[i]  # type: ignore[assignment]
        return source

    def read_rows(self, i: int, rows: int) -> None:
        """File ``i`` has ``rows`` data rows: the next file's rows are numbered after them."""
        start = self._offsets[i]
        if start is not None and i + 1 < len(self.files):
            self._offsets[i + 1] = start + rows

    def check(self, source: Source, wanted: Sequence[str]) -> None:
        """``source`` has every column in ``wanted`` (a later file may lack one)."""
        if source is not self.first:
            source.check_columns(wanted, self.first.file)

    def _part_of_row(self, row: int) -> Source:
        known = [i for i, start in enumerate(self._offsets) if start is not None and start <= row]
        return self.part(max(known))

    # -- errors with a file and a line -----------------------------------------------------

    def line_of_row(self, row: int) -> int:
        """The line, in its own file, where the dataset's data row ``row`` starts."""
        return self._part_of_row(row).line_of_row(row)

    def ragged_line(self, row: int | None = None) -> DataError | None:
        """The first line (of row ``row``'s file, or of any file) with the wrong field count."""
        parts = [self._part_of_row(row)] if row is not None else \
            (self.part(i) for i in range(len(self.files)))
        for part in parts:
            found = part.ragged_line(row)
            if found is not None:
                return _named(part, found)
        return None

    def locate(self, name: str, dtype: pl.DataType) -> DataError | None:
        """The first value of column ``name`` that is not a ``dtype``, in any file."""
        for i in range(len(self.files)):
            part = self.part(i)
            if name in part.columns:
                found = part.locate(name, dtype)
                if found is not None:
                    return _named(part, found)
        return None

    def hash_in_background(self) -> _Hasher:
        """The dataset's digest (one file: of its bytes), computed in a thread."""
        return _Hasher(*self.files)


def _named(source: Source, error: DataError) -> DataError:
    if not source.named or str(error).startswith(source.file + ":"):
        return error
    return DataError(f"{source.file}: {error}", column=error.column, line=error.line)


def open_sources(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Sources,
                 data_format: str | None = None) -> Sources:
    """The dataset ``spec`` names: a file, a directory, a glob or a list of them, local or
    ``s3://`` (:func:`service.data.files.resolve`)."""
    if isinstance(spec, Sources):
        return spec
    return Sources(dataset_name(spec), resolve(spec, data_format), data_format)
