"""Linking profiler traces to finished rows. `sweep --profile` traces every timed case only after all cases are timed,
so a row is written first and its `trace` set afterwards; after a kill, a resume traces the rows left untraced."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.schema import COLUMNS, MEASURED_STATUSES
from . import csvfile
from .csvfile import write_file


def untraced(results: Path) -> pd.DataFrame:
    """Rows of results.csv with timed samples and no trace yet."""
    frame = csvfile.read(results, COLUMNS)
    timed = frame["status"].isin(MEASURED_STATUSES) & (frame["n_samples"].fillna(0) > 0)
    return frame[timed & frame["trace"].isna()]


def link(results: Path, case_id: str, trace: str | None = None, note: str | None = None) -> None:
    """Set a row's `trace` and/or add a note: results.csv is rewritten atomically (a kill leaves the old file or
    the new one), every other value exactly as written; ResultsError with one line when it cannot be."""
    frame = pd.read_csv(results, dtype=str, keep_default_na=False)  # every value back exactly as it was written
    rows = frame["case_id"] == case_id
    if trace is not None:
        frame.loc[rows, "trace"] = trace
    if note:
        frame.loc[rows, "notes"] = [f"{old}; {note}" if old else note for old in frame.loc[rows, "notes"]]
    write_file(results, frame.to_csv(index=False, lineterminator="\n"))
