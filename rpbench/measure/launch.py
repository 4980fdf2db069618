"""`rpbench sweep --launcher slurm`: a sweep's cases as submitit job arrays, the GPU request following the cases.

The cases are split into tasks (one per case by default, or `tasks` of them: longest-expected first, dealt round
robin so every task gets a share of the big ones; a task never mixes devices); each task runs `Task()(run_dir,
index)` on its node (`rpbench.measure.task`), which measures its cases exactly as `rpbench sweep` does (rounds,
retries, journal, flags) into `tasks/<index>/`, its own run dir. Tasks of cuda cases ask for `gpus_per_task`
GPUs, tasks of CPU cases for none (one array per device). `device = "auto"` means cuda on a SLURM node, whatever
the submitting machine has (the submit line says so when it has no GPU), and this machine's device with the
local executor. The submitting command returns at once; `rpbench status` reads progress from the files and from
the scheduler's queue (`queue_states`), `rpbench collect` merges the rows (see `rpbench.results.launched`). Only
the executor differs between `slurm` and `local` (submitit's local executor: the same array as processes on this
machine, for trying a launch out).

submitit is optional (`pip install 'rpbench[slurm]'`); the nodes need rpbench installed in the same Python as the
submitting one (submitit runs sys.executable there), or a `setup` line that activates it.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ..core.case import Case, Suite
from ..core.errors import ExecutionError, UsageError
from ..core.launch import LaunchSettings
from ..results import launched
from ..results.resume import RunRecord, open_run
from ..suites import load_suite
from ..suites.fields import cases_for_elsewhere, resolve_device
from .task import Task

INSTALL = "pip install 'rpbench[slurm]'"
QUEUE_TIMEOUT_S = 30


@dataclass(frozen=True)
class Placement:
    """Where launched cases run: the device given for every case (resolved) or None (the suite's), what `auto`
    means on the nodes, and whether a case took its device from `auto`."""

    override: str | None
    auto: str
    auto_used: bool = False


@dataclass(frozen=True)
class Submitted:
    run_dir: Path
    job_id: str  # the first array's id (slurm), or the first job's (local: one process per task)
    tasks: list[int]
    job_ids: tuple[str, ...] = ()  # every array submitted (one per device of the tasks)
    asked: str = ""  # what the tasks asked for, in words (the submit line says it)


def auto_means(launcher: str) -> str:
    """What `device = "auto"` means for launched cases: cuda on a SLURM node, this machine's device locally."""
    return "cuda" if launcher == "slurm" else resolve_device("auto")


def load_for_launch(path: Path, device: str | None, launcher: str) -> tuple[Suite, Placement]:
    """The suite as the nodes will run it (a cuda case is not checked against this machine) and where it runs.
    `device`: auto, cuda or cpu for every case (None: the suite's own device axis)."""
    auto = auto_means(launcher)
    override = None if device is None else auto if device == "auto" else device
    with cases_for_elsewhere(auto) as where:
        suite = load_suite(path, device_override=override)
    return suite, Placement(override, auto, where.auto_used or device == "auto")


def settings_for(base: LaunchSettings | None, overrides: Mapping[str, Any], names: Mapping[str, str]) -> LaunchSettings:
    """A suite's [launcher] settings with `overrides` put over them; UsageError (one line, naming the setting as
    `names` spells it: `--time`, `time_min=`) for one out of range."""
    settings = (base or LaunchSettings()).with_overrides(**overrides)
    problems = settings.problems()
    if problems:
        key, problem = problems[0]
        raise UsageError(f"{names.get(key, f'[launcher] {key}')}: {problem}")
    return settings


def expected_cost(case: Case) -> float:
    """How long a case should take, relatively: its tokens × batch × width, ×3 with a backward pass."""
    tokens = case.tokens or ((case.resolution or 224) // (case.patch or 16)) ** 2
    return float(tokens) * case.batch * case.dim * (3.0 if case.mode == "fwdbwd" else 1.0)


def plan_tasks(cases: list[Case], tasks: int | None) -> list[list[str]]:
    """Case ids per task: one case per task, or `tasks` tasks dealt round robin, longest-expected first. A task
    never mixes devices: with cases on several, each device gets tasks in proportion to its cases (one at least),
    cuda tasks first."""
    devices = sorted({case.device for case in cases}, reverse=True)
    groups = [sorted((case for case in cases if case.device == device), key=expected_cost, reverse=True)
              for device in devices]
    count = max(min(tasks or len(cases), len(cases)), len(groups))
    shares = [max(1, count * len(group) // len(cases)) for group in groups]
    while sum(shares) < count:  # to the device with the most cases per task that can take one more
        _, pick = max((len(group) / share, n) for n, (group, share) in enumerate(zip(groups, shares))
                      if share < len(group))
        shares[pick] += 1
    while sum(shares) > count:
        _, pick = min((len(group) / share, n) for n, (group, share) in enumerate(zip(groups, shares)) if share > 1)
        shares[pick] -= 1
    return [[case.case_id for case in group[start::share]] for group, share in zip(groups, shares)
            for start in range(share)]


def task_gpus(device: str, settings: LaunchSettings) -> int:
    """The GPUs a task of cases on `device` asks for: gpus_per_task for cuda, none for the CPU."""
    return settings.gpus_per_task if device == "cuda" else 0


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UsageError(f"--launcher needs submitit, which is not installed: {INSTALL}") from None
    return submitit


def make_executor(launcher: str, folder: Path, settings: LaunchSettings, name: str, gpus: int) -> Any:
    """A submitit executor for `launcher` (slurm or local) with the settings as its parameters, each task asking
    for `gpus` GPUs (no GPU line at all for 0)."""
    submitit = _submitit()
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm" if launcher == "slurm" else "local")
    except RuntimeError as err:  # no srun here
        raise UsageError(f"--launcher {launcher}: {' '.join(str(err).split())} (submit from a SLURM login node, or "
                         f"try the same array here with --launcher local)") from None
    parameters: dict[str, Any] = {"name": name, "timeout_min": settings.time_min, "nodes": 1, "tasks_per_node": 1}
    if gpus:
        parameters["gpus_per_node"] = gpus
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
           settings: LaunchSettings, placement: Placement, profile: bool = False,
           isolate_timeout_s: float | None = None) -> Submitted:
    """Create the run dir (as a sweep would: locked, suite.toml and run.json), plan the tasks, submit them (one
    array per device) and return at once. UsageError before anything is written when cuda cases would get no GPU
    or no executor can be made."""
    tasks = plan_tasks(cases, settings.tasks)
    by_id = {case.case_id: case for case in cases}
    devices = [by_id[ids[0]].device for ids in tasks]
    if "cuda" in devices and settings.gpus_per_task == 0:
        raise UsageError(f"[launcher] gpus_per_task = 0, but {sum(c.device == 'cuda' for c in cases)} case(s) run "
                         f"on cuda; ask for a GPU, or run them on the nodes' CPUs with --device cpu")
    executors = _executors(launcher, run_dir, settings, devices, f"rpbench-{suite.name}"[:64])
    with open_run(run_dir, record, resume=False):
        launched.write_launch(run_dir, {
            "launcher": launcher, "settings": settings.to_json(),
            "device": devices[0] if len(set(devices)) == 1 else "mixed", "device_override": placement.override,
            "auto_device": placement.auto, "task_devices": devices, "filter": record.filter, "profile": profile,
            "isolate_timeout_s": isolate_timeout_s, "command": record.command, "tasks": tasks, "jobs": []})
    submitted = _submit_tasks(executors, run_dir, list(range(len(tasks))), devices)
    return replace(submitted, asked=asked_for(devices, settings, placement, launcher))


def _executors(launcher: str, run_dir: Path, settings: LaunchSettings, devices: list[str], name: str) -> dict:
    """An executor per device of the tasks (cuda first), each asking for that device's GPUs."""
    return {device: make_executor(launcher, launched.logs_dir(run_dir), settings, name, task_gpus(device, settings))
            for device in sorted(set(devices), reverse=True)}


def asked_for(devices: list[str], settings: LaunchSettings, placement: Placement, launcher: str) -> str:
    """What the tasks asked for, in words: '1 GPU per task', 'no GPU: the cases run on the CPU', both for mixed
    tasks; and where `auto` became cuda on a machine without a GPU, that it did."""
    words = []
    if "cuda" in devices:
        gpus = settings.gpus_per_task
        words.append(f"{gpus} GPU{'s' * (gpus != 1)} per task" + (f" ({devices.count('cuda')} cuda tasks)"
                                                                   if "cpu" in devices else ""))
    if "cpu" in devices:
        words.append("no GPU" + (f" for the {devices.count('cpu')} CPU tasks" if "cuda" in devices else
                                 ": the cases run on the CPU"))
    if launcher == "slurm" and placement.auto_used and placement.auto == "cuda" and resolve_device("auto") != "cuda":
        words.append("device auto means cuda on the nodes, though this machine has no GPU (--device cpu runs the "
                     "cases on the nodes' CPUs)")
    return "; ".join(words)


def resubmit(run_dir: Path, settings: LaunchSettings | None = None) -> tuple[Submitted | None, list[int]]:
    """Submit again every task of a launched run that is neither done, running nor held by the scheduler (killed,
    timed out, failed, or never started), with its recorded settings (or `settings`). Returns (what was submitted
    or None, the tasks still running or queued). A task submitted twice is harmless: its dir's lock lets one
    writer in, and a task that finds its cases final ends at once."""
    launch = launched.read_launch(run_dir)
    states = launched.task_states(run_dir, queue_states(run_dir))
    todo = [s.index for s in states if s.state in ("waiting", "stopped") and s.queued is None]
    busy = [s.index for s in states if s.state != "done" and s.index not in todo]
    if not todo:
        return None, busy
    settings = settings or LaunchSettings.from_json(launch.get("settings") or {})
    every = launch.get("task_devices") or [launch.get("device")] * len(launch["tasks"])  # older runs: one device
    devices = [every[index] for index in todo]
    executors = _executors(launch.get("launcher", "slurm"), run_dir, settings, devices,
                           f"rpbench-{run_dir.name}"[:64])
    return _submit_tasks(executors, run_dir, todo, devices), busy


def _submit_tasks(executors: dict[str, Any], run_dir: Path, indexes: list[int], devices: list[str]) -> Submitted:
    """Tasks `indexes` (their cases on `devices`) as one array per device; each array's jobs are recorded in
    launch.json as soon as it is submitted."""
    job_ids = []
    for device, executor in executors.items():
        group = [index for index, on in zip(indexes, devices) if on == device]
        try:
            jobs = executor.map_array(Task(), [str(run_dir)] * len(group), group)
        except Exception as err:  # sbatch refused (a bad partition, no account): nothing more is submitted
            words = " ".join(str(err).split())[-400:]
            raise ExecutionError(f"submitting {len(group)} task(s) failed: {type(err).__name__}: {words}") from None
        launched.record_jobs(run_dir, [{"task": index, "job_id": str(job.job_id),
                                        "stderr": _relative(Path(job.paths.stderr), run_dir)}
                                       for index, job in zip(group, jobs)])
        job_ids += [str(jobs[0].job_id).split("_")[0]] if jobs else []
    return Submitted(run_dir, job_ids[0] if job_ids else "", sorted(indexes), tuple(job_ids))


def _relative(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


def queue_states(run_dir: Path) -> dict[int, str] | None:
    """What the scheduler says of each task's newest job that it still holds ('PENDING (BeginTime)', 'RUNNING',
    ...), by task: tasks it no longer holds are absent. None when it cannot tell (the local launcher, no squeue,
    no controller to ask)."""
    launch = launched.read_launch(run_dir)
    if launch.get("launcher") != "slurm":
        return None
    by_task = {job.get("task"): str(job.get("job_id")) for job in launch.get("jobs", []) if isinstance(job, dict)}
    newest = {job_id: task for task, job_id in by_task.items()}  # a task submitted again: its newest job
    arrays = sorted({job_id.split("_")[0] for job_id in newest})
    if not arrays:
        return {}
    try:
        done = subprocess.run(["squeue", "--noheader", "--array", "--jobs", ",".join(arrays), "--format",
                               "%i|%T|%r"], capture_output=True, text=True, timeout=QUEUE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode:  # every job gone from the queue reads as an invalid id; anything else: cannot tell
        return {} if "Invalid job id" in done.stderr else None
    found = {}
    for line in done.stdout.splitlines():
        job_id, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if job_id in newest and state and state != "COMPLETING":
            found[newest[job_id]] = state + (f" ({reason})" if reason and reason != "None" else "")
    return found
