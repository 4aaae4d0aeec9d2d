"""Read, validate and generate the tabular data sgdserve trains on.

A CSV file has a header row, a target column and feature columns. :func:`read_csv` reads a file
whole; :func:`iter_chunks` streams one that is larger than memory, chunk by chunk, with the same
validation. Every problem is a :class:`~service.errors.DataError` whose message names the column
and the 1-based line of the file (line 1 is the header).

How the reader is fast. The file is read in 8 MiB blocks into one reused buffer (hashed while
the blocks are parsed), and each block is cut into pieces of about 256 KiB that numpy parses on
every core, each worker in work arrays it keeps for the whole read (fresh ones for every piece
would make the kernel map and zero their pages again each time). For each field it finds the
decimal point with bit tricks on 8-byte words and turns up to 8 integer and 8 fraction digits
into an integer eight digits at a time (the SWAR method of simdjson); dividing that exact
integer by 1e8 is one correctly rounded IEEE division, so the result is bit for bit what
``float(text)`` gives. The few fields it leaves (longer fractions, exponents, yes/no words with
spaces) get a second vectorised pass and then ``float()``; pieces in another number format
altogether go to numpy.loadtxt; and anything odd (quotes, blank lines, wrong field counts, bad
values) to a careful pure-Python pass that finds the exact column and line of the error.
``bench/read_bench.py`` compares it with numpy.loadtxt, the csv module and pandas;
``docs/benchmarks-data.md`` has the numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = [
    "STREAM_THRESHOLD_BYTES",
    "Fingerprint",
    "Dataset",
    "Chunk",
    "ChunkReader",
    "read_csv",
    "iter_chunks",
    "should_stream",
    "iter_prediction_chunks",
    "write_rows_csv",
]

# Files up to this size are read whole. Reading whole holds the float64 values (8 bytes per
# value, about 0.85x the size of a CSV with 7-digit numbers) plus an 8 MiB buffer: measured 177 MB
# at the peak for a 204 MB file, so 512 MiB needs about 0.5 GB, which a small container has.
# Larger files stream in chunks with bounded memory (56 MB for 65,536-row chunks), at the price
# of re-reading and re-parsing the file on every pass (the scaler's, then one per epoch).
STREAM_THRESHOLD_BYTES = 512 * 1024 * 1024

# --------------------------------------------------------------------------------------------
# Datasets, fingerprints, chunks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What was read: file base name, data rows, the columns used and the sha256 of the bytes."""

    file: str
    rows: int
    columns: list[str]
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, "columns": list(self.columns),
                "sha256": self.sha256}


@dataclass(frozen=True)
class Dataset:
    """A CSV file read whole: X (n, d) float64 C-contiguous, y (n,), names and fingerprint."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    target: str
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Chunk:
    """Consecutive data rows of a streamed file; ``start_row`` is the 0-based index of the first."""

    X: np.ndarray
    y: np.ndarray
    start_row: int


# --------------------------------------------------------------------------------------------
# Values: what a cell may hold
# --------------------------------------------------------------------------------------------

_TRUE_WORDS = ("yes", "true", "y")
_FALSE_WORDS = ("no", "false", "n")
_BOOL_WORDS = {**{w: 1.0 for w in _TRUE_WORDS}, **{w: 0.0 for w in _FALSE_WORDS}}


def _is_bool_word(text: str) -> bool:
    return text.strip().lower() in _BOOL_WORDS


def _convert(text: str, is_bool: bool, column: str, line: int) -> float:
    """One cell to a float, or a DataError naming the column and line."""
    where = f"column {column!r}, line {line}"
    stripped = text.strip()
    if not stripped:
        raise DataError(f"{where}: the value is empty", column=column, line=line)
    if is_bool:
        value = _BOOL_WORDS.get(stripped.lower())
        if value is None:
            raise DataError(f"{where}: {stripped!r} is not yes/no, true/false or y/n "
                            "(the column's first value is yes/no)", column=column, line=line)
        return value
    try:
        # float() also takes '1_000' and non-ASCII digits; a CSV number has neither.
        if "_" in stripped or not stripped.isascii():
            raise ValueError
        value = float(stripped)
    except ValueError:
        hint = " (the column's first value is a number)" if _is_bool_word(stripped) else ""
        raise DataError(f"{where}: {stripped!r} is not a number{hint}",
                        column=column, line=line) from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {stripped!r} is not a finite number", column=column, line=line)
    return value


# --------------------------------------------------------------------------------------------
# Header and layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Which columns of the file are read, in what order, and which hold yes/no words."""

    file: str
    header: tuple[str, ...]
    used: tuple[int, ...]  # column indices: the features, then the target (if any)
    names: tuple[str, ...]  # header names of ``used``
    n_features: int
    is_bool: tuple[bool, ...] = ()  # per used column; decided by the first data row

    @property
    def n_columns(self) -> int:
        return len(self.header)


def _parse_header(line: str, file: str) -> tuple[str, ...]:
    names = next(csv.reader([line.lstrip("\ufeff")]), [])
    names = [name.strip() for name in names]
    if not names or names == [""]:
        raise DataError(f"file {file!r}: line 1 is empty; the first line must be the header",
                        line=1)
    seen: set[str] = set()
    for i, name in enumerate(names, 1):
        if not name:
            raise DataError(f"header column {i} has no name (line 1)", line=1)
        if name in seen:
            raise DataError(f"column {name!r} appears twice in the header (line 1)",
                            column=name, line=1)
        seen.add(name)
    return tuple(names)


