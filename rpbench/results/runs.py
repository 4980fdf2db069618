"""Several run dirs read back at once, each with the facets that tell it apart from the others: its name (a
`--label RUN=NAME`, else the dir's name), the device model(s) its rows ran on, host, torch, the git commit of the
project and of the benchmarked code (env.json, see `machine.code_versions`), the timer(s) and the date.

Run dirs are given as paths or globs (`results/tokens-*`, quoted so the shell leaves it alone): a glob keeps the
run dirs it matches, in name order, and must match at least one; a path given as such must be a run dir.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ..core.errors import ResultsError
from .store import RESULTS, Run, load_run, results_path

NOT_RECORDED = "not recorded"
_GLOB = set("*?[")


@dataclass(frozen=True)
class RunFacets:
    """What tells one run apart from another, as the legends and the run columns of exports show it."""

    name: str
    directory: Path
    device: str
    host: str
    torch: str
    timer: str
    date: str  # ISO time the sweep started (env.json collected_at, else its first row's started_at)
    commit: str | None  # the project's git commit (the checkout the sweep ran in), else rpbench's own
    commit_time: str | None  # its committer date (ISO), when recorded
    dirty: bool  # the checkout had uncommitted changes
    code: Mapping[str, Any] = field(default_factory=dict)  # env.json `code`: package -> version, commit, ...

    def commit_of(self, package: str | None) -> tuple[str | None, str | None]:
        """(commit, commit time) of the project (package None) or of one package recorded in env.json `code`."""
        if package is None:
            return self.commit, self.commit_time
        found = self.code.get(package) if isinstance(self.code, Mapping) else None
        if not isinstance(found, Mapping):
            return None, None
        return found.get("commit"), found.get("commit_time")

    def as_columns(self) -> dict[str, Any]:
        """The run columns every row of this run gets in a table of several runs (`export RUN...`)."""
        return {"run": self.name, "run_dir": str(self.directory), "run_device": self.device, "run_host": self.host,
                "run_torch": self.torch, "run_timer": self.timer, "run_date": self.date, "run_commit": self.commit,
                "run_commit_time": self.commit_time, "run_dirty": self.dirty}


@dataclass(frozen=True)
class LabelledRun:
    run: Run
    facets: RunFacets


def run_paths(given: Iterable[str | Path]) -> list[Path]:
    """The run dirs named by paths and globs, in the order given (a glob's matches in name order)."""
    found: list[Path] = []
    for item in given:
        text = str(item)
        if _GLOB & set(text) and not Path(text).exists():
            matches = [Path(p) for p in sorted(glob.glob(text)) if (Path(p) / RESULTS).is_file()]
            if not matches:
                raise ResultsError(f"{text}: no run dir matches this pattern")
            found += matches
        else:
            found.append(Path(text))
    return found


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """`RUN=NAME` pairs (the `--label` option) as {RUN: NAME}; ResultsError for one without `=` or a name."""
    labels = {}
    for pair in pairs:
        run, sep, name = pair.rpartition("=")
        if not sep or not run or not name.strip():
            raise ResultsError(f"--label {pair!r}: expected RUN=NAME, e.g. --label results/a100-run=A100")
        labels[run] = name.strip()
    return labels


def _one(values: Iterable[Any]) -> str:
    found = sorted({str(v) for v in values if v is not None and not (isinstance(v, float) and pd.isna(v)) and v != ""})
    return ", ".join(found) if found else NOT_RECORDED


def _device(run: Run) -> str:
    devices = _one(run.frame["device_name"].dropna())
    if devices != NOT_RECORDED:
        return devices
    gpus = run.env.get("gpus") or []
    if gpus and isinstance(gpus[0], Mapping) and gpus[0].get("name"):
        return str(gpus[0]["name"])
    cpu = run.env.get("cpu")
    return str(cpu.get("model")) if isinstance(cpu, Mapping) and cpu.get("model") else NOT_RECORDED


def _date(run: Run) -> str:
    collected = run.env.get("collected_at")
    if isinstance(collected, str) and collected:
        return collected
    started = run.frame["started_at"].dropna().astype(str) if "started_at" in run.frame else pd.Series(dtype=str)
    return min(started) if len(started) else NOT_RECORDED


def facets_of(run: Run, name: str) -> RunFacets:
    env = run.env
    code = env.get("code") if isinstance(env.get("code"), Mapping) else {}
    commit, commit_time, dirty = env.get("git_commit"), env.get("git_commit_time"), bool(env.get("git_dirty"))
    own = code.get("rpbench") if isinstance(code.get("rpbench"), Mapping) else {}
    if not commit and own.get("commit"):  # swept outside a checkout: the commit of the rpbench that ran
        commit, commit_time, dirty = own.get("commit"), own.get("commit_time"), bool(own.get("dirty"))
    host = env.get("hostname") or _one(run.frame["host"].dropna())
    return RunFacets(name=name, directory=run.directory, device=_device(run), host=str(host),
                     torch=str(env.get("torch") or NOT_RECORDED), timer=_one(run.frame["timer"].dropna()),
                     date=_date(run), commit=str(commit) if commit else None,
                     commit_time=str(commit_time) if commit_time else None, dirty=dirty, code=dict(code))


def _names(paths: list[Path], labels: Mapping[str, str]) -> list[str]:
    """Each run's name: its --label, else its dir name (with its parent when two dirs share a name)."""
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise ResultsError(f"{path}: this run is given twice")
        seen.add(path.resolve())
    by_path = {}
    for given, name in labels.items():
        where = Path(given).parent if Path(given).name == RESULTS else Path(given)
        matched = [p for p in paths if p.resolve() == where.resolve()]
        if not matched:
            raise ResultsError(f"--label {given}={name}: {given} is not one of the runs given")
        by_path[matched[0].resolve()] = name
    plain = [by_path.get(p.resolve(), p.resolve().name) for p in paths]
    names = [f"{p.resolve().parent.name}/{p.resolve().name}" if p.resolve() not in by_path and plain.count(name) > 1
             else name for p, name in zip(paths, plain)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ResultsError(f"two runs are both named {repeated[0]!r}; name them apart with --label RUN=NAME")
    return names


def load_runs(given: Iterable[str | Path], labels: Mapping[str, str] | None = None) -> list[LabelledRun]:
    """Every run dir named by `given` (paths, globs) with its facets; ResultsError with one line for a path that is
    not a run dir, a glob that matches none, or a label that names no run."""
    paths = [results_path(path).parent for path in run_paths(given)]  # a results.csv given: its dir
    if not paths:
        raise ResultsError("no run dir given")
    names = _names(paths, labels or {})
    return [LabelledRun(run, facets_of(run, name)) for run, name in zip(map(load_run, paths), names)]


def combined_rows(runs: Iterable[LabelledRun]) -> pd.DataFrame:
    """Every run's results rows in one table, the run columns (`RunFacets.as_columns`) first: one file for many
    runs (`export RUN... --format csv|parquet|json`), readable without rpbench."""
    frames = []
    for labelled in runs:
        columns = labelled.facets.as_columns()
        facets = pd.DataFrame({name: pd.Series([value] * len(labelled.run.frame), index=labelled.run.frame.index,
                                               dtype="boolean" if name == "run_dirty" else "string")
                               for name, value in columns.items()})
        frames.append(pd.concat([facets, labelled.run.frame], axis=1))
    return pd.concat(frames, ignore_index=True)
