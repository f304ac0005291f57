"""Reading the CSV tables behind the rules: every bad value is refused with its file and line."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from gateway.errors import GatewayError

T = TypeVar("T")
K = TypeVar("K")
Row = dict[str, str]


class ReferenceDataError(GatewayError):
    """A reference or control table is unreadable or wrong; names the file and the line."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        super().__init__(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")


class BadValue(ValueError):
    """Raised by a row parser; the reader adds the file and line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TableInfo:
    """Which file a table was read from, its declared version and provenance, and its content hash."""

    name: str
    source: str
    version: str
    provenance: str
    sha256: str
    rows: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "version": self.version,
            "provenance": self.provenance,
            "sha256": self.sha256,
            "rows": self.rows,
        }


def parse_table(
    data: bytes, source: str, columns: Sequence[str], parse: Callable[[Row], T]
) -> list[tuple[int, T]]:
    """Each row parsed, with its line number; any problem raises ``ReferenceDataError`` at that line."""
    parsed = []
    for line, row in _rows(data, source, columns):
        try:
            parsed.append((line, parse(row)))
        except (BadValue, InvalidOperation) as exc:
            raise ReferenceDataError(source, line, str(exc) or "not a number") from None
    return parsed


def unique_index(items: Iterable[tuple[int, T]], source: str, key: Callable[[T], K], what: str) -> dict[K, T]:
    index: dict[K, T] = {}
    for line, item in items:
        k = key(item)
        if k in index:
            raise ReferenceDataError(source, line, f"{what} {k} appears twice")
        index[k] = item
    return index


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def required(row: Row, column: str) -> str:
    value = row[column]
    if not value:
        raise BadValue(f"{column} is empty")
    return value


def one_of(row: Row, column: str, allowed: Iterable[str]) -> str:
    value = row[column]
    options = tuple(allowed)
    if value not in options:
        raise BadValue(f"{column} is {value!r}; expected one of {', '.join(options)}")
    return value


def decimal(row: Row, column: str, *, positive: bool = True) -> Decimal:
    try:
        value = Decimal(required(row, column))
    except InvalidOperation:
        raise BadValue(f"{column} is {row[column]!r}, not a number") from None
    if not value.is_finite() or value < 0 or (positive and value == 0):
        least = "greater than zero" if positive else "zero or more"
        raise BadValue(f"{column} is {row[column]!r}; it must be a number {least}")
    return value


def integer(row: Row, column: str) -> int:
    text = required(row, column)
    if not text.isdigit() or int(text) <= 0:
        raise BadValue(f"{column} is {text!r}; it must be a whole number greater than zero")
    return int(text)


def iso_date(row: Row, column: str) -> date | None:
    text = row[column]
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadValue(f"{column} is {text!r}, not a date (YYYY-MM-DD)") from None


def _rows(data: bytes, source: str, columns: Sequence[str]) -> Iterator[tuple[int, Row]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReferenceDataError(source, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in columns if c not in (reader.fieldnames or ())]
    if missing:
        raise ReferenceDataError(source, 1, f"the header lacks the column(s) {', '.join(missing)}")
    for row in reader:
        if None in row or None in row.values():
            raise ReferenceDataError(source, reader.line_num, "wrong number of fields")
        yield reader.line_num, {k: v.strip() for k, v in row.items()}