def _make_layout(
    header: tuple[str, ...], target: str | None, features: Sequence[str] | None, file: str
) -> _Layout:
    listing = ", ".join(header)
    index = {name: i for i, name in enumerate(header)}
    if target is not None and target not in index:
        raise DataError(f"target column {target!r} is missing; the header has: {listing}",
                        column=target, line=1)
    if features is None:
        if target is None:
            raise ValueError("features are required when there is no target")
        chosen = [name for name in header if name != target]
        if not chosen:
            raise DataError(f"the file has no feature columns besides the target {target!r}",
                            column=target, line=1)
    else:
        if isinstance(features, str):
            raise TypeError("features must be a list of column names, not a string")
        chosen = list(features)
        if not chosen:
            raise DataError("the list of features is empty")
        seen: set[str] = set()
        for name in chosen:
            if name == target:
                raise DataError(f"target column {target!r} is also listed as a feature",
                                column=name)
            if name in seen:
                raise DataError(f"feature {name!r} is listed twice", column=name)
            seen.add(name)
            if name not in index:
                raise DataError(f"feature column {name!r} is missing; the header has: {listing}",
                                column=name, line=1)
    names = tuple(chosen) + ((target,) if target is not None else ())
    return _Layout(file=file, header=header, used=tuple(index[n] for n in names), names=names,
                   n_features=len(chosen))


def _split_line(line: str) -> list[str]:
    if '"' in line:
        return next(csv.reader([line]), [])
    return line.split(",")


def _with_kinds(layout: _Layout, first_row: str, line: int) -> _Layout:
    """Decide per used column whether it holds numbers or yes/no words, from the first data row."""
    fields = _split_line(first_row)
    if len(fields) != layout.n_columns:
        raise _field_count_error(len(fields), layout, line)
    kinds = tuple(_is_bool_word(fields[i]) for i in layout.used)
    return _Layout(layout.file, layout.header, layout.used, layout.names, layout.n_features, kinds)


def _field_count_error(n_fields: int, layout: _Layout, line: int) -> DataError:
    return DataError(f"line {line} has {n_fields} fields, the header has {layout.n_columns}",
                     line=line)


# --------------------------------------------------------------------------------------------
# The careful pure-Python pass: any valid file, exact errors
# --------------------------------------------------------------------------------------------


def _decode(data: bytes | bytearray | memoryview, first_line: int, file: str) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + bytes(data[: exc.start]).count(b"\n")
        raise DataError(f"file {file!r} is not UTF-8 text (line {line})", line=line) from None


def _parse_slow(text: str, first_line: int, layout: _Layout) -> np.ndarray:
    """Parse complete lines into (rows, used columns) float64; blank lines are skipped."""
    out = np.empty((text.count("\n"), len(layout.used)), np.float64)
    row = 0
    used = list(zip(layout.used, layout.names, layout.is_bool, strict=True))
    for offset, line in enumerate(text.split("\n")[:-1]):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        line_no = first_line + offset
        fields = _split_line(line)
        if len(fields) != layout.n_columns:
            raise _field_count_error(len(fields), layout, line_no)
        for j, (col, name, is_bool) in enumerate(used):
            out[row, j] = _convert(fields[col], is_bool, name, line_no)
        row += 1
    return out[:row]


# --------------------------------------------------------------------------------------------
# The fast path: numpy over 8-byte words
# --------------------------------------------------------------------------------------------

_U = np.uint64
_ONES = _U(0x0101010101010101)
_HIGHS = _U(0x8080808080808080)
_DOTS = _U(0x2E2E2E2E2E2E2E2E)
_ZEROS = _U(0x3030303030303030)
_OVER9 = _U(0x7676767676767676)  # a byte > 9 plus 0x76 sets its high bit
_LOWER = _U(0x2020202020202020)
_ALL = _U(0xFFFFFFFFFFFFFFFF)
_M2 = _U(0x00FF00FF00FF00FF)
_M3 = _U(0x0000FFFF0000FFFF)
_E8 = _U(100_000_000)
_MAX_EXACT = _U(2**53)  # integers up to here are exact doubles
_PAD = 32  # spare bytes around parsed data: the 8-byte word reads may run past a piece
# About 27,000 fields of a typical file: numpy's cost per call is small against the work, and the
# work arrays stay in the L2/L3 cache; 512 KiB measured the same, 128 KiB 1.1x slower, 32 KiB 1.9x.
_PIECE_BYTES = 256 * 1024


def _word_code(word: str) -> np.uint64:
    return _U(int.from_bytes(word.encode(), "little"))


_TRUE_CODES = [_word_code(w) for w in _TRUE_WORDS]
_FALSE_CODES = [_word_code(w) for w in _FALSE_WORDS]


def _gather(words: np.ndarray, pos: np.ndarray, extra: int = 0) -> np.ndarray:
    """The 8 bytes at offsets ``pos + extra`` as little-endian uint64s (aligned reads, shifts)."""
    if extra:
        pos = pos + extra
    q = pos >> 3
    shift = (pos & 7).view(_U)
    shift <<= _U(3)
    low = words.take(q)
    q += 1
    high = words.take(q)
    low >>= shift
    np.subtract(_U(64), shift, out=shift)
    high <<= shift  # numpy gives 0 for a shift by 64
    low |= high
    return low


def _parse8(y: np.ndarray) -> np.ndarray:
    """Eight digit values (bytes 0..9, first byte most significant) to an integer, in place."""
    y *= _U(2561)
    y >>= _U(8)
    y &= _M2
    y *= _U(6553601)
    y >>= _U(16)
    y &= _M3
    y *= _U(42949672960001)
    y >>= _U(32)
    return y


@dataclass
class _Fields:
    """The fast parser's view of a piece; every array is (rows, columns of the file)."""

    values: np.ndarray  # float64; exact where ``ok``
    ok: np.ndarray
    starts: np.ndarray  # byte offset of each field in the buffer
    length: np.ndarray  # its length in bytes
    lead: np.ndarray  # its first 8 bytes as a little-endian uint64


