"""A run dir whose cases run elsewhere (`rpbench sweep --launcher slurm|local`): one writer per task, one merge.

Workers on other nodes cannot share the sweep process's single writer, so each array task writes a run dir of its
own, `tasks/<index>/` (locked, journalled and resumable like any other), and `collect` merges the final rows of
every task into the run dir itself: passes and samples first, then the row, each case once, whatever state the
tasks are in (a task still running gives the rows it has finished). The run dir keeps:

    launch.json     what was submitted: the launcher and its settings, each task's case ids, the job ids
    tasks/<i>/      task i's own run dir (results.csv, samples.csv, rounds.csv, passes.jsonl, env.json, ...)
    slurm/          submitit's files: each job's pickled call, its stdout/stderr and its result

A task's state is read from its files: `waiting` (its dir not started), `running` (its lock held), `done` (every
case final) or `stopped` (started, not running, cases left: killed, timed out or failed; `rpbench sweep --resume`
submits it again); and, where the scheduler's queue can be read (`measure.launch.queue_states`, handed in), a
stopped task whose job the scheduler holds again is `requeued` (SLURM requeued it at its time limit: it resumes by
itself). No torch here, and no scheduler is asked here.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..core.errors import ResultsError
from ..core.schema import COLUMNS, ROUND_COLUMNS, SAMPLE_COLUMNS, STATUSES
from . import csvfile
from .lock import RunLock, holder
from .store import ENV, RESULTS, ROUNDS, RUN, SAMPLES, TRACES, load_env, write_file

LAUNCH = "launch.json"
TASKS = "tasks"
LOGS = "slurm"
ERROR_TAIL = 300  # characters of a stopped task's stderr shown by `status`
TASK_FAILED = "rpbench task"  # how a task's own failure line starts on its stderr


def is_launched(run_dir: str | Path) -> bool:
    return (Path(run_dir) / LAUNCH).is_file()


def task_dir(run_dir: str | Path, index: int) -> Path:
    return Path(run_dir) / TASKS / str(index)


def logs_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOGS


def write_launch(run_dir: str | Path, launch: dict[str, Any]) -> None:
    write_file(Path(run_dir) / LAUNCH, json.dumps(launch, indent=2) + "\n")


def read_launch(run_dir: str | Path) -> dict[str, Any]:
    """launch.json of a launched run dir; ResultsError (one line) when it is missing or damaged."""
    path = Path(run_dir) / LAUNCH
    try:
        launch = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: not a launched run (no {LAUNCH}); it was swept on this machine") from None
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: unreadable ({type(err).__name__}); it says which task runs which cases") from None
    tasks = launch.get("tasks") if isinstance(launch, dict) else None
    if not isinstance(tasks, list) or not all(isinstance(t, list) and all(isinstance(c, str) for c in t)
                                              for t in tasks):
        raise ResultsError(f"{path}: damaged (no list of tasks and their case ids)")
    return launch


def record_jobs(run_dir: str | Path, jobs: list[dict[str, Any]]) -> None:
    """Add submitted jobs ({task, job_id, stderr}) to launch.json: a resubmitted task's newest job comes last."""
    launch = read_launch(run_dir)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    launch["jobs"] = [*launch.get("jobs", []), *({**job, "submitted_at": stamp} for job in jobs)]
    write_launch(run_dir, launch)


@dataclass(frozen=True)
class TaskState:
    index: int
    cases: int
    final: int
    state: str  # waiting | running | done | stopped | requeued
    job_id: str | None = None
    detail: str | None = None  # who runs it (running), the queue's word, or the last words of its stderr (stopped)
    queued: str | None = None  # what the scheduler says of its job while it holds it ('PENDING (BeginTime)')


def _final_ids(run_dir: Path) -> set[str]:
    path = run_dir / RESULTS
    return {r["case_id"] for r in csvfile.records(path) if r.get("status") in STATUSES}


def task_states(run_dir: str | Path, queue: dict[int, str] | None = None) -> list[TaskState]:
    """Every task of a launched run, as its files say, and the scheduler's `queue` (task -> the state of its job
    while the scheduler holds it; None: unknown) where they do not (see the module docstring)."""
    run_dir = Path(run_dir)
    launch = read_launch(run_dir)
    newest = {job.get("task"): job for job in launch.get("jobs", []) if isinstance(job, dict)}
    states = []
    for index, case_ids in enumerate(launch["tasks"]):
        where = task_dir(run_dir, index)
        final = len(_final_ids(where) & set(case_ids))
        job = newest.get(index, {})
        running = holder(where)
        queued = (queue or {}).get(index)
        if running is not None:
            state, detail = "running", running
        elif final == len(case_ids):
            state, detail = "done", None
        elif (where / RUN).is_file():
            state, detail = ("requeued", queued) if queued else ("stopped", _stderr_tail(run_dir, job))
        else:
            state, detail = "waiting", queued or _stderr_tail(run_dir, job)
        states.append(TaskState(index, len(case_ids), final, state, job.get("job_id"), detail, queued))
    return states


