"""Sweeps whose cases run elsewhere: `rpbench sweep --launcher slurm|local` (through `sweep`), `rpbench status
RUN_DIR` and `rpbench collect RUN_DIR`."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ..core.errors import UsageError
from .app import command, console
from .options import with_width


def launch_flags(**given: Any) -> dict[str, Any]:
    """The launcher flags the user gave (None and empty left out); `sbatch` as (key, value) pairs."""
    from ..core.launch import parse_sbatch_flag

    found = {key: value for key, value in given.items() if value is not None and value != []}
    if "sbatch" in found:
        found["sbatch"] = tuple(parse_sbatch_flag(text) for text in found["sbatch"])
    return found


_FLAGS = {"partition": "--partition", "account": "--account", "time_min": "--time", "tasks": "--tasks",
          "max_running": "--max-running", "sbatch": "--sbatch"}


def flag_names(flags: dict[str, Any]) -> str:
    return ", ".join(_FLAGS[key] for key in flags)


def launch_sweep(loaded: Any, cases: list, run_dir: Path, recorded: list[str], filter_: str | None,
                 launcher: str, flags: dict[str, Any], profile: bool, isolate_timeout_s: float | None,
                 placement: Any) -> None:
    from ..measure.launch import settings_for, submit
    from ..results.resume import RunRecord

    settings = settings_for(loaded.launcher, flags, _FLAGS)
    record = RunRecord(suite=loaded.name, suite_text=loaded.text, timing=loaded.timing.to_json(), filter=filter_,
                       device=placement.override, command=shlex.join(recorded))
    submitted = submit(loaded, cases, run_dir, record, launcher, settings, placement, profile, isolate_timeout_s)
    jobs = ", ".join(submitted.job_ids) or submitted.job_id
    console.print(Text(f"{loaded.name}: {len(cases)} cases in {len(submitted.tasks)} task(s) submitted "
                       f"({launcher}, job{'s' * (len(submitted.job_ids) > 1)} {jobs}), {submitted.asked} -> "
                       f"{run_dir}"), soft_wrap=True)
    _next_steps(run_dir)


def relaunch_if_launched(run_dir: Path, launcher: str, flags: dict[str, Any]) -> bool:
    """`sweep --resume` of a launched run: merge what is finished, submit again the tasks that are neither done nor
    running. False when `run_dir` was not launched (an ordinary resume follows)."""
    from ..results import launched, store

    store.suite_copy(run_dir)  # one line for a dir that is not a run dir (or a name the OS refuses)
    if not launched.is_launched(run_dir):
        if launcher != "none":
            raise UsageError(f"--resume {run_dir}: it was swept on this machine, not launched; resume it without "
                             f"--launcher")
        return False
    from ..core.launch import LaunchSettings
    from ..measure.launch import resubmit, settings_for

    launch = launched.read_launch(run_dir)
    if launcher not in ("none", launch.get("launcher")):
        raise UsageError(f"--resume {run_dir}: it was launched with --launcher {launch.get('launcher')}")
    base = LaunchSettings.from_json(launch.get("settings") or {})
    settings = settings_for(base, flags, _FLAGS) if flags else None
    collected = launched.collect(run_dir)
    submitted, running = resubmit(run_dir, settings)
    console.print(Text(f"{run_dir}: {collected.rows} of {collected.cases} cases collected"
                       + (f"; tasks still running or queued: {_ranges(running)}" if running else "")),
                  soft_wrap=True)
    if submitted is None:
        console.print(Text("nothing to submit again: every task is done or running"), soft_wrap=True)
    else:
        console.print(Text(f"submitted again: task(s) {_ranges(submitted.tasks)} (job {submitted.job_id})"), soft_wrap=True)
    _next_steps(run_dir)
    return True


def _next_steps(run_dir: Path) -> None:
    console.print(Text(f"follow: rpbench status {run_dir}   merge: rpbench collect {run_dir}"), soft_wrap=True)


def _ranges(indexes: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    parts: list[str] = []
    for index in sorted(indexes):
        if parts and parts[-1].split("-")[-1] == str(index - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{index}"
        else:
            parts.append(str(index))
    return ", ".join(parts)


@command()
@with_width
def status(run_dir: Path = typer.Argument(..., help="A run dir: a launched one (each task's state) or one swept "
                                          "here (who writes it, rows so far).")) -> None:
    """Show how far a sweep is: for a launched run, each task's cases and state, and what is collected."""
    from ..results import launched, lock, store

    store.suite_copy(run_dir, given_as="")  # one line when it is not a run dir
    rows = _rows(run_dir)
    if not launched.is_launched(run_dir):
        writer = lock.holder(run_dir)
        by_status = _count(row.get("status") or "?" for row in rows)
        console.print(Text(f"{run_dir}: {len(rows)} row(s) written" + (f" ({by_status})" if rows else "")), soft_wrap=True)
        console.print(Text(f"being written by {writer}" if writer else
                           f"no sweep is writing it; continue it with: rpbench sweep --resume {run_dir}"), soft_wrap=True)
        return
    from ..measure.launch import queue_states

    launch = launched.read_launch(run_dir)
    states = launched.task_states(run_dir, queue_states(run_dir))
    table = Table(title=f"{run_dir} ({launch.get('launcher')})")
    for name in ("task", "job", "cases", "final", "state", "detail"):
        table.add_column(name, justify="right" if name in ("task", "cases", "final") else "left")
    for state in states:
        style = {"done": "green", "running": "cyan", "stopped": "yellow", "requeued": "cyan"}.get(state.state, "")
        table.add_row(str(state.index), state.job_id or "—", str(state.cases), str(state.final),
                      Text(state.state, style=style), Text(state.detail or ""))
    console.print(table)
    final = sum(s.final for s in states)
    total = sum(s.cases for s in states)
    console.print(Text(f"{final} of {total} cases final in the tasks ({_count(s.state for s in states)}); "
                       f"{len(rows)} collected into {run_dir / store.RESULTS}"), soft_wrap=True)
    if final > len(rows):
        console.print(Text(f"merge the finished ones: rpbench collect {run_dir}"), soft_wrap=True)
    requeued = [s.index for s in states if s.state == "requeued"]
    if requeued:
        console.print(Text(f"task(s) {_ranges(requeued)} stopped and requeued by SLURM (a time limit or a "
                           f"preemption): they resume where they stopped by themselves"), soft_wrap=True)
    if any(s.state == "stopped" or (s.state == "waiting" and s.detail and not s.queued) for s in states):
        console.print(Text(f"submit the unfinished tasks again: rpbench sweep --resume {run_dir}"), soft_wrap=True)


