"""The results dir, and the only code that reads or writes one: rows appended and flushed one at a time, so a
killed sweep loses nothing finished.

Layout: results.csv (one row per case), samples.csv (every timed sample), env.json, suite.toml, report.html, and
traces/<case_id>.json.gz (written by the profiler at the path `RunWriter.trace_path` gives). A `Measurement`
becomes a results row on its way in (`rows.row_of`) and nowhere else. No torch here.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..core.errors import ResultsError
from ..core.measurement import Measurement
from ..core.schema import COLUMNS, SAMPLE_COLUMNS, STATUSES
from .rows import row_of

RESULTS = "results.csv"
SAMPLES = "samples.csv"
ENV = "env.json"
SUITE = "suite.toml"
REPORT = "report.html"
TRACES = "traces"


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

    def append(self, measured: Measurement) -> None:
        """One measured case: its samples, then its row."""
        self.append_row(row_of(measured), measured.samples)

    def append_row(self, row: Mapping[str, Any], samples: Iterable[float] = ()) -> None:
        """Samples first, then the row: a row on disk always has its samples."""
        case_id = row["case_id"]
        for index, latency in enumerate(samples):
            self._samples.append({"case_id": case_id, "sample": index, "latency_ms": latency})
        self._results.append(row)

    def record_environment(self, env: Mapping[str, Any]) -> None:
        """Write env.json; a resume (the dir already has finished cases) keeps the environment the run started in
        and adds its own under `resumed`."""
        first = load_env(self.run_dir) if self.finished_case_ids() else {}
        if first:
            env = {**first, "resumed": [*first.get("resumed", []), dict(env)]}
        (self.run_dir / ENV).write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")

    def record_suite(self, text: str) -> None:
        """Keep a copy of the suite file as the run started it (a resume leaves the first copy)."""
        path = self.run_dir / SUITE
        if not path.exists():
            path.write_text(text, encoding="utf-8")

    def trace_path(self, case_id: str) -> Path:
        """Where the profiler trace of a case goes (the profiler writes the file)."""
        return self.run_dir / TRACES / f"{case_id}.json.gz"

    def relative(self, path: Path) -> str:
        """A path inside the run dir as the `trace` column stores it."""
        return path.relative_to(self.run_dir).as_posix()


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


@dataclass(frozen=True)
class Run:
    """A results dir read back: its directory, its table (schema dtypes) and its env.json."""

    directory: Path
    frame: pd.DataFrame
    env: dict[str, Any]


def load_run(path: str | Path) -> Run:
    """A results dir (or its results.csv) with its environment; ResultsError when it is not one."""
    directory = results_path(path).parent
    return Run(directory=directory, frame=load(directory), env=load_env(directory))


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


def suite_copy(run_dir: str | Path) -> Path:
    """The suite.toml a run dir keeps (what `--resume` runs); ResultsError when the dir is not a run dir."""
    path = Path(run_dir) / SUITE
    if not path.is_file():
        raise ResultsError(f"--resume {run_dir}: not a results dir of rpbench (no {SUITE} inside)")
    return path


def holds_results(run_dir: str | Path) -> bool:
    """True when the dir already has a results table (a new sweep must not write into it)."""
    return (Path(run_dir) / RESULTS).exists()


def write_file(path: str | Path, content: str | bytes) -> Path:
    """Write one output file (a report or an export); ResultsError with one line when it cannot be written."""
    path = Path(path)
    try:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    except OSError as err:
        raise ResultsError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def write_report(run_dir: str | Path, html: str) -> Path:
    """report.html of a run dir (or of the dir holding the given results.csv)."""
    return write_file(results_path(run_dir).parent / REPORT, html)
