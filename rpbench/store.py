"""The results dir: rows appended and flushed one at a time, so a killed sweep loses nothing finished.

Layout: results.csv (one row per case), samples.csv (every timed sample), env.json, suite.toml.
No torch here.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .schema import COLUMNS, SAMPLE_COLUMNS, STATUSES

RESULTS = "results.csv"
SAMPLES = "samples.csv"
ENV = "env.json"
SUITE = "suite.toml"


class ResultsError(Exception):
    """A path is not a usable results dir; the message is one line for the user."""


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _repair_partial_line(path: Path) -> None:
    """Drop a half-written last line (a kill mid-write) so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data.endswith(b"\n"):
            return
        handle.truncate(data.rfind(b"\n") + 1)


class _AppendOnlyCsv:
    def __init__(self, path: Path, columns: Iterable[str]):
        self.path = path
        self.columns = list(columns)
        _repair_partial_line(path)
        if not path.exists() or path.stat().st_size == 0:
            self._write_line(self.columns)

    def _write_line(self, values: Iterable[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        with self.path.open("a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def append(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"unknown column(s) {sorted(unknown)}")
        self._write_line(_format(row.get(col)) for col in self.columns)


class RunWriter:
    """Appends rows and samples to a run dir; reopening an existing dir continues it (resume)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._results = _AppendOnlyCsv(self.run_dir / RESULTS, COLUMNS)
        self._drop_orphan_samples()
        self._samples = _AppendOnlyCsv(self.run_dir / SAMPLES, SAMPLE_COLUMNS)

    def _drop_orphan_samples(self) -> None:
        """Samples written just before a kill, for a row that never made it, would be duplicated on resume."""
        path = self.run_dir / SAMPLES
        if not path.exists() or path.stat().st_size == 0:
            return
        _repair_partial_line(path)
        samples = _read_csv(path, SAMPLE_COLUMNS)
        keep = samples["case_id"].isin(self.finished_case_ids())
        if keep.all():
            return
        partial = path.with_suffix(".csv.tmp")
        samples[keep].to_csv(partial, index=False)
        os.replace(partial, path)  # atomic: a kill here leaves either the old or the new file

    def finished_case_ids(self) -> set[str]:
        """Cases already written with a final status (skipped on resume)."""
        frame = _read_csv(self.run_dir / RESULTS, COLUMNS)
        return set(frame.loc[frame["status"].isin(STATUSES), "case_id"].dropna())

    def append(self, row: Mapping[str, Any], samples: Iterable[float] = ()) -> None:
        """Samples first, then the row: a row on disk always has its samples."""
        case_id = row["case_id"]
        for index, latency in enumerate(samples):
            self._samples.append({"case_id": case_id, "sample": index, "latency_ms": latency})
        self._results.append(row)

    def write_json(self, name: str, payload: Mapping[str, Any]) -> None:
        (self.run_dir / name).write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        (self.run_dir / name).write_text(text, encoding="utf-8")


def _read_csv(path: Path, columns: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """Read an append-only CSV, ignoring a half-written last line (a sweep killed mid-write)."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    dtypes = {name: dtype for name, (dtype, _) in columns.items() if dtype != "boolean"}
    frame = pd.read_csv(io.StringIO(text), dtype=dtypes, keep_default_na=True)
    for name, (dtype, _) in columns.items():
        if dtype == "boolean" and name in frame:
            frame[name] = frame[name].map({True: True, False: False, "true": True, "false": False}).astype("boolean")
    return frame


def results_path(path: str | Path) -> Path:
    """Resolve a run dir or a results.csv path, or raise ResultsError with one line."""
    path = Path(path)
    csv_path = path / RESULTS if path.is_dir() else path
    if not path.exists():
        raise ResultsError(f"{path}: no such file or directory")
    if not csv_path.is_file():
        raise ResultsError(f"{path}: not a results dir (no {RESULTS} inside)")
    return csv_path


def load(path: str | Path) -> pd.DataFrame:
    """A results dir as a DataFrame with the schema's dtypes; one-line ResultsError when it is not one."""
    csv_path = results_path(path)
    try:
        frame = _read_csv(csv_path, COLUMNS)
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{csv_path}: empty file, no header") from None
    except (ValueError, pd.errors.ParserError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ResultsError(f"{csv_path}: unreadable results table ({first})") from None
    required = ("case_id", "attention", "tokens", "status", "latency_ms_median")
    missing = [col for col in required if col not in frame.columns]
    if missing:
        raise ResultsError(f"{csv_path}: missing column(s) {', '.join(missing)}; is this an rpbench results file?")
    if frame.empty:
        raise ResultsError(f"{csv_path}: no rows yet")
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.Series(pd.NA, index=frame.index, dtype=COLUMNS[col][0])
    return frame


def load_samples(path: str | Path) -> pd.DataFrame:
    """samples.csv of a run dir (long format), empty frame when absent."""
    run_dir = results_path(path).parent
    samples = run_dir / SAMPLES
    if not samples.is_file() or samples.stat().st_size == 0:
        return pd.DataFrame({c: pd.Series(dtype=d) for c, (d, _) in SAMPLE_COLUMNS.items()})
    return _read_csv(samples, SAMPLE_COLUMNS)


def load_env(path: str | Path) -> dict[str, Any]:
    """env.json of a run dir, {} when absent or unreadable."""
    env = results_path(path).parent / ENV
    try:
        return json.loads(env.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