def _rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run dir's results.csv (none yet: []); one line when the file is damaged."""
    from ..results import store

    if not (run_dir / store.RESULTS).is_file():
        return []
    frame = store.read_results(run_dir)
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _count(values: Any) -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return ", ".join(f"{n} {name}" for name, n in counts.items())


@command()
@with_width
def collect(run_dir: Path = typer.Argument(..., help="A run dir made by `rpbench sweep --launcher`.")) -> None:
    """Merge the rows every task of a launched run has finished into the run dir (again at any time: only new rows
    are added), so report, export and compare read it like any other run."""
    from ..results import launched, store

    store.suite_copy(run_dir, given_as="")
    _rows(run_dir)  # one line when results.csv is damaged
    if not launched.is_launched(run_dir):
        console.print(Text(f"{run_dir} was swept on this machine: its {store.RESULTS} is the only one; nothing to "
                           f"collect"), soft_wrap=True)
        return
    collected = launched.collect(run_dir)
    console.print(Text(f"collected {collected.new_rows} new row(s): {collected.rows} of {collected.cases} cases in "
                       f"{run_dir / store.RESULTS}"), soft_wrap=True)
    if len(collected.devices) > 1:
        models = ", ".join(f"{name} ({n} rows)" for name, n in collected.devices.items())
        console.print(Text(f"warning: the tasks ran on {len(collected.devices)} device models: {models}. Curves and "
                           f"compare keep them apart; pin one model with --sbatch constraint=...", style="yellow"), soft_wrap=True)
    if collected.rows < collected.cases:
        console.print(Text(f"{collected.cases - collected.rows} case(s) still to come: rpbench status {run_dir}"), soft_wrap=True)
    elif collected.rows:
        console.print(Text(f"complete: rpbench report {run_dir}"), soft_wrap=True)
