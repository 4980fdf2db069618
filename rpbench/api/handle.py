"""`rpbench.sweep(..., launcher="slurm")`: a sweep handed to a cluster (or to submitit's local executor), returned
as a handle on its run dir: `status()`, `wait()`, `collect()` and `resume()` do from Python what `rpbench status`,
`rpbench collect` and `rpbench sweep --resume` do.

    run = rpbench.sweep("highres", launcher="slurm", launch={"partition": "gpu", "time_min": 120, "tasks": 16})
    run.status()            # a DataFrame: task, job, cases, final, state, detail
    frame = run.wait().collect()
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..core.case import Case, Suite
from ..core.errors import ResultsError, UsageError
from ..core.launch import SETTING_TYPES, LaunchSettings, settings_from_table
from ..measure.launch import Placement, Submitted, queue_states, resubmit, settings_for, submit
from ..results import launched, store
from ..results.resume import RunRecord

NAMES = {key: f"launch[{key!r}]" for key in SETTING_TYPES}  # how an out-of-range setting is named in its error
SETTLED = ("done", "stopped")  # states in which a task changes no more by itself


@dataclass(frozen=True)
class LaunchedRun:
    """A launched run dir; `submitted` is what the call that made this handle submitted (None: nothing)."""

    run_dir: Path
    submitted: Submitted | None = None

    def status(self) -> pd.DataFrame:
        """Each task: its newest job, cases, cases final, state (waiting, running, done, stopped, requeued) and
        detail (who runs it, the scheduler's word, or why it stopped)."""
        states = launched.task_states(self.run_dir, queue_states(self.run_dir))
        return pd.DataFrame([{"task": s.index, "job": s.job_id, "cases": s.cases, "final": s.final,
                              "state": s.state, "detail": s.detail} for s in states])

    def wait(self, timeout_s: float | None = None, poll_s: float = 10.0) -> "LaunchedRun":
        """Return once every task is done or stopped (nothing more happens by itself), or after timeout_s."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            states = launched.task_states(self.run_dir, queue_states(self.run_dir))
            if all(s.state in SETTLED and not s.queued for s in states):
                return self
            if deadline is not None and time.monotonic() >= deadline:
                return self
            time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))

    def collect(self) -> pd.DataFrame:
        """Merge what the tasks finished into the run dir (again at any time: only new rows are added) and return
        its results table (empty while no task has finished a case)."""
        launched.collect(self.run_dir)
        try:
            frame = store.load(self.run_dir)
        except ResultsError:  # no rows yet
            frame = store.read_results(self.run_dir)
        frame.attrs["run_dir"] = str(self.run_dir)
        return frame

    def resume(self, launch: Mapping[str, Any] | None = None) -> "LaunchedRun":
        """Collect, then submit again every task that is neither done, running nor queued (`launch`: settings to
        change, as in `rpbench.sweep`)."""
        return relaunch(self.run_dir, launch)


def overrides(launch: Mapping[str, Any] | None) -> dict[str, Any]:
    """`launch={...}` (the keys of a suite's [launcher] table) as settings to put over the suite's; UsageError
    (one line) for an unknown key or a value of the wrong type."""
    if not launch:
        return {}
    given, problem = settings_from_table(dict(launch))
    if problem is not None:
        key, words = problem
        raise UsageError(f"launch[{key.removeprefix('launcher.')!r}]: {words}")
    return {key: getattr(given, key) for key in launch}


def submit_sweep(loaded: Suite, cases: list[Case], run_dir: Path, command: str, filter_: str | None,
                 launcher: str, placement: Placement, launch: Mapping[str, Any] | None, profile: bool,
                 isolate_timeout_s: float | None) -> LaunchedRun:
    settings = settings_for(loaded.launcher, overrides(launch), NAMES)
    record = RunRecord(suite=loaded.name, suite_text=loaded.text, timing=loaded.timing.to_json(), filter=filter_,
                       device=placement.override, command=command)
    return LaunchedRun(run_dir, submit(loaded, cases, run_dir, record, launcher, settings, placement, profile,
                                       isolate_timeout_s))


def relaunch(run_dir: Path, launch: Mapping[str, Any] | None = None) -> LaunchedRun:
    """`sweep(out=run_dir, resume=True)` of a launched run: collect, submit again what nothing runs or holds."""
    launched.collect(run_dir)
    base = LaunchSettings.from_json(launched.read_launch(run_dir).get("settings") or {})
    submitted, _ = resubmit(run_dir, settings_for(base, overrides(launch), NAMES) if launch else None)
    return LaunchedRun(run_dir, submitted)
