"""Importing a CSV file of sales: every line checked, every sale stored or none, in bounded memory.

The file is UTF-8 (a byte-order mark is fine) with commas between fields, double quotes
around a field where wanted, and LF or CRLF line ends. Line 1 names the columns, in any order
and case, blanks around a name ignored: carats and price, and optionally sold_at (empty: now)
and store_id (empty: the store of a store key; the admin key must name a known store on every
line). Each later line is one sale; blank lines are skipped. Values follow the rules of their
JSON forms, read by the text helpers of app/schemas.py (blanks around a value aside), so that
nothing is guessed at: no "today", no date without a time, no exponent, only ASCII digits.

A 422 lists every problem as {"loc": ["file", line, column], "msg", "type"}, the line counted
as an editor counts it (the header is line 1). The column is

- the column's name for a field that breaks its rule, or for the first field missing from a
  line that stops short;
- the 1-based position of a field that belongs to no column: a header field naming no column
  or one named before, a field beyond the header's last;
- 1 for a problem of the whole line: a line that is not CSV (a quote not closed on its line,
  text after a closing quote), a line over MAX_LINE_BYTES, no header (line 1), no sale (line 2).

A field that holds bytes that are not UTF-8, or a NUL byte, is reported as such. A bad header
stops the reading there; otherwise every bad line is reported, up to MAX_ERRORS problems, and a
last entry at ["file"] counts the problems not listed.

Memory stays bounded whatever the file's size: the spooled upload is read a line at a time and
handled CHUNK_ROWS lines at a time, each chunk checked and then inserted, all in one
transaction. At the first bad line that transaction is rolled back, which frees the database's
write lock at once, and the rest of the file is only checked, for the report. Reading the file
once keeps a good import, the common case, at the cost of one parse rather than two; the price
is that a bad file may have inserted (and rolled back) the chunks before its first bad line.
"""

import csv
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from app.db import Database
from app.errors import InvalidInput, Loc, error_item
from app.fields import (
    carats_from_text,
    id_from_text,
    price_from_text,
    timestamp_from_text,
    to_cents,
)
from app.orm import utcnow
from app.security import Caller
from app.services.sales import StoreIdLoc, check_store_ids, insert_rows

COLUMNS = ("carats", "price", "sold_at", "store_id")
REQUIRED = ("carats", "price")
CHUNK_ROWS = 5_000
MAX_ERRORS = 1_000
# Far longer than any good line: a longer one is an error, skipped without being held.
MAX_LINE_BYTES = 4_096
# Bytes that are not UTF-8 are decoded to these lone surrogates (surrogateescape).
_NOT_UTF8 = re.compile("[\udc80-\udcff]")

# A sale as read: its line, carats, price in cents, sold_at and store_id (None: not given).
Row = tuple[int, float, int, datetime | None, int | None]
Problem = dict[str, Any]


def _cents(text: str) -> int:
    return to_cents(price_from_text(text))


def _optional(read: Callable[[str], Any]) -> Callable[[str], Any]:
    return lambda text: read(text) if text else None


_READ: dict[str, Callable[[str], Any]] = {
    "carats": carats_from_text,
    "price": _cents,
    "sold_at": _optional(timestamp_from_text),
    "store_id": _optional(id_from_text),
}


def _problem(text: str, rule: str) -> str:
    if "\x00" in text:
        return "holds a NUL byte: this is not a text file"
    if _NOT_UTF8.search(text):
        return "is not UTF-8 text"
    return rule


