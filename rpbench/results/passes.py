"""What a run dir says about its passes beyond the samples: the round of the sweep each pass was taken in (rounds.csv,
joined into the samples so speedups can pair passes), the reference kernel's timings (reference.csv: every one,
appended and flushed as taken, so a killed sweep keeps them and its resume adds to them) and the run's drift in
run.json (`drift`, rewritten at the end of every sweep session). A run from before rpbench timed a reference kernel
has neither: its drift is unknown, and its passes are not paired.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.drift import Drift, ReferenceTiming
from ..core.errors import ExecutionError, ResultsError
from ..core.schema import REFERENCE_COLUMNS, ROUND_COLUMNS
from . import csvfile
from .csvfile import write_file

REFERENCE = "reference.csv"
RUN = "run.json"
ROUNDS = "rounds.csv"


def with_sweep_rounds(samples: pd.DataFrame, run_dir: Path) -> pd.DataFrame:
    """samples.csv with each sample's `sweep_round` joined in from rounds.csv by (case_id, round); empty where
    rounds.csv does not say (older runs, a damaged file: the passes are then not paired, nothing else is lost)."""
    frame = samples.assign(sweep_round=pd.Series(pd.NA, index=samples.index, dtype="Int64"))
    passes = Path(run_dir) / ROUNDS
    if frame.empty or "round" not in frame or not passes.is_file() or not passes.stat().st_size:
        return frame
    try:
        rounds = csvfile.read(passes, ROUND_COLUMNS)
    except ResultsError:
        return frame
    if "sweep_round" not in rounds:
        return frame
    keys = rounds.dropna(subset=["sweep_round"]).drop_duplicates(["case_id", "round"], keep="last")
    joined = frame.drop(columns="sweep_round").merge(keys[["case_id", "round", "sweep_round"]],
                                                     on=["case_id", "round"], how="left")
    return joined.set_axis(frame.index)


class ReferenceLog:
    """reference.csv of a run dir, appended one flushed timing at a time, and the run's drift in run.json."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._file = csvfile.AppendOnlyCsv(self.run_dir / REFERENCE, REFERENCE_COLUMNS)

    def append(self, timing: ReferenceTiming) -> None:
        """One timing of the reference kernel, flushed (a resume's drift counts it)."""
        try:
            self._file.append(reference_row(timing))
        except OSError as err:
            raise ExecutionError(f"cannot write {csvfile.oserror_line(self.run_dir, err)}") from None

    def timings(self) -> list[ReferenceTiming]:
        """Every timing of this run so far, earlier sessions' included."""
        return read_timings(self.run_dir)

    def record_drift(self, drift: Drift | None) -> None:
        """The run's drift into run.json."""
        record_drift(self.run_dir, drift)


def reference_row(timing: ReferenceTiming) -> dict[str, Any]:
    """A reference.csv line of one timing."""
    return {"sweep_round": timing.sweep_round, "started_at": timing.started_at, "median_ms": timing.median_ms,
            "n_samples": timing.n_samples, "disturbed": timing.disturbed, "workload": timing.workload}


def read_timings(run_dir: Path) -> list[ReferenceTiming]:
    """Every timing reference.csv holds, in the order taken; [] when it is absent or damaged (the drift is then
    unknown, nothing else is lost)."""
    path = Path(run_dir) / REFERENCE
    if not path.is_file() or not path.stat().st_size:
        return []
    try:
        frame = csvfile.read(path, REFERENCE_COLUMNS)
    except ResultsError:
        return []
    found = []
    for line in frame.itertuples():
        median = line.median_ms
        if median is None or not isinstance(median, float) or not math.isfinite(median) or median <= 0:
            continue
        found.append(ReferenceTiming(median_ms=float(median), n_samples=int(_or(line.n_samples, 0)),
                                     sweep_round=int(_or(line.sweep_round, 0)), started_at=_text(line.started_at),
                                     disturbed=bool(_or(line.disturbed, False)), workload=_text(line.workload) or ""))
    return found


def _or(value: Any, default: Any) -> Any:
    try:
        return default if value is None or value != value else value  # NaN and pd.NA
    except TypeError:  # pd.NA compares to NA
        return default


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def record_drift(run_dir: Path, drift: Drift | None) -> None:
    """Put the run's drift (from every reference timing of every session) into run.json, atomically."""
    path = Path(run_dir) / RUN
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return  # a damaged run.json is the resume rules' to report; the drift stays in reference.csv
    if not isinstance(record, dict):
        return
    record["drift"] = None if drift is None else drift.to_json()
    write_file(path, json.dumps(record, indent=2) + "\n")


def run_drift(run_dir: Path) -> Drift | None:
    """The drift of a run: run.json's, else from reference.csv (a sweep killed before it could write run.json),
    else None (a run without a reference kernel)."""
    path = Path(run_dir) / RUN
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        record = {}
    saved = Drift.from_json(record.get("drift")) if isinstance(record, dict) else None
    return saved or Drift.of(read_timings(run_dir))
