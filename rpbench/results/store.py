"""The results dir, and the only code that reads or writes one: rows appended and flushed one at a time, so a
killed sweep loses nothing finished.

Layout: results.csv (one row per case), samples.csv (every pooled timed sample), rounds.csv (every timed pass,
pooled or left out), passes.jsonl (the journal of passes of cases not yet final), reference.csv (every timing of the
reference kernel, see `passes`), env.json, suite.toml, run.json (which sweep the dir holds, see `resume`, and its
drift), report.html, .rpbench.lock (see `lock`), and traces/<case_id>.json.gz (written by the profiler at the path
`RunWriter.trace_path` gives). A `Measurement` becomes a row on its way in (`rows.row_of`) and nowhere else.

Just over 300 lines on purpose: the writer and the readers of one layout stay side by side (the side files' own
formats live in `passes`, `rows`, `csvfile`, `envfile`), so a change to the layout is made and seen in one place.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..core.case import safe_name
from ..core.errors import ExecutionError, ResultsError
from ..core.measurement import Measurement, Round
from ..core.schema import COLUMNS, ROUND_COLUMNS, SAMPLE_COLUMNS, STATUSES
from . import csvfile, traces
from .damage import Damage, side_files
from .csvfile import oserror_line as _oserror
from .csvfile import write_file  # noqa: F401  (the store's one atomic writer, used by views and exports too)
from .envfile import read_env as _read_env
from .envfile import set_aside as _set_aside
from .lock import LOCK
from .passes import REFERENCE, ReferenceLog, run_drift, with_sweep_rounds  # noqa: F401  (run_drift re-exported)
from .rows import pass_from_line, pass_line, plain_sample_rows, round_rows, row_of, sample_rows

RESULTS = "results.csv"
SAMPLES = "samples.csv"
ROUNDS = "rounds.csv"
PASSES = "passes.jsonl"
ENV = "env.json"
SUITE = "suite.toml"
RUN = "run.json"
REPORT = "report.html"
TRACES = "traces"
# What a run dir may hold (the last three: a launched run's, see `launched`); a new sweep refuses anything else.
RUN_FILES = {RESULTS, SAMPLES, ROUNDS, PASSES, REFERENCE, ENV, SUITE, RUN, REPORT, LOCK, TRACES,
             "launch.json", "tasks", "slurm"}


class RunWriter:
    """Appends rows and samples to a run dir; reopening an existing dir continues it (resume). Takes no lock and
    applies no resume rule: a sweep opens its dir through `open_run`, which does both."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._results = csvfile.AppendOnlyCsv(self.run_dir / RESULTS, COLUMNS)
            self._drop_orphans(SAMPLES, SAMPLE_COLUMNS)
            self._drop_orphans(ROUNDS, ROUND_COLUMNS)
            self._samples = csvfile.AppendOnlyCsv(self.run_dir / SAMPLES, SAMPLE_COLUMNS)
            self._rounds = csvfile.AppendOnlyCsv(self.run_dir / ROUNDS, ROUND_COLUMNS)
            self.reference = ReferenceLog(self.run_dir)  # the reference kernel's timings and the run's drift
            self._earlier = self._read_journal()
        except OSError as err:
            raise ResultsError(f"cannot write the run dir {_oserror(self.run_dir, err)}") from None

    def _drop_orphans(self, name: str, columns: Mapping[str, Any]) -> None:
        """Samples (or passes) written just before a kill, for a row that never made it, would be duplicated on
        resume: keep only those of finished cases."""
        path = self.run_dir / name
        if not path.exists() or path.stat().st_size == 0:
            return
        csvfile.repair(path)
        lines = csvfile.read(path, columns)
        keep = lines["case_id"].isin(self.finished_case_ids())
        if keep.all():
            return
        write_file(path, lines[keep].to_csv(index=False))  # atomic: a kill leaves the old file or the new one

    def _read_journal(self) -> dict[str, list[Round]]:
        """Passes of unfinished cases a killed sweep journalled; the journal is rewritten without the rest (passes
        of finished cases, a torn last line), atomically."""
        path = self.run_dir / PASSES
        if not path.exists():
            return {}
        finished = self.finished_case_ids()
        kept: dict[str, dict[int, Round]] = {}
        lines = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            found = pass_from_line(line)
            if found is None or found[0] in finished:
                continue
            case_id, index, taken = found
            kept.setdefault(case_id, {})[index] = taken
            lines.append(line)
        write_file(path, "".join(line + "\n" for line in lines))
        return {case_id: [passes[i] for i in sorted(passes)] for case_id, passes in kept.items()}

    def earlier_passes(self) -> dict[str, list[Round]]:
        """Passes of unfinished cases taken before a kill (a resume counts them; see measure.rounds)."""
        return self._earlier

    def journal_pass(self, case_id: str, index: int, taken: Round) -> None:
        """Keep one pass of a case not yet final, flushed, so a killed sweep loses no pass."""
        try:
            with (self.run_dir / PASSES).open("a", encoding="utf-8") as handle:
                handle.write(pass_line(case_id, index, taken) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as err:
            raise ExecutionError(f"cannot write {_oserror(self.run_dir, err)}; the rows written before are kept: "
                                 f"make room, then continue with `rpbench sweep --resume {self.run_dir}`") from None

    def forget_passes(self) -> None:
        """Every case is final: the journal has nothing left to say."""
        try:
            (self.run_dir / PASSES).unlink(missing_ok=True)
        except OSError:
            pass

    def finished_case_ids(self) -> set[str]:
        """Cases already written with a final status (skipped on resume)."""
        frame = csvfile.read(self.run_dir / RESULTS, COLUMNS)
        return set(frame.loc[frame["status"].isin(STATUSES), "case_id"].dropna())

    def append(self, measured: Measurement) -> None:
        """One measured case: its passes, its samples, then its row."""
        self._write(row_of(measured), sample_rows(measured), round_rows(measured))

    def append_row(self, row: Mapping[str, Any], samples: Iterable[float] = ()) -> None:
        """A ready-made row and its samples (no passes recorded)."""
        self._write(row, plain_sample_rows(row["case_id"], samples), [])

    def append_records(self, row: Mapping[str, Any], samples: list[dict[str, Any]],
                       rounds: list[dict[str, Any]]) -> None:
        """A row with its samples and passes as another run dir wrote them (`launched.collect`)."""
        self._write(row, samples, rounds)

    def _write(self, row: Mapping[str, Any], samples: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> None:
        """Passes and samples first, then the row: a row on disk always has its samples. A failed write (a full
        disk) stops with one line; what was written before stays, and a resume drops the partial record."""
        try:
            self._rounds.append_many(rounds)
            self._samples.append_many(samples)
            self._results.append(row)
        except OSError as err:
            raise ExecutionError(f"cannot write {_oserror(self.run_dir, err)}; the rows written before are kept: "
                                 f"make room, then continue with `rpbench sweep --resume {self.run_dir}`") from None

    def record_environment(self, env: Mapping[str, Any]) -> None:
        """Write env.json; a resume (the dir already has finished cases) keeps the environment the run started in
        and adds its own under `resumed`. An env.json that is not a JSON object is kept aside, never overwritten."""
        first: dict[str, Any] = {}
        if self.finished_case_ids():
            first, problem = _read_env(self.run_dir / ENV)
            if problem:
                kept = _set_aside(self.run_dir / ENV)
                env = {**env, "previous_env": f"{problem}; kept as {kept.name}"}
        if first:
            env = {**first, "resumed": [*first.get("resumed", []), dict(env)]}
        write_file(self.run_dir / ENV, json.dumps(env, indent=2, default=str) + "\n")

    def record_suite(self, text: str) -> None:
        """Keep a copy of the suite file as the run started it (a resume leaves the first copy)."""
        path = self.run_dir / SUITE
        if not path.exists():
            write_file(path, text)

    def untraced(self) -> pd.DataFrame:
        """Rows with timed samples and no trace yet (see `traces`)."""
        return traces.untraced(self.run_dir / RESULTS)

    def link_trace(self, case_id: str, trace: str | None = None, note: str | None = None) -> None:
        """Set a finished row's `trace`, or note why there is none (see `traces`)."""
        traces.link(self.run_dir / RESULTS, case_id, trace, note)

    def trace_path(self, case_id: str) -> Path:
        """Where the profiler trace of a case goes (the profiler writes the file)."""
        return self.run_dir / TRACES / f"{case_id}.json.gz"

    def relative(self, path: Path) -> str:
        """A path inside the run dir as the `trace` column stores it."""
        return path.relative_to(self.run_dir).as_posix()


def results_path(path: str | Path) -> Path:
    """Resolve a run dir or a results.csv path, or raise ResultsError with one line."""
    path = Path(path)
    try:
        csv_path = path / RESULTS if path.is_dir() else path
        if not path.exists():
            raise ResultsError(f"{path}: no such file or directory")
        if not csv_path.is_file():
            raise ResultsError(f"{path}: not a results dir (no {RESULTS} inside)")
    except OSError as err:  # a name too long, a loop of links
        raise ResultsError(_oserror(path, err)) from None
    return csv_path


def read_results(path: str | Path) -> pd.DataFrame:
    """results.csv of a run dir as written so far (maybe no rows yet), with the schema's dtypes; one-line
    ResultsError when it is not an rpbench results file."""
    csv_path = results_path(path)
    frame = csvfile.read(csv_path, COLUMNS)
    required = ("case_id", "attention", "tokens", "status", "latency_ms_median")
    missing = [col for col in required if col not in frame.columns]
    if missing:
        raise ResultsError(f"{csv_path}: missing column(s) {', '.join(missing)}; is this an rpbench results file?")
    return frame


def load(path: str | Path) -> pd.DataFrame:
    """A results dir as a DataFrame with the schema's dtypes; one-line ResultsError when it is not one."""
    csv_path = results_path(path)
    frame = read_results(path)
    if frame.empty:
        raise ResultsError(f"{csv_path}: no rows yet")
    for col in COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.Series(pd.NA, index=frame.index, dtype=COLUMNS[col][0])
    return frame


@dataclass(frozen=True)
class Run:
    """A results dir read back: its directory, its table (schema dtypes), its env.json and, read on first use (only
    the bootstrap intervals need it), samples.csv: empty when absent or unreadable, so the intervals fall back.
    `damage`: its side files that could not be read (samples.csv added when it is read), for the caller to name."""

    directory: Path
    frame: pd.DataFrame
    env: dict[str, Any]
    damage: list[Damage] = field(default_factory=list)

    @cached_property
    def samples(self) -> pd.DataFrame:
        try:
            return load_samples(self.directory)
        except ResultsError as err:  # a damaged samples.csv costs the intervals, not the report
            self.damage.append(Damage(SAMPLES, str(err)))
            return _no_samples()


def load_run(path: str | Path) -> Run:
    """A results dir (or its results.csv) with its environment; ResultsError when it is not one."""
    directory = results_path(path).parent
    return Run(directory=directory, frame=load(directory), env=load_env(directory),
               damage=side_files(directory / ENV, directory / RUN, directory / ROUNDS, directory / REFERENCE))


def load_samples(path: str | Path) -> pd.DataFrame:
    """samples.csv of a run dir (long format), empty frame when absent, with each `sweep_round` (see `passes`)."""
    run_dir = results_path(path).parent
    samples = run_dir / SAMPLES
    frame = csvfile.read(samples, SAMPLE_COLUMNS) if samples.is_file() and samples.stat().st_size else _no_samples()
    return with_sweep_rounds(frame, run_dir)


def _no_samples() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, (d, _) in SAMPLE_COLUMNS.items()})