class _Scratch:
    """Work arrays that one worker reuses from piece to piece (one worker at a time).

    Fresh arrays the size of a piece would be mapped from the kernel and handed back on every
    piece (glibc maps blocks over its mmap threshold and trims freed arena memory), so each piece
    would fault its memory in again: 0.7-1.1 million page faults for a 200 MB file, more time
    than the parsing itself. Reused arrays fault in once.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype: Any) -> np.ndarray:
        """A 1-D array of ``n`` items named ``name``; its contents are whatever was left."""
        a = self._arrays.get(name)
        if a is None or a.size < n:
            # Headroom: the next piece is often a few fields longer than this one.
            a = self._arrays[name] = np.empty(n + n // 8 + 64, dtype)
        return a[:n]


class _ScratchPool:
    """One :class:`_Scratch` per worker running at a time, kept for the length of one read."""

    def __init__(self) -> None:
        self._free: list[_Scratch] = []

    def take(self) -> _Scratch:
        try:
            return self._free.pop()  # list.pop and append are atomic: no lock needed
        except IndexError:
            return _Scratch()

    def give(self, scratch: _Scratch) -> None:
        self._free.append(scratch)


def _parse_fast(u8: np.ndarray, words: np.ndarray, start: int, end: int,
                n_columns: int, sc: _Scratch) -> _Fields | None:
    """Parse the complete lines in ``u8[start:end]``, or None when they are not plain.

    Plain lines have the header's number of fields separated by bare commas; blank lines,
    quotes, spaces and wrong counts make None, and the careful pass takes the piece. The
    arrays returned are views of ``sc``: valid until its next use.
    """
    seg = u8[start:end]
    # Every byte <= 44 is a candidate separator: ',' and '\n', but also space, '"', '+', '\r'...
    seps = np.flatnonzero(np.less_equal(seg, 44, out=sc.get("byte_flags", seg.size, np.bool_)))
    n_fields = seps.size
    if n_fields == 0 or n_fields % n_columns:
        return None
    rows = n_fields // n_columns
    shape = (rows, n_columns)
    pattern = np.full(n_columns, 44, np.uint8)
    pattern[-1] = 10
    found = np.take(seg, seps, out=sc.get("sep_bytes", n_fields, np.uint8), mode="clip")
    b = sc.get("b", n_fields, np.bool_)  # a scratch flag per field
    if not np.equal(found.reshape(shape), pattern, out=b.reshape(shape)).all():
        return None
    # Now every other byte is > 44; with none > 57 ('9') the fields hold only '-./0-9'.
    only_digits_dots_minus = int(seg.max()) <= 57
    # seps becomes the fields' ends, then their lengths.
    seps += start
    starts = sc.get("starts", n_fields, np.int64)
    starts[0] = start
    np.add(seps[:-1], 1, out=starts[1:])
    length = seps
    length -= starts
    # Scratch words; several are reused below under other names once their first use is over.
    q = sc.get("q", n_fields, np.int64)
    shift = sc.get("shift", n_fields, _U)
    back = sc.get("back", n_fields, _U)
    w0 = sc.get("w0", n_fields, _U)
    w1 = sc.get("w1", n_fields, _U)
    w2 = sc.get("w2", n_fields, _U)
    lead = sc.get("lead", n_fields, _U)

    # The first 16 bytes of each field: 3 aligned words and shifts.
    np.right_shift(starts, 3, out=q)
    np.bitwise_and(starts, 7, out=shift.view(np.int64))
    shift <<= _U(3)
    np.subtract(_U(64), shift, out=back)  # a shift by 64 gives 0 in numpy
    words.take(q, out=w0, mode="clip")  # in range: the buffer has padding after the data
    q += 1
    words.take(q, out=w1, mode="clip")
    q += 1
    words.take(q, out=w2, mode="clip")
    np.right_shift(w0, shift, out=lead)
    np.left_shift(w1, back, out=w0)
    lead |= w0
    second = np.right_shift(w1, shift, out=w1)
    w2 <<= back
    second |= w2
    sign = np.equal(lead.view(np.uint8)[::8], 0x2D, out=sc.get("sign", n_fields, np.bool_))
    # Index of the first '.' among the first 8 bytes, or 8: a zero-byte search on lead ^ '.'.
    x = np.bitwise_xor(lead, _DOTS, out=w0)
    t = np.subtract(x, _ONES, out=w2)
    np.invert(x, out=x)
    t &= x
    t &= _HIGHS
    np.subtract(_U(0), t, out=x)
    t &= x  # lowest set bit only
    t -= _U(1)
    dot = np.bitwise_count(t, out=sc.get("dot", n_fields, np.uint8))
    dot >>= 3
    # The point, or the end of the field when there is none.
    d = np.minimum(dot, length, out=sc.get("d", n_fields, np.int64))

    # The 8 bytes before the point (d <= 8: all in lead) and the 8 after it (lead and second).
    d8 = np.left_shift(d.view(_U), _U(3), out=shift)
    np.subtract(_U(64), d8, out=back)
    int_raw = np.left_shift(lead, back, out=w0)
    d8 += _U(8)
    frac_raw = np.right_shift(lead, d8, out=w2)
    np.subtract(_U(64), d8, out=d8)
    second <<= d8
    frac_raw |= second

    k = np.subtract(d, sign, out=q)  # integer digits
    np.left_shift(k.view(_U), _U(3), out=shift)
    np.subtract(_U(64), shift, out=shift)
    mask = np.left_shift(_ALL, shift, out=back)
    int_raw ^= _ZEROS
    int_raw &= mask
    f = np.subtract(length, d, out=sc.get("f", n_fields, np.int64))
    f -= 1
    np.maximum(f, 0, out=f)  # fraction digits
    np.left_shift(f.view(_U), _U(3), out=mask)
    np.left_shift(_U(1), mask, out=mask)
    mask -= _U(1)
    frac_raw ^= _ZEROS
    frac_raw &= mask

    check = w1
    if only_digits_dots_minus:
        # Kept bytes are digits 0..9 or '-' '.' '/' (0x1D..0x1F after ^ '0'): bit 4 tells.
        np.bitwise_or(int_raw, frac_raw, out=check)
        check &= _U(0x1010101010101010)
    else:
        np.add(int_raw, _OVER9, out=check)
        check |= int_raw
        np.add(frac_raw, _OVER9, out=mask)
        check |= mask
        check |= frac_raw
        check &= _HIGHS
    ok = np.equal(check, _U(0), out=sc.get("ok", n_fields, np.bool_))  # every kept byte a digit
    ok &= np.less_equal(f, 8, out=b)
    k += f
    ok &= np.greater_equal(k, 1, out=b)  # at least one digit
    # No point in the first 8 bytes: only short integers.
    np.less(d, 8, out=b)
    b |= np.less_equal(length, 8, out=sc.get("b2", n_fields, np.bool_))
    ok &= b

    value = _parse8(int_raw)
    value *= _E8
    value += _parse8(frac_raw)
    ok &= np.less_equal(value, _MAX_EXACT, out=b)
    # One correctly rounded division of the magnitude, then the sign bit: equals float(text),
    # "-0" included (-0.0; rounding to nearest is symmetric, so -(m / 1e8) == (-m) / 1e8).
    out = np.true_divide(value.view(np.int64), 1e8, out=sc.get("values", n_fields, np.float64))
    sign_bit = f.view(_U)  # f is done with
    np.copyto(sign_bit, sign)
    sign_bit <<= _U(63)
    bits = out.view(_U)
    bits |= sign_bit
    return _Fields(out.reshape(shape), ok.reshape(shape), starts.reshape(shape),
                   length.reshape(shape), lead.reshape(shape))


def _decode_bools(
    lead_of: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """yes/no, true/false, y/n in any case from the first 8 bytes of each field: (value, ok)."""
    short = length <= 5
    mask = np.left_shift(_U(1), (np.minimum(length, 7).view(_U) << _U(3))) - _U(1)
    word = (lead_of | _LOWER) & mask  # ASCII letters to lower case; other bytes never become one
    true = np.zeros(word.shape, bool)
    false = np.zeros(word.shape, bool)
    for code in _TRUE_CODES:
        true |= word == code
    for code in _FALSE_CODES:
        false |= word == code
    return true.astype(np.float64), (true | false) & short


_POW10 = np.array([10**i for i in range(17)], np.uint64)
_POW10F = _POW10.astype(np.float64)  # exact: 10**16 < 2**53 * 2**16 and 5**16 < 2**53
_EXACT_INT_LIMIT = np.array([2**53 // 10**i for i in range(17)], np.uint64)


def _parse_long(
    words: np.ndarray, starts: np.ndarray, length: np.ndarray, lead: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fields with up to 8 integer and 16 fraction digits (0.0001234567), exactly: (values, ok).

    Run on the few fields the fast pass left; the value is M / 10**f with the integer M exact,
    so one correctly rounded division again.
    """
    sign = (lead & _U(0xFF)) == _U(0x2D)
    x = lead ^ _DOTS
    t = (x - _ONES) & ~x & _HIGHS
    t &= _U(0) - t
    dot = np.bitwise_count(t - _U(1)) >> 3
    d = np.minimum(dot, length)
    pos = starts + d - 8
    k = d - sign
    int_raw = (_gather(words, pos) ^ _ZEROS) & (_ALL << (_U(64) - (k.view(_U) << _U(3))))
    f = np.maximum(length - d - 1, 0)
    f1 = np.minimum(f, 8).view(_U) << _U(3)
    f2 = np.clip(f - 8, 0, 8).view(_U) << _U(3)
    frac1 = (_gather(words, pos, 9) ^ _ZEROS) & ((_U(1) << f1) - _U(1))
    frac2 = (_gather(words, pos, 17) ^ _ZEROS) & ((_U(1) << f2) - _U(1))
    bad = (int_raw + _OVER9) | int_raw | (frac1 + _OVER9) | frac1 | (frac2 + _OVER9) | frac2
    ok = (bad & _HIGHS) == _U(0)
    ok &= (f <= 16) & (k + f >= 1) & ((d < 8) | (length <= 8))
    fc = np.minimum(f, 16)
    whole = _parse8(int_raw)
    frac = _parse8(frac1) * _E8 + _parse8(frac2)  # 16 digits, left-aligned
    frac //= _POW10[16 - fc]  # the fraction's own digits; exact, the rest were zeros
    ok &= whole <= _EXACT_INT_LIMIT[fc]
    whole *= _POW10[fc]
    whole += frac
    ok &= whole <= _MAX_EXACT
    value = whole.astype(np.float64)
    value /= _POW10F[fc]
    np.negative(value, out=value, where=sign)
    return value, ok


