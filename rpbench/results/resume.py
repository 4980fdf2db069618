"""Opening a run dir for a sweep: one writer at a time (the lock), and the rules that keep one dir one sweep.

A new run takes a new or empty dir (or one a failed start left without rows). A resume must be the same sweep: the
suite text it started with (unedited), the same --filter and --device, rows timed with the same [measure] settings,
and every finished row's samples still on disk. Each refusal is one line, given before anything in the dir changes.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ..core.case import Timing
from ..core.errors import ResultsError
from ..core.schema import COLUMNS, SAMPLE_COLUMNS
from . import csvfile
from .lock import RunLock
from .store import RESULTS, RUN, RUN_FILES, SAMPLES, SUITE, RunWriter, make_dir, suite_copy, write_file


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """What a sweep is: the suite (its text), the [measure] settings (Timing JSON), and the flags that choose its
    cases. Written to run.json when the run starts; a resume must be the same sweep."""

    suite: str
    suite_text: str
    timing: str
    filter: str | None = None
    device: str | None = None
    command: str = ""
    device_names: tuple[tuple[str, str], ...] = ()  # (device, model) this sweep runs on: a resume must match

    @property
    def suite_sha256(self) -> str:
        return sha256_text(self.suite_text)

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "suite_sha256": self.suite_sha256, "timing": json.loads(self.timing),
                "filter": self.filter, "device": self.device, "command": self.command,
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def recorded_run(run_dir: str | Path) -> dict[str, Any]:
    """run.json of a run dir ({} for a dir written before rpbench kept one); ResultsError when it is damaged."""
    path = Path(run_dir) / RUN
    if not path.exists():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: unreadable ({type(err).__name__}); it says which sweep the dir holds, so "
                           f"the dir cannot be resumed safely") from None
    if not isinstance(record, dict):
        raise ResultsError(f"{path}: not a JSON object; the dir cannot be resumed safely")
    return record


@contextmanager
def open_run(run_dir: str | Path, record: RunRecord, resume: bool) -> Iterator[RunWriter]:
    """The run dir of one sweep, locked against every other writer while the block runs.

    A new run (resume False) takes a new or empty dir, or one a failed start left without rows. A resume takes a
    run dir of the same sweep only: the same suite text (unedited since the start), filter and device, rows timed
    with the same settings, and every finished row's samples still on disk. Anything else is a ResultsError with one
    line, raised before anything in the dir changes: the rules are checked before the lock is taken (so a refused
    sweep leaves no trace) and again under it."""
    run_dir = Path(run_dir)
    _make_dir(run_dir, resume)
    check = check_resume if resume else _check_new
    check(run_dir, record)  # before the lock: a refused sweep leaves no trace in the dir
    lock = RunLock(run_dir)
    lock.acquire(record.command)
    try:
        check(run_dir, record)  # again, now that no other writer can change the dir
        if not resume:
            write_file(run_dir / SUITE, record.suite_text)
            write_file(run_dir / RUN, json.dumps(record.to_json(), indent=2) + "\n")
        yield RunWriter(run_dir)
    finally:
        lock.release()


def _make_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if run_dir.exists() and not run_dir.is_dir():
            raise ResultsError(f"--resume {run_dir}: is a file, not a directory")
        suite_copy(run_dir)
    else:
        make_dir(run_dir, "--out")


def _check_new(run_dir: Path, record: RunRecord) -> None:
    if _has_rows(run_dir):
        raise ResultsError(f"{run_dir} already holds results; use --resume {run_dir} to continue it, or another --out")
    stray = sorted(p.name for p in run_dir.iterdir() if p.name not in RUN_FILES and not p.name.endswith(".tmp"))
    if stray:
        raise ResultsError(f"--out {run_dir}: not empty and not an rpbench run dir (it holds {stray[0]}); give a new "
                           f"or empty dir")


def _has_rows(run_dir: Path) -> bool:
    """True when results.csv holds anything past its header line (even a partial row)."""
    path = run_dir / RESULTS
    if not path.is_file():
        return False
    data = path.read_bytes()
    return b"\n" in data and bool(data[data.index(b"\n") + 1:].strip())


def check_resume(run_dir: Path, record: RunRecord) -> None:
    """ResultsError when resuming `run_dir` with `record` would mix two sweeps or build on lost data."""
    kept_text = suite_copy(run_dir).read_bytes().decode("utf-8", errors="replace")
    started = recorded_run(run_dir)
    if started.get("suite_sha256") not in (None, sha256_text(kept_text)):
        raise ResultsError(f"{run_dir / SUITE} was edited after the run started; its rows were measured with the "
                           f"first version. Restore it, or start a new dir with --out")
    if record.suite_text != kept_text:
        raise ResultsError(f"{run_dir} holds a run of another suite ({run_dir / SUITE}); resume it without naming a "
                           f"suite, or start a new dir with --out")
    for flag, field in (("--filter", "filter"), ("--device", "device")):
        if field in started and started[field] != getattr(record, field):
            was = f"{flag} {started[field]!r}" if started[field] else f"no {flag}"
            raise ResultsError(f"{run_dir} was started with {was}; a resume runs the same cases (leave {flag} out "
                               f"to take the run's own), or start a new dir with --out")
    if not (run_dir / RESULTS).exists():
        return
    frame = csvfile.read(run_dir / RESULTS, COLUMNS)
    _check_machine(run_dir, frame, dict(record.device_names))
    if "timing" in frame:
        rows = frame[frame["timing"].notna()]
        other = sorted({Timing.same_json(text, device) for text, device in zip(rows["timing"], rows["device"])
                        if Timing.same_json(text, device) != Timing.same_json(record.timing, device)})
        if other:
            raise ResultsError(f"{run_dir}: its rows were timed with {other[0]}, the suite now says {record.timing}; "
                               f"a resume would mix both. Start a new dir with --out")
    _check_samples(run_dir, frame)


def _check_machine(run_dir: Path, frame: pd.DataFrame, names: dict[str, str]) -> None:
    """The rows were measured on the same GPU (or CPU) model as this machine's: one run never mixes two."""
    if "device_name" not in frame:
        return
    for device, here in names.items():
        there = frame.loc[(frame["device"] == device) & frame["device_name"].notna(), "device_name"]
        other = sorted(set(there) - {here})
        if other:
            raise ResultsError(f"{run_dir}: its {device} rows were measured on {other[0]}, this machine runs "
                               f"{here}; a resume would mix two models in one run. Start a new dir with --out (and "
                               f"compare the two runs)")


def _check_samples(run_dir: Path, frame: pd.DataFrame) -> None:
    """Every finished row with samples still has them all in samples.csv."""
    wanted = frame.loc[(frame["status"] == "ok") & (frame["n_samples"].fillna(0) > 0)]
    if wanted.empty:
        return
    path = run_dir / SAMPLES
    if not path.is_file():
        raise ResultsError(f"{path} is missing: the samples of {len(wanted)} finished case(s) are gone. Restore it, "
                           f"or start a new dir with --out")
    counts = csvfile.read(path, SAMPLE_COLUMNS)["case_id"].value_counts()
    for case_id, expected in zip(wanted["case_id"], wanted["n_samples"]):
        if counts.get(case_id, 0) < expected:
            raise ResultsError(f"{path}: case {case_id} has {counts.get(case_id, 0)} of its {expected} samples; the "
                               f"file lost data. Restore it, or start a new dir with --out")
