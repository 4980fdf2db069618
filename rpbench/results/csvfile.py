"""The append-only CSV files of a run dir (results.csv, samples.csv): appended one flushed record at a time, read back
with the schema's dtypes, and checked line by line so a damaged file is named, never half-read.

A record may span lines (a quoted field can hold a newline), so "the last complete record" is found by following
CSV quoting, not by the last newline.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..core.errors import ResultsError

Columns = Mapping[str, tuple[str, str]]

_NUMERIC = ("Int64", "Float64")


def complete_length(data: bytes) -> int:
    """Bytes of `data` up to the end of its last complete record: a newline outside quotes (an even number of `"`
    before it; an escaped quote counts twice). A kill mid-write leaves a partial record, maybe inside a quoted
    field; everything after this offset is that partial record."""
    quotes = data.count(b'"')
    if not quotes:
        return data.rfind(b"\n") + 1
    end = len(data)
    while True:
        newline = data.rfind(b"\n", 0, end)
        if newline < 0:
            return 0
        quotes -= data.count(b'"', newline, end)  # now: quotes before this newline
        if quotes % 2 == 0:
            return newline + 1
        end = newline


def repair(path: Path) -> None:
    """Drop a partial last record (a kill or a full disk mid-write) so the next append starts a fresh one."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        end = complete_length(data)
        if end != len(data):
            handle.truncate(end)


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def header(path: Path) -> list[str] | None:
    """The column names of a CSV file (None when it is empty or missing)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        return next(csv.reader(handle), None)


class AppendOnlyCsv:
    """One CSV file, appended a record at a time, each flushed and fsynced before the next."""

    def __init__(self, path: Path, columns: Iterable[str]):
        self.path = path
        self.columns = list(columns)
        repair(path)
        if not path.exists() or path.stat().st_size == 0:
            self._write_line(self.columns)
            self._migrated = True
        else:
            self._migrated = header(path) == self.columns

    def _write_line(self, values: Iterable[str]) -> None:
        self._write_lines([values])

    def _write_lines(self, records: Iterable[Iterable[str]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(records)
        with self.path.open("a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def _migrate(self) -> None:
        """A file written by an older rpbench lacks newer columns: rewrite it once, atomically, with every column
        (old values kept, new columns empty) before the first new record is appended."""
        frame = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        for column in self.columns:
            if column not in frame:
                frame[column] = ""
        partial = self.path.with_name(self.path.name + ".tmp")
        frame[self.columns].to_csv(partial, index=False, lineterminator="\n")
        os.replace(partial, self.path)
        self._migrated = True

    def append(self, row: Mapping[str, Any]) -> None:
        self.append_many([row])

    def append_many(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Several records in one write and one fsync (a case's samples)."""
        rows = list(rows)
        unknown = set().union(*rows) - set(self.columns) if rows else set()
        if unknown:
            raise KeyError(f"unknown column(s) {sorted(unknown)}")
        if not rows:
            return
        if not self._migrated:
            self._migrate()
        self._write_lines([format_value(row.get(col)) for col in self.columns] for row in rows)


def _number_problem(text: str) -> bool:
    try:
        float(text or 0)
    except ValueError:
        return True
    return False


def check_lines(path: Path, text: str, columns: Columns) -> None:
    """ResultsError naming the first record that does not fit the header: a wrong field count, or a non-number in a
    numeric column. Columns the schema does not know are read as they are."""
    reader = csv.reader(io.StringIO(text))
    names = next(reader, None)
    if names is None:
        return
    numeric = {index: name for index, name in enumerate(names) if columns.get(name, ("",))[0] in _NUMERIC}
    try:
        for record in reader:
            if not record:
                continue
            line = reader.line_num
            if len(record) != len(names):
                raise ResultsError(f"{path}: line {line} has {len(record)} fields, the header {len(names)}; "
                                   f"the file is damaged (fix or remove that line)")
            for index, name in numeric.items():
                if _number_problem(record[index]):
                    raise ResultsError(f"{path}: line {line}: column {name} holds {record[index][:40]!r}, not a "
                                       f"number; the file is damaged (fix or remove that line)")
    except csv.Error as err:
        raise ResultsError(f"{path}: line {reader.line_num}: {err}; the file is damaged") from None


def read(path: Path, columns: Columns) -> pd.DataFrame:
    """An append-only CSV as a DataFrame with the schema's dtypes, a partial last record ignored; ResultsError with
    one line when the file cannot be read as one."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ResultsError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        text = data[: complete_length(data)].decode("utf-8")
    except UnicodeDecodeError as err:
        raise ResultsError(f"{path}: not UTF-8 text (byte {err.start}); the file is damaged") from None
    if not text.strip():
        raise ResultsError(f"{path}: empty file, no header")
    check_lines(path, text, columns)
    dtypes = {name: dtype for name, (dtype, _) in columns.items() if dtype != "boolean"}
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=dtypes, keep_default_na=True)
    except (ValueError, TypeError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResultsError(f"{path}: unreadable table ({first})") from None
    for name, (dtype, _) in columns.items():
        if dtype == "boolean" and name in frame:
            frame[name] = frame[name].map({True: True, False: False, "true": True, "false": False}).astype("boolean")
    return frame


def records(path: Path) -> list[dict[str, str]]:
    """The complete records of an append-only CSV as written (strings, "" for empty), a partial last one left out;
    [] when the file is missing or empty. For copying rows between run dirs without a round trip through dtypes."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise ResultsError(f"{path}: cannot read ({err.strerror or err})") from None
    text = data[: complete_length(data)].decode("utf-8", errors="replace")
    try:
        return list(csv.DictReader(io.StringIO(text)))
    except csv.Error as err:
        raise ResultsError(f"{path}: {err}; the file is damaged") from None


def oserror_line(path: Path, err: OSError) -> str:
    return f"{path}: {err.strerror or err}"


def write_file(path: str | Path, content: str | bytes) -> Path:
    """Write one output file (a report or an export); ResultsError with one line when it cannot be written."""
    path = Path(path)
    partial = path.with_name(path.name + ".tmp")
    try:
        if isinstance(content, bytes):
            partial.write_bytes(content)
        else:
            partial.write_text(content, encoding="utf-8")
        os.replace(partial, path)  # a reader (or a kill) sees the old file or the new one, never half of one
    except OSError as err:
        try:
            partial.unlink(missing_ok=True)
        except OSError:  # under a file, a name too long: nothing was written
            pass
        raise ResultsError(f"cannot write {oserror_line(path, err)}") from None
    return path


def output_file(path: str | Path, flag: str) -> Path:
    """A file an option names for writing (a page, an export), checked before any work: ResultsError with one line
    when it is a directory or its directory does not exist."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ResultsError(f"{flag} {path}: is a directory; give a file path")
        if not path.parent.is_dir():
            raise ResultsError(f"{flag} {path}: {path.parent} is not a directory")
    except OSError as err:
        raise ResultsError(f"{flag} {oserror_line(path, err)}") from None
    return path