class _Lines:
    """The file's lines as text for csv.reader, which must end each record on its own line:
    no good value holds a line break, so a quote left open is that line's error alone rather
    than a record that swallows the rest of the file."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.number = 0  # lines read
        self.done = 0  # the line the last record ended on
        self.unclosed = 0  # the last line whose record did not end on it
        self.too_long = 0  # the last line over MAX_LINE_BYTES

    def __iter__(self) -> Iterator[str]:
        while self.done == self.number:
            raw = self.file.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.number += 1
            if len(raw) > MAX_LINE_BYTES:
                self.too_long = self.number
                while raw and not raw.endswith(b"\n"):
                    raw = self.file.readline(MAX_LINE_BYTES)
                raw = b"\n"
            text = raw.decode("utf-8", "surrogateescape")
            yield text.removeprefix("\ufeff") if self.number == 1 else text
        self.unclosed = self.number


def _records(file: BinaryIO) -> Iterator[tuple[int, list[str] | str]]:
    """(line, fields) for each line, or (line, what is wrong) for a line that is not CSV."""
    lines = _Lines(file)
    while True:
        try:
            for fields in csv.reader(lines, strict=True):
                lines.done = lines.number
                if lines.too_long == lines.number:
                    yield lines.number, f"the line is longer than {MAX_LINE_BYTES} bytes"
                else:
                    yield lines.number, fields
            return
        except csv.Error as exc:
            # The reader starts afresh on the next line.
            lines.done = lines.number
            if lines.unclosed == lines.number:
                yield lines.number, "a quoted field is not closed on its line"
            else:
                yield lines.number, f"not CSV: {exc}"


# How to read a field: its column's place in COLUMNS, the column, and the column's reader.
Reader = tuple[int, str, Callable[[str], Any]]


def _readers(header: list[str] | str) -> tuple[list[Reader], list[Problem]]:
    """How to read each field of the lines after the header, and what is wrong with it."""
    if isinstance(header, str):
        return [], [error_item(["file", 1, 1], header)]
    wanted = f"{', '.join(REQUIRED)}, and optionally {' and '.join(COLUMNS[len(REQUIRED) :])}"
    if not header:
        return [], [error_item(["file", 1, 1], f"line 1 must name the columns: {wanted}")]
    names = [field.strip(" \t").lower() for field in header]
    problems = []
    for position, name in enumerate(names, 1):
        if name not in COLUMNS:
            why = _problem(name, f"{name!r} is not a column; the columns are {wanted}")
            problems.append(error_item(["file", 1, position], why, "extra_forbidden"))
        elif (first := names.index(name) + 1) < position:
            why = f"names column {name!r} a second time (field {first} names it too)"
            problems.append(error_item(["file", 1, position], why))
    problems += [
        error_item(["file", 1, name], f"no column {name!r}", "missing")
        for name in REQUIRED
        if name not in names
    ]
    if problems:
        return [], problems
    return [(COLUMNS.index(name), name, _READ[name]) for name in names], []


def _row(
    line: int, fields: list[str], readers: list[Reader], problems: list[Problem]
) -> Row | None:
    if len(fields) != len(readers):
        fewer = len(fields) < len(readers)
        place = readers[len(fields)][1] if fewer else len(readers) + 1
        counted = f"{len(fields)} field{'s' if len(fields) > 1 else ''}"
        why = f"the line has {counted}; the header names {len(readers)} columns"
        problems.append(
            error_item(["file", line, place], why, "missing" if fewer else "extra_forbidden")
        )
        return None
    values: list[Any] = [None] * len(COLUMNS)
    good = True
    for (slot, name, read), field in zip(readers, fields, strict=True):
        text = field.strip(" \t")
        try:
            values[slot] = read(text)
        except ValueError as exc:
            problems.append(error_item(["file", line, name], _problem(text, str(exc))))
            good = False
    if not good:
        return None
    carats, cents, sold_at, store_id = values
    return line, carats, cents, sold_at, store_id


def _chunks(file: BinaryIO) -> Iterator[tuple[list[Row], list[Problem]]]:
    """The file's sales and the problems of its lines, CHUNK_ROWS lines at a time."""
    records = _records(file)
    _, header = next(records, (1, []))
    readers, problems = _readers(header)
    if problems:
        yield [], problems
        return
    rows: list[Row] = []
    read = 0
    for line, fields in records:
        if not fields:
            continue
        if isinstance(fields, str):
            problems.append(error_item(["file", line, 1], fields))
        elif row := _row(line, fields, readers, problems):
            rows.append(row)
        read += 1
        if read % CHUNK_ROWS == 0:
            yield rows, problems
            rows, problems = [], []
    if read == 0:
        problems.append(error_item(["file", 2, 1], "no sales after the header"))
    if rows or problems:
        yield rows, problems


def _store_id_loc(rows: list[Row]) -> StoreIdLoc:
    def loc(index: int) -> Loc:
        return ["file", rows[index][0], "store_id"]

    return loc


def _checked(
    session: Session, caller: Caller, file: BinaryIO
) -> Iterator[tuple[list[Row], list[int], list[Problem]]]:
    """Each chunk's sales with their stores, and its problems in the order of the lines."""
    for rows, problems in _chunks(file):
        stores: list[int] = []
        try:
            stores = check_store_ids(session, caller, [r[4] for r in rows], _store_id_loc(rows))
        except InvalidInput as exc:
            problems += exc.detail
        yield rows, stores, sorted(problems, key=lambda problem: problem["loc"][1])


class _Report:
    """The first MAX_ERRORS problems, and a count of the others."""

    def __init__(self) -> None:
        self.listed: list[Problem] = []
        self.unlisted = 0

    def add(self, problems: list[Problem]) -> None:
        room = MAX_ERRORS - len(self.listed)
        self.listed += problems[:room]
        self.unlisted += max(0, len(problems) - room)

    def raise_any(self) -> None:
        if not self.listed:
            return
        rest = [
            error_item(
                ["file"],
                f"{self.unlisted} more problems not listed: only the first {MAX_ERRORS} are",
                "too_many_errors",
            )
        ]
        raise InvalidInput(self.listed + (rest if self.unlisted else []))


def import_sales(db: Database, caller: Caller, file: BinaryIO) -> int:
    """Store every sale of the file, or none (InvalidInput lists the bad lines)."""
    now = utcnow()
    report = _Report()
    count = 0
    with db.session() as reading, db.session(write=True) as writing:
        for rows, stores, problems in _checked(reading, caller, file):
            report.add(problems)
            if report.listed:
                # Nothing will be stored: give the write lock back at once, and read on only
                # to report the other bad lines.
                writing.rollback()
            elif rows:
                insert_rows(
                    writing,
                    [
                        {
                            "store_id": store_id,
                            "carats": carats,
                            "price_cents": cents,
                            "sold_at": sold_at or now,
                            "created_at": now,
                        }
                        for (_, carats, cents, sold_at, _), store_id in zip(
                            rows, stores, strict=True
                        )
                    ],
                )
                count += len(rows)
        report.raise_any()
    return count
