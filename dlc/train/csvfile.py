"""Reading a CSV file of numbers, with errors that point at the line and field at fault."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from dlc.errors import DlcError, Span
from dlc.files import read_regular

#: The largest CSV file read; larger data belongs in an .npz archive.
MAX_CSV_BYTES = 1 << 30

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


@dataclass(frozen=True)
class Table:
    """A parsed CSV file: the header's line and text, and the rows' lines and values."""

    path: str
    text: str
    header: tuple[int, str]
    lines: tuple[int, ...]
    values: np.ndarray

    def fielderror(self, message: str, row: int, column: int) -> DlcError:
        line = self.lines[row]
        text, start = _fields(self.text.split("\n")[line - 1])[column]
        return error(self.path, self.text, message, Span(line, start, line, start + len(text)))


def error(path: str, text: str, message: str, span: Span, hint: str | None = None) -> DlcError:
    return DlcError(message, span, hint=hint).in_file(path, text)


def _fields(line: str) -> list[tuple[str, int]]:
    """The comma-separated fields of a line, stripped, each with its 1-based start column."""
    fields, start = [], 1
    for piece in line.rstrip("\r").split(","):
        lead = len(piece) - len(piece.lstrip())
        fields.append((piece.strip(), start + lead))
        start += len(piece) + 1
    return fields


def _read_text(path: str) -> str:
    data = read_regular(path, MAX_CSV_BYTES)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        shown = data[: exc.start].decode("utf-8", errors="replace") + "\ufffd"
        span = Span(line, column, line, column + 1)
        raise error(path, shown, "the file is not valid UTF-8 text", span) from None


def read_csv(path: str) -> Table:
    text = _read_text(path)
    lines = text.split("\n")
    used = [(no, line.rstrip("\r")) for no, line in enumerate(lines, 1) if line.strip()]
    if not used:
        message = "the file is empty: expected a header row, then one row per example"
        raise error(path, text, message, Span(1, 1, 1, 1))
    (head_no, head), rows = used[0], used[1:]
    names = _fields(head)
    end = Span(head_no, 1, head_no, len(head) + 1)
    if all(_NUMBER.fullmatch(f) or _NOT_FINITE.fullmatch(f) for f, _ in names):
        hint = f"add a first line naming the {len(names)} columns, such as x1,x2,y"
        raise error(
            path, text, "the first row holds numbers, not column names: the header row is missing", end, hint
        )
    if not rows:
        raise error(path, text, "the file has a header but no data rows", end)
    values = np.empty((len(rows), len(names)))
    for i, (no, line) in enumerate(rows):
        values[i] = _parse_row(path, text, no, line, len(names), cut=no == len(lines))
    return Table(path, text, (head_no, head), tuple(no for no, _ in rows), values)


def _parse_row(path: str, text: str, no: int, line: str, width: int, cut: bool) -> list[float]:
    """The numbers of one row; ``cut`` when it is the file's last line, with no newline after it."""
    fields = _fields(line)
    if len(fields) > width:
        message = f"this row has {len(fields)} fields, but the header has {width}"
        raise error(path, text, message, Span(no, fields[width][1], no, len(line) + 1))
    if len(fields) < width:
        message = f"this row has {len(fields)} fields, but the header has {width}"
        if cut:
            message = f"the file ends in the middle of a row: it has {len(fields)} of {width} fields"
        hint = "the file looks truncated" if cut else None
        raise error(path, text, message, Span(no, len(line) + 1, no, len(line) + 2), hint)
    return [_number(path, text, no, field, column) for field, column in fields]


def _number(path: str, text: str, no: int, field: str, column: int) -> float:
    if _NUMBER.fullmatch(field):
        value = float(field)
        if math.isfinite(value):
            return value
        message = f"{field} is too large for a 64-bit float"
    elif _NOT_FINITE.fullmatch(field):
        message = f"'{field}' is not a finite number: the data may not hold NaN or infinity"
    elif not field:
        message = "empty field: expected a number"
    else:
        message = f"'{field}' is not a number"
    raise error(path, text, message, Span(no, column, no, column + max(len(field), 1)))
