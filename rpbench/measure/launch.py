"""`rpbench sweep --launcher slurm`: a sweep's cases as a submitit job array, one GPU per task.

The cases are split into tasks (one per case by default, or `tasks` of them: longest-expected first, dealt round
robin so every task gets a share of the big ones); each task runs `run_task(run_dir, index)` on its node, which
measures its cases exactly as `rpbench sweep` does (rounds, retries, journal, flags) into `tasks/<index>/`, its own
run dir. The submitting command returns at once; `rpbench status` reads progress from the files and `rpbench
collect` merges the rows (see `rpbench.results.launched`). Only the executor differs between `slurm` and `local`
(submitit's local executor: the same array as processes on this machine, for trying a launch out).

submitit is optional (`pip install 'rpbench[slurm]'`); the nodes need rpbench installed in the same Python as the
submitting one (submitit runs sys.executable there), or a `setup` line that activates it.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.case import Case, Suite
from ..core.errors import ExecutionError, UsageError
from ..core.launch import LaunchSettings
from ..results import launched
from ..results.resume import RunRecord, open_run
from ..results.store import SUITE

INSTALL = "pip install 'rpbench[slurm]'"


@dataclass(frozen=True)
class Submitted:
    run_dir: Path
    job_id: str  # the array's id (slurm), or the first job's (local: one process per task)
    tasks: list[int]


def expected_cost(case: Case) -> float:
    """How long a case should take, relatively: its tokens × batch × width, ×3 with a backward pass."""
    tokens = case.tokens or ((case.resolution or 224) // (case.patch or 16)) ** 2
    return float(tokens) * case.batch * case.dim * (3.0 if case.mode == "fwdbwd" else 1.0)


def plan_tasks(cases: list[Case], tasks: int | None) -> list[list[str]]:
    """Case ids per task: one case per task, or `tasks` tasks dealt round robin, longest-expected first."""
    order = sorted(cases, key=expected_cost, reverse=True)
    count = min(tasks or len(order), len(order))
    return [[case.case_id for case in order[start::count]] for start in range(count)]


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError(f"--launcher needs submitit, which is not installed: {INSTALL}") from None
    return submitit


def make_executor(launcher: str, folder: Path, settings: LaunchSettings, name: str) -> Any:
    """A submitit executor for `launcher` (slurm or local) with the settings as its parameters."""
    submitit = _submitit()
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if launcher == "slurm" else "local")
    except RuntimeError as err:  # no srun here
        raise UsageError(f"--launcher {launcher}: {' '.join(str(err).split())} (submit from a SLURM login node, or "
                         f"try the same array here with --launcher local)") from None
    parameters: dict[str, Any] = {"name": name, "timeout_min": settings.time_min, "nodes": 1, "tasks_per_node": 1,
                                  "gpus_per_node": settings.gpus_per_task}
    if settings.cpus_per_task is not None:
        parameters["cpus_per_task"] = settings.cpus_per_task
    if settings.mem_gb is not None:
        parameters["mem_gb"] = settings.mem_gb
    slurm = {"slurm_partition": settings.partition, "slurm_account": settings.account,
             "slurm_array_parallelism": settings.max_running,
             "slurm_additional_parameters": dict(settings.sbatch) or None,
             "slurm_setup": list(settings.setup) or None}
    parameters.update({key: value for key, value in slurm.items() if value is not None})
    executor.update_parameters(**parameters)
    return executor


def submit(suite: Suite, cases: list[Case], run_dir: Path, record: RunRecord, launcher: str,
           settings: LaunchSettings, device: str, profile: bool = False,
           isolate_timeout_s: float | None = None) -> Submitted:
    """Create the run dir (as a sweep would: locked, suite.toml and run.json), plan the tasks, submit them as one
    array, and return at once."""
    tasks = plan_tasks(cases, settings.tasks)
    executor = make_executor(launcher, launched.logs_dir(run_dir), settings, f"rpbench-{suite.name}"[:64])
    with open_run(run_dir, record, resume=False):
        launched.write_launch(run_dir, {
            "launcher": launcher, "settings": settings.to_json(), "device": device, "filter": record.filter,
            "profile": profile, "isolate_timeout_s": isolate_timeout_s, "command": record.command, "tasks": tasks,
            "jobs": []})
    return _submit_tasks(executor, run_dir, list(range(len(tasks))))


def resubmit(run_dir: Path, settings: LaunchSettings | None = None) -> tuple[Submitted | None, list[int]]:
    """Submit again every task of a launched run that is neither done nor running (killed, timed out, failed, or
    never started), with its recorded settings (or `settings`). Returns (what was submitted or None, the tasks
    still running). A task submitted twice is harmless: its dir's lock lets one writer in, and a task that finds
    its cases final ends at once."""
    launch = launched.read_launch(run_dir)
    states = launched.task_states(run_dir)
    todo = [s.index for s in states if s.state in ("waiting", "stopped")]
    running = [s.index for s in states if s.state == "running"]
    if not todo:
        return None, running
    settings = settings or LaunchSettings.from_json(launch.get("settings") or {})
    executor = make_executor(launch.get("launcher", "slurm"), launched.logs_dir(run_dir), settings,
                             f"rpbench-{run_dir.name}"[:64])
    return _submit_tasks(executor, run_dir, todo), running


def _submit_tasks(executor: Any, run_dir: Path, indexes: list[int]) -> Submitted:
    try:
        jobs = executor.map_array(run_task, [str(run_dir)] * len(indexes), indexes)
    except Exception as err:  # sbatch refused (a bad partition, no account): nothing was submitted
        words = " ".join(str(err).split())[-400:]
        raise ExecutionError(f"submitting {len(indexes)} task(s) failed: {type(err).__name__}: {words}") from None
    launched.record_jobs(run_dir, [{"task": index, "job_id": str(job.job_id),
                                    "stderr": _relative(Path(job.paths.stderr), run_dir)}
                                   for index, job in zip(indexes, jobs)])
    first = str(jobs[0].job_id) if jobs else ""
    return Submitted(run_dir, first.split("_")[0], indexes)


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def run_task(run_dir: str, index: int) -> dict[str, Any]:
    """One array task, on its node: measure the task's cases into tasks/<index>/ (resuming what an earlier attempt
    left), as `rpbench sweep` would. Returns a summary (submitit keeps it); raises with one line when it cannot."""
    import torch

    from ..suites import load_suite
    from .runner import device_names
    from .sweep import run_sweep

    root = Path(run_dir)
    launch = launched.read_launch(root)
    if not 0 <= index < len(launch["tasks"]):
        raise ExecutionError(f"task {index}: {root} has tasks 0 to {len(launch['tasks']) - 1}")
    wanted = set(launch["tasks"][index])
    suite = load_suite(root / SUITE, device_override=launch.get("device"))
    cases = [case for case in suite.cases if case.case_id in wanted]
    if len(cases) != len(wanted):
        raise ExecutionError(f"task {index}: {len(wanted) - len(cases)} of its cases are not in {root / SUITE} any "
                             f"more (edited after the launch?)")
    cpus = (launch.get("settings") or {}).get("cpus_per_task")
    if not suite.timing.threads and isinstance(cpus, int):
        torch.set_num_threads(cpus)  # the CPUs SLURM gave the task, not the whole node's
    target = launched.task_dir(root, index)
    command = shlex.join(["rpbench-task", str(root), str(index)])
    record = RunRecord(suite=suite.name, suite_text=suite.text, timing=suite.timing.to_json(),
                       filter=launch.get("filter"), device=launch.get("device"), command=command,
                       device_names=device_names(cases))
    outcome = run_sweep(suite, cases, target, record, resume=(target / "run.json").is_file(),
                        profile=bool(launch.get("profile")), isolate_timeout_s=launch.get("isolate_timeout_s"))
    return {"task": index, "measured": len(outcome.measurements), "skipped": outcome.skipped,
            "run_dir": str(target)}
