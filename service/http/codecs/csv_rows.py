"""CSV rows (MLflow's ``text/csv`` scoring body): a header naming the features, then one row
per line.

The header names every feature of the model once, in any order; no other column. A numeric
feature's cells are numbers as Python's ``float`` reads them (finite, not empty); a categorical
one's are its text, an empty cell meaning missing. Messages name the line and the column, as
``sgdserve train`` does for a training file. At most the row limit is read: a longer body is
refused before the rest of it is split into rows.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from ..errors import APIError
from .columns import BOOL, BYTES, Columns, row_count

__all__ = ["decode_csv"]


def invalid(message: str) -> APIError:
    return APIError(message, code="invalid_features")


def decode_csv(data: bytes, names: tuple[str, ...], datatypes: tuple[str, ...],
               limit: int) -> Columns:
    """The columns of a CSV body for inputs ``names`` taking ``datatypes``."""
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte order mark is not a column
    except UnicodeDecodeError as exc:
        raise APIError(f"the CSV body is not UTF-8 ({exc.reason} at byte {exc.start})",
                       code="invalid_csv") from None
    kinds = dict(zip(names, datatypes, strict=True))
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header == []:
            header = next(reader, None)
        if header is None:
            raise APIError("the CSV body is empty; send a header line naming the features ("
                           f"{', '.join(names)}), then one line per row", code="invalid_csv")
        header = [cell.strip() for cell in header]
        for name in names:
            if name not in header:
                raise invalid(f"CSV header: column {name!r} is missing; the model's features "
                              f"are {', '.join(names)}")
        for cell in header:
            if cell not in kinds:
                raise invalid(f"CSV header: unknown column {cell[:50]!r}; the model's features "
                              f"are {', '.join(names)}")
        if len(header) != len(names):
            repeated = next(c for c in header if header.count(c) > 1)
            raise invalid(f"CSV header: column {repeated!r} is given twice")
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                raise invalid(f"line {reader.line_num}: {len(row)} fields, but the header has "
                              f"{len(header)}")
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) > limit:
                break
    except csv.Error as exc:
        raise APIError(f"line {reader.line_num}: the CSV body is malformed: {exc}",
                       code="invalid_csv") from None
    row_count(len(rows), limit, "the CSV body")
    position = {name: p for p, name in enumerate(header)}
    values = []
    for name in names:
        cells = [row[position[name]] for row in rows]
        if kinds[name] == BYTES:
            values.append([cell if cell != "" else None for cell in cells])
        elif kinds[name] == BOOL:  # a yes/no word, 1/0 or true/false; empty is missing
            values.append([cell.strip() or None for cell in cells])
        else:
            values.append(_numbers(cells, name, lines))
    return Columns(values, len(rows))


def _numbers(cells: list[str], name: str, lines: list[int]) -> np.ndarray:
    try:
        column = np.array([float(cell) for cell in cells], dtype=np.float64)
    except ValueError:
        column = None
    if column is not None and np.isfinite(column).all():
        return column
    if any(not cell.strip() for cell in cells):  # empty cells: missing, imputed by the model
        for i, cell in enumerate(cells):
            if cell.strip():
                _number(cell, f"line {lines[i]}, column {name!r}")
        return [float(cell) if cell.strip() else None for cell in cells]  # type: ignore[return-value]
    for i, cell in enumerate(cells):
        where = f"line {lines[i]}, column {name!r}"
        try:
            value = float(cell)
        except ValueError:
            raise invalid(f"{where}: {cell[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise invalid(f"{where}: {cell[:40]!r} is not finite")
    raise AssertionError("unreachable: a bad cell was not found")  # pragma: no cover


def _number(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise invalid(f"{where}: {cell[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise invalid(f"{where}: {cell[:40]!r} is not finite")
    return value