def load_env(path: str | Path) -> dict[str, Any]:
    """env.json of a run dir, {} when absent, unreadable or not a JSON object (the reports then say "not recorded")."""
    return _read_env(results_path(path).parent / ENV)[0]


def suite_copy(run_dir: str | Path, given_as: str = "--resume ") -> Path:
    """The suite.toml a run dir keeps; ResultsError naming the dir as given (`given_as` + dir) when not a run dir."""
    path = Path(run_dir) / SUITE
    try:
        found = path.is_file()
    except OSError as err:
        raise ResultsError(f"{given_as}{_oserror(Path(run_dir), err)}") from None
    if not found:
        raise ResultsError(f"{given_as}{run_dir}: not a results dir of rpbench (no {SUITE} inside)")
    return path


def default_run_dir(suite_name: str, root: Path = Path("results")) -> Path:
    """results/<suite name as a safe dir name>-<time>: never outside `root`, whatever the suite calls itself."""
    return root / f"{safe_name(suite_name)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def make_dir(path: str | Path, flag: str) -> Path:
    """Create an output dir (and its parents) for the option `flag`; ResultsError with one line when it is a file,
    lies under a file, cannot be created or is not writable."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise ResultsError(f"{flag} {path}: is a file, not a directory")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ResultsError(f"{flag} {path}: cannot create it ({err.strerror or err})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ResultsError(f"{flag} {path}: not writable")
    return path


def write_report(run_dir: str | Path, html: str) -> Path:
    """report.html of a run dir (or of the dir holding the given results.csv)."""
    return write_file(results_path(run_dir).parent / REPORT, html)