def _stderr_tail(run_dir: Path, job: dict[str, Any]) -> str | None:
    """Why a job ended, from its stderr (submitit's log): the scheduler's own word (`*** JOB 12 ON node CANCELLED AT
    ... DUE TO TIME LIMIT ***`), else the task's failure line, else the last non-empty line."""
    name = job.get("stderr")
    if not isinstance(name, str):
        return None
    try:
        lines = [line.strip() for line in (run_dir / name).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    chosen = [line for line in lines if "***" in line] or [line for line in lines if TASK_FAILED in line] or lines
    return chosen[-1][-ERROR_TAIL:] if chosen else None


@dataclass(frozen=True)
class Collected:
    run_dir: Path
    new_rows: int
    rows: int  # final rows in the run dir after the merge
    cases: int  # cases of all tasks
    devices: dict[str, int]  # GPU (or CPU) model -> rows measured on it


def collect(run_dir: str | Path) -> Collected:
    """Merge every task's final rows not yet in the run dir (with their passes, samples and traces) into it, under
    the run dir's lock. Idempotent: a second collect adds only what finished since."""
    run_dir = Path(run_dir)
    launch = read_launch(run_dir)
    lock = RunLock(run_dir)
    lock.acquire("rpbench collect")
    try:
        from .store import RunWriter  # creates the files with their headers if this is the first merge

        writer = RunWriter(run_dir)
        have = writer.finished_case_ids()
        new_rows, envs = 0, []
        for index, case_ids in enumerate(launch["tasks"]):
            new_rows += _merge_task(run_dir, task_dir(run_dir, index), set(case_ids), have, writer, envs)
        if new_rows:
            _record_env(run_dir, envs)
    finally:
        lock.release()
    rows = csvfile.records(run_dir / RESULTS)
    devices: dict[str, int] = {}
    for row in rows:
        devices[row.get("device_name") or "unknown"] = devices.get(row.get("device_name") or "unknown", 0) + 1
    return Collected(run_dir, new_rows, len(rows), sum(map(len, launch["tasks"])), devices)


def _merge_task(run_dir: Path, source: Path, case_ids: set[str], have: set[str], writer: Any,
                envs: list[dict[str, Any]]) -> int:
    """Append the task's final rows the run dir lacks; returns how many."""
    rows = [r for r in csvfile.records(source / RESULTS)
            if r.get("status") in STATUSES and r.get("case_id") in case_ids - have]
    if not rows:
        return 0
    wanted = {r["case_id"] for r in rows}
    samples = [r for r in csvfile.records(source / SAMPLES) if r.get("case_id") in wanted]
    passes = [r for r in csvfile.records(source / ROUNDS) if r.get("case_id") in wanted]
    envs.append(load_env(source) if (source / ENV).is_file() else {})
    for row in rows:
        trace = row.get("trace")
        if trace and (source / trace).is_file():
            (run_dir / TRACES).mkdir(exist_ok=True)
            shutil.copyfile(source / trace, run_dir / trace)
        case_id = row["case_id"]
        writer.append_records(_known(row, COLUMNS), [_known(s, SAMPLE_COLUMNS) for s in samples
                                                     if s["case_id"] == case_id],
                              [_known(p, ROUND_COLUMNS) for p in passes if p["case_id"] == case_id])
        have.add(case_id)
    return len(rows)


def _known(record: dict[str, str], columns: dict[str, Any]) -> dict[str, str]:
    return {key: value for key, value in record.items() if key in columns}


def _record_env(run_dir: Path, envs: list[dict[str, Any]]) -> None:
    """env.json of the merged run: the first task's environment, every task's host and device beside it."""
    kept = load_env(run_dir) if (run_dir / ENV).is_file() else {}
    first = kept or next((env for env in envs if env), {})
    seen = list(first.get("tasks", []))
    for env in envs:
        gpus = env.get("gpus") if isinstance(env.get("gpus"), list) else []
        names = sorted({str(gpu.get("name")) for gpu in gpus if isinstance(gpu, dict) and gpu.get("name")})
        machine = {"host": env.get("hostname"), "gpus": names,
                   "cpu": (env.get("cpu") or {}).get("model") if isinstance(env.get("cpu"), dict) else None}
        if machine not in seen:
            seen.append(machine)
    write_file(run_dir / ENV, json.dumps({**first, "tasks": seen}, indent=2, default=str) + "\n")