def _every_line_has(buf: _Buffer, start: int, end: int, n_columns: int) -> bool:
    """True when every line in ``buf[start:end]`` is non-blank with ``n_columns`` fields."""
    seg = buf.u8[start:end]
    newlines = np.flatnonzero(seg == 10)
    if not newlines.size or newlines[0] == 0 or (np.diff(newlines) == 1).any():
        return False
    commas = np.cumsum(seg == 44)[newlines]
    return bool(commas[0] == n_columns - 1 and (np.diff(commas) == n_columns - 1).all())


def _parse_other(
    buf: _Buffer, start: int, end: int, first_line: int, layout: _Layout
) -> np.ndarray:
    """Lines the fast pass cannot take: numpy.loadtxt when it can, else the careful pass.

    loadtxt parses any float syntax in C (about twice the speed of float() per field here),
    but it accepts nan and inf and its errors do not name our columns; whenever it fails, or
    a value is not finite, the careful pass parses the piece again and finds the exact error.
    """
    text = _decode(buf.data[start:end], first_line, layout.file)
    if not any(layout.is_bool) and '"' not in text and _every_line_has(buf, start, end,
                                                                       layout.n_columns):
        try:
            values = np.loadtxt(io.StringIO(text), delimiter=",", usecols=layout.used,
                                comments=None, quotechar='"', ndmin=2, dtype=np.float64)
        except ValueError:
            pass
        else:
            if values.shape[0] == text.count("\n") and np.isfinite(values).all():
                return values
    return _parse_slow(text, first_line, layout)


@dataclass
class _Pending:
    """Numeric fields of a piece the fast pass left, for one batched pass per block."""

    rows: np.ndarray  # row in the piece
    cols: np.ndarray  # index into the used columns
    starts: np.ndarray
    length: np.ndarray
    lead: np.ndarray


def _parse_piece(
    buf: _Buffer, start: int, end: int, first_line: int, layout: _Layout, sc: _Scratch
) -> tuple[np.ndarray, _Pending | None]:
    """Parse the lines in ``buf.data[start:end]``: (rows, used columns) float64 and the fields
    still to do (bad or unusual numbers; see :func:`_finish_pending`). The values may be a view
    of ``sc``: copy them out before its next use."""
    fields = _parse_fast(buf.u8, buf.words, start, end, layout.n_columns, sc)
    if fields is None:
        return _parse_other(buf, start, end, first_line, layout), None
    used = list(layout.used)
    if used == list(range(layout.n_columns)):  # every column, in file order: no copies
        vals, good = fields.values, fields.ok
    else:
        shape = (fields.values.shape[0], len(used))
        n = shape[0] * shape[1]
        vals = np.take(fields.values, used, axis=1, mode="clip",
                       out=sc.get("used_values", n, np.float64).reshape(shape))
        good = np.take(fields.ok, used, axis=1, mode="clip",
                       out=sc.get("used_ok", n, np.bool_).reshape(shape))
    bool_cols = [j for j, is_bool in enumerate(layout.is_bool) if is_bool]
    if bool_cols:
        cols = [used[j] for j in bool_cols]
        vals[:, bool_cols], good[:, bool_cols] = _decode_bools(fields.lead[:, cols],
                                                               fields.length[:, cols])
    if good.all():
        return vals, None
    bad_rows, bad_cols = np.nonzero(~good)
    if bad_rows.size > max(64, good.size // 8):
        # Mostly another number format (exponents, 17 digits): numpy's own parser, or the
        # careful pass.
        return _parse_other(buf, start, end, first_line, layout), None
    file_cols = np.array(used)[bad_cols]
    return vals, _Pending(bad_rows, bad_cols, fields.starts[bad_rows, file_cols],
                          fields.length[bad_rows, file_cols], fields.lead[bad_rows, file_cols])


def _finish_pending(
    buf: _Buffer, layout: _Layout, pending: list[tuple[int, int, _Pending]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Values for the fields the fast pass left, as arrays (piece index, row, column, value);
    raises the DataError of the first bad one in file order. One vectorised pass for the whole
    block (numpy calls on a few hundred fields cost their overhead, not their work)."""
    if not pending:
        none = np.empty(0, np.int64)
        return none, none, none, np.empty(0)
    piece = np.concatenate([np.full(len(p.rows), i) for i, _, p in pending])
    rows = np.concatenate([p.rows for _, _, p in pending])
    cols = np.concatenate([p.cols for _, _, p in pending])
    starts = np.concatenate([p.starts for _, _, p in pending])
    length = np.concatenate([p.length for _, _, p in pending])
    lead = np.concatenate([p.lead for _, _, p in pending])
    first_lines = {i: first for i, first, _ in pending}
    values, ok = _parse_long(buf.words, starts, length, lead)
    numeric = ~np.array(layout.is_bool, bool)[cols]
    ok &= numeric
    for k in np.flatnonzero(~ok).tolist():  # in file order: pieces, then rows, then columns
        line = first_lines[int(piece[k])] + int(rows[k])
        j = int(cols[k])
        text = _decode(buf.data[int(starts[k]):int(starts[k] + length[k])], line, layout.file)
        values[k] = _convert(text, layout.is_bool[j], layout.names[j], line)
    return piece, rows, cols, values


# --------------------------------------------------------------------------------------------
# Blocks of a file, pieces of a block, on all cores
# --------------------------------------------------------------------------------------------

# The file is read in blocks into one reused buffer: fresh memory is slow to touch (page faults),
# and a 200 MB file then costs 8 MiB of buffer rather than 200 MB.
_BLOCK_BYTES = 8 * 1024 * 1024


def _workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class _Buffer:
    """A byte buffer with ``_PAD`` spare bytes on both sides, and numpy views of it."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data = bytearray(_PAD + (capacity + 7) // 8 * 8 + _PAD)
        self.start = self.end = _PAD
        self.u8 = np.frombuffer(self.data, np.uint8)
        self.words = np.frombuffer(self.data, np.uint64)

    @classmethod
    def from_bytes(cls, data: bytes) -> _Buffer:
        buf = cls(len(data))
        buf.data[_PAD:_PAD + len(data)] = data
        buf.end = _PAD + len(data)
        return buf


@dataclass
class _Block:
    """Complete lines of a file in a buffer, cut into pieces for the workers."""

    buf: _Buffer
    pieces: list[tuple[int, int, int, int]]  # (start, end, first line, line offset in block)
    n_lines: int
    first_line: int

    @property
    def start(self) -> int:
        return self.pieces[0][0]

    @property
    def end(self) -> int:
        return self.pieces[-1][1]


def _open(path: str | os.PathLike[str]):
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a directory, not a CSV file")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror}") from None


class _FileBlocks:
    """A CSV file as its header line and then blocks of complete data lines; hashes every byte."""

    def __init__(self, path: str | os.PathLike[str], block_bytes: int | None = None):
        block_bytes = block_bytes or _BLOCK_BYTES
        self.path = str(path)
        self.file = Path(path).name
        self._fh = _open(path)
        try:
            self.size = os.fstat(self._fh.fileno()).st_size
            self.hasher = hashlib.sha256()
            self._buf = _Buffer(block_bytes)
            self._scratch = _Scratch()  # for cutting blocks into pieces
            self._unhashed = (0, 0)
            self._eof = False
            while not self._eof and self._buf.data.find(b"\n", _PAD, self._buf.end) < 0:
                self._fill()
            buf = self._buf
            if buf.end == _PAD:
                raise DataError(f"file {self.path!r} is empty")
            cut = buf.data.find(b"\n", _PAD, buf.end)
            cut = buf.end if cut < 0 else cut
            try:
                text = buf.data[_PAD:cut].decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"file {self.path!r} is not UTF-8 text (line 1)", line=1) from None
            self.header_text = text.rstrip("\r").lstrip("\ufeff")
            buf.start = min(cut + 1, buf.end)
        except BaseException:
            self._fh.close()
            raise

    def __enter__(self) -> _FileBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def hash_pending(self) -> None:
        """Hash the bytes read since the last call (callers overlap this with parsing)."""
        at, n = self._unhashed
        if n:
            self.hasher.update(memoryview(self._buf.data)[at:at + n])
            self._unhashed = (0, 0)

    def _fill(self) -> None:
        """Move the unparsed tail to the front and read more after it; grow for long lines."""
        self.hash_pending()
        buf = self._buf
        carry = buf.end - buf.start
        if carry >= buf.capacity // 2:  # a line longer than half the buffer: make room
            bigger = _Buffer(buf.capacity * 2)
            bigger.data[_PAD:_PAD + carry] = buf.data[buf.start:buf.end]
            bigger.end = _PAD + carry
            self._buf = buf = bigger
        elif buf.start != _PAD:
            buf.data[_PAD:_PAD + carry] = buf.data[buf.start:buf.end]
            buf.start, buf.end = _PAD, _PAD + carry
        view = memoryview(buf.data)[buf.end:_PAD + buf.capacity]
        n = self._fh.readinto(view)
        if not n:
            self._eof = True
            return
        self._unhashed = (buf.end, n)
        buf.end += n

    def __iter__(self) -> Iterator[_Block]:
        line = 2
        while True:
            buf = self._buf
            if self._eof:
                if buf.end > buf.start and buf.data[buf.end - 1] != 10:
                    buf.data[buf.end] = 10  # a last line without a newline; the padding has room
                    buf.end += 1
                cut = buf.end
            else:
                cut = buf.data.rfind(b"\n", buf.start, buf.end) + 1
            if cut > buf.start:
                block = _make_block(buf, buf.start, cut, line, self._scratch)
                buf.start = cut
                yield block
                line += block.n_lines
            if self._eof:
                self.hash_pending()
                return
            self._fill()


def _make_block(
    buf: _Buffer, start: int, end: int, first_line: int, sc: _Scratch | None = None
) -> _Block:
    if buf.data.find(b"\r", start, end) >= 0:  # CRLF: a private copy without the CRs
        buf = _Buffer.from_bytes(bytes(buf.data[start:end]).replace(b"\r\n", b"\n"))
        start, end = buf.start, buf.end
    pieces = []
    pos, offset = start, 0
    data, u8 = buf.data, buf.u8
    sc = _Scratch() if sc is None else sc
    while pos < end:
        cut = data.find(b"\n", min(pos + _PIECE_BYTES, end - 1), end) + 1
        pieces.append((pos, cut, first_line + offset, offset))
        newline = np.equal(u8[pos:cut], 10, out=sc.get("newline", cut - pos, np.bool_))
        offset += int(np.count_nonzero(newline))
        pos = cut
    return _Block(buf, pieces, offset, first_line)


def _first_data_line(block: _Block, file: str) -> tuple[str, int] | None:
    """The first non-blank line of a block and its line number, or None."""
    data, pos = block.buf.data, block.start
    line = block.first_line
    while pos < block.end:
        cut = data.find(b"\n", pos, block.end)
        text = _decode(data[pos:cut], line, file)
        if text.strip():
            return text, line
        pos, line = cut + 1, line + 1
    return None


def _parse_block(
    block: _Block,
    layout: _Layout,
    pool: ThreadPoolExecutor | None,
    X: np.ndarray,
    y: np.ndarray | None,
    row0: int,
    while_waiting: Any = None,
    scratch: _ScratchPool | None = None,
) -> int:
    """Parse a block into ``X[row0:]`` (and ``y``); returns the rows written (blank lines skip).

    Pass the same ``scratch`` for every block of a file: its work arrays are then reused.
    """
    d = layout.n_features

    if scratch is None:
        scratch = _ScratchPool()

    def work(i: int) -> tuple[int, _Pending | None]:
        s, e, first, offset = block.pieces[i]
        sc = scratch.take()
        try:
            vals, pending = _parse_piece(block.buf, s, e, first, layout, sc)
            r0 = row0 + offset
            X[r0:r0 + len(vals)] = vals[:, :d]
            if y is not None:
                y[r0:r0 + len(vals)] = vals[:, d]
        finally:
            scratch.give(sc)
        return len(vals), pending

    outcomes: list[tuple[int, _Pending | None] | BaseException] = []
    if pool is None or len(block.pieces) < 2:
        if while_waiting is not None:
            while_waiting()
        for i in range(len(block.pieces)):
            try:
                outcomes.append(work(i))
            except DataError as exc:
                outcomes.append(exc)
                break
    else:
        futures = [pool.submit(work, i) for i in range(len(block.pieces))]
        try:
            if while_waiting is not None:
                while_waiting()
            for f in futures:
                exc = f.exception()
                if exc is not None and not isinstance(exc, DataError):
                    raise exc
                outcomes.append(exc if exc is not None else f.result())
                if exc is not None:
                    break
        finally:
            for f in futures:
                f.cancel()
    # Fields left by pieces before the first failed piece come first in the file.
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    pending = [(i, block.pieces[i][2], p) for i, (_, p) in enumerate(done) if p is not None]
    piece, r, j, values = _finish_pending(block.buf, layout, pending)
    if values.size:  # one write for all, not a Python loop: 0.6% of the fields with %.7g
        at = np.array([p[3] for p in block.pieces], np.int64)[piece]
        at += r
        at += row0
        in_x = j < d
        X[at[in_x], j[in_x]] = values[in_x]
        if y is not None:
            y[at[~in_x]] = values[~in_x]
    if len(done) < len(outcomes):
        raise outcomes[-1]  # type: ignore[misc]
    counts = [count for count, _ in done]
    rows = sum(counts)
    if rows != block.n_lines:  # blank lines were skipped: close the gaps
        at = row0
        for (_, _, _, offset), count in zip(block.pieces, counts, strict=True):
            if at != row0 + offset:
                X[at:at + count] = X[row0 + offset:row0 + offset + count]
                if y is not None:
                    y[at:at + count] = y[row0 + offset:row0 + offset + count]
            at += count
    return rows


def _check_rows(layout: _Layout, rows: int, y_min: float, y_max: float, target: str) -> None:
    if rows < 2:
        raise DataError(f"file {layout.file!r} has {rows} data row{'s' if rows != 1 else ''}; "
                        "at least 2 are needed", line=rows + 1)
    if y_min == y_max:
        raise DataError(f"target column {target!r} is constant (every row is {y_min:g}); "
                        "there is nothing to learn", column=target)


def _grow(a: np.ndarray, rows: int, capacity: int) -> np.ndarray:
    bigger = np.empty((capacity,) + a.shape[1:], a.dtype)
    bigger[:rows] = a[:rows]
    return bigger


# --------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------


def read_csv(
    path: str | os.PathLike[str], target: str, features: Sequence[str] | None = None
) -> Dataset:
    """Read and validate a CSV file whole: ``target`` is y, ``features`` (default: the rest) X."""
    with _FileBlocks(path) as blocks:
        layout = _make_layout(_parse_header(blocks.header_text, blocks.file), target, features,
                              blocks.file)
        d = layout.n_features
        X = np.empty((0, d))
        y = np.empty(0)
        rows = 0
        scratch = _ScratchPool()
        with ThreadPoolExecutor(_workers()) as pool:
            for block in blocks:
                refined = _block_layout(layout, block, blocks.file)
                if refined is None:
                    continue
                layout = refined
                if rows + block.n_lines > len(y):
                    # Guess the total from this block's bytes per line; untouched rows of a
                    # generous guess cost no memory, too small a guess costs one copy.
                    per_line = (block.end - block.start) / block.n_lines
                    guess = int(blocks.size / per_line * 1.1) + 1024
                    capacity = max(rows + block.n_lines, guess, len(y) * 3 // 2)
                    X, y = _grow(X, rows, capacity), _grow(y, rows, capacity)
                rows += _parse_block(block, layout, pool, X, y, rows, blocks.hash_pending,
                                     scratch)
        digest = blocks.hasher.hexdigest()
    X, y = X[:rows], y[:rows]
    _check_rows(layout, rows, float(y.min()) if rows else 0.0, float(y.max()) if rows else 1.0,
                target)
    fingerprint = Fingerprint(file=blocks.file, rows=rows, columns=list(layout.names),
                              sha256=digest)
    return Dataset(X=X, y=y, feature_names=list(layout.names[:d]), target=target,
                   fingerprint=fingerprint)


def _block_layout(layout: _Layout, block: _Block, file: str) -> _Layout | None:
    """``layout`` with its column kinds read from this block's first data line (until they are
    known), or None for a block without a data line."""
    if layout.is_bool:
        return layout
    first = _first_data_line(block, file)
    return None if first is None else _with_kinds(layout, *first)


def should_stream(path: str | os.PathLike[str]) -> bool:
    """True when the file is larger than :data:`STREAM_THRESHOLD_BYTES` and should be streamed."""
    try:
        return os.stat(path).st_size > STREAM_THRESHOLD_BYTES
    except FileNotFoundError:
        raise DataError(f"file {str(path)!r} does not exist") from None


def _iter_row_blocks(
    path: str | os.PathLike[str], header_layout: _Layout, pool: ThreadPoolExecutor
) -> Iterator[tuple[_FileBlocks, _Block, np.ndarray, np.ndarray | None, int]]:
    """Yield (file, block, X, y, rows) for each block of a file, parsed."""
    with _FileBlocks(path) as blocks:
        if _parse_header(blocks.header_text, blocks.file) != header_layout.header:
            raise DataError(f"file {blocks.file!r} changed: its header is different now", line=1)
        layout = header_layout
        scratch = _ScratchPool()
        for block in blocks:
            refined = _block_layout(layout, block, blocks.file)
            if refined is None:
                continue
            layout = refined
            X = np.empty((block.n_lines, layout.n_features))
            y = np.empty(block.n_lines) if len(layout.used) > layout.n_features else None
            rows = _parse_block(block, layout, pool, X, y, 0, blocks.hash_pending, scratch)
            yield blocks, block, X, y, rows


class ChunkReader:
    """A CSV file read in chunks of ``chunk_rows`` rows; iterable any number of times."""

    def __init__(self, path: str | os.PathLike[str], target: str,
                 features: Sequence[str] | None = None, chunk_rows: int = 65536):
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        with _FileBlocks(path, block_bytes=64 * 1024) as blocks:
            self._layout = _make_layout(_parse_header(blocks.header_text, blocks.file), target,
                                        features, blocks.file)
        self.path = Path(path)
        self.target = target
        self.feature_names = list(self._layout.names[:self._layout.n_features])
        self.chunk_rows = chunk_rows
        self.fingerprint: Fingerprint | None = None  # known after one complete pass

    def __iter__(self) -> Iterator[Chunk]:
        size, d = self.chunk_rows, self._layout.n_features
        rows = 0  # rows yielded
        y_min, y_max = math.inf, -math.inf
        X_part, y_part, filled = np.empty((size, d)), np.empty(size), 0
        hasher: Any = None
        with ThreadPoolExecutor(_workers()) as pool:
            for blocks, _, X, y, n in _iter_row_blocks(self.path, self._layout, pool):
                assert y is not None
                if n:
                    y_min, y_max = min(y_min, float(y[:n].min())), max(y_max, float(y[:n].max()))
                i = 0
                while i < n:
                    if filled == 0 and n - i >= size:  # a whole chunk: hand out a view
                        yield Chunk(X=X[i:i + size], y=y[i:i + size], start_row=rows)
                        rows, i = rows + size, i + size
                        continue
                    take = min(size - filled, n - i)
                    X_part[filled:filled + take] = X[i:i + take]
                    y_part[filled:filled + take] = y[i:i + take]
                    filled, i = filled + take, i + take
                    if filled == size:
                        yield Chunk(X=X_part, y=y_part, start_row=rows)
                        rows += size
                        X_part, y_part, filled = np.empty((size, d)), np.empty(size), 0
                hasher = blocks.hasher  # it has hashed every byte when the blocks run out
            if filled:
                yield Chunk(X=X_part[:filled], y=y_part[:filled], start_row=rows)
                rows += filled
        _check_rows(self._layout, rows, y_min if rows else 0.0, y_max if rows else 1.0,
                    self.target)
        sha256 = hasher.hexdigest()
        if self.fingerprint is not None and self.fingerprint.sha256 != sha256:
            raise DataError(f"file {self._layout.file!r} changed between passes")
        self.fingerprint = Fingerprint(file=self._layout.file, rows=rows,
                                       columns=list(self._layout.names), sha256=sha256)


def iter_chunks(
    path: str | os.PathLike[str],
    target: str,
    features: Sequence[str] | None = None,
    chunk_rows: int = 65536,
) -> ChunkReader:
    """Stream a CSV file in chunks with bounded memory; see :class:`ChunkReader`."""
    return ChunkReader(path, target, features, chunk_rows)


def iter_prediction_chunks(
    path: str | os.PathLike[str], feature_names: Sequence[str], chunk_rows: int = 65536
) -> Iterator[tuple[str, list[str], np.ndarray]]:
    """Yield (header line, data lines, X) per chunk for batch scoring; other columns are ignored.

    ``lines`` are the file's non-blank data lines without their line ends, row for row with X
    (at most ``chunk_rows`` of them), so a caller can write each line back with a prediction.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    with _FileBlocks(path, block_bytes=64 * 1024) as blocks:
        header_text = blocks.header_text
        layout = _make_layout(_parse_header(header_text, blocks.file), None, list(feature_names),
                              blocks.file)
    with ThreadPoolExecutor(_workers()) as pool:
        for blocks, block, X, _, n in _iter_row_blocks(path, layout, pool):
            text = _decode(block.buf.data[block.start:block.end], block.first_line, blocks.file)
            lines = [line for line in text.split("\n")[:-1] if line.strip()]
            for i in range(0, n, chunk_rows):
                j = min(i + chunk_rows, n)
                yield header_text, lines[i:j], X[i:j]


# --------------------------------------------------------------------------------------------
# JSON rows to CSV
# --------------------------------------------------------------------------------------------


def _cell(value: Any, index: int, key: str) -> str:
    where = f"rows[{index}], key {key!r}"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"{where}: {value} is not a finite number", column=key)
        return repr(value)
    if isinstance(value, str):
        word = _BOOL_WORDS.get(value.strip().lower())
        if word is not None:
            return "1" if word else "0"
        try:
            _convert(value, False, key, index)
        except DataError:
            pass
        else:
            return value.strip()
    raise DataError(f"{where}: {value!r} is not a number, a bool or yes/no", column=key)


def write_rows_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write JSON rows (all with the same keys) as CSV; bools and yes/no become 1/0."""
    path = Path(path)
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)) or not rows:
        raise DataError("rows must be a non-empty list of objects")
    if not isinstance(rows[0], Mapping):
        raise DataError("rows[0] is not an object")
    keys = list(rows[0])
    if not keys:
        raise DataError("rows[0] has no keys")
    for key in keys:
        if not isinstance(key, str) or not key.strip() or any(c in key for c in ',"\r\n'):
            raise DataError(f"rows[0]: {key!r} is not a usable column name", column=str(key))
    key_set = set(keys)
    lines = [",".join(keys)]
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise DataError(f"rows[{i}] is not an object")
        if row.keys() != key_set:
            missing = [k for k in keys if k not in row]
            if missing:
                raise DataError(f"rows[{i}]: key {missing[0]!r} is missing", column=missing[0])
            extra = next(k for k in row if k not in key_set)
            raise DataError(f"rows[{i}]: key {extra!r} is not in rows[0]", column=str(extra))
        lines.append(",".join(_cell(row[k], i, k) for k in keys))
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
