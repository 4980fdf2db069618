"""What one task of a launched sweep runs on its node (`rpbench.measure.launch` submits `Task()` through submitit).

A task measures its cases exactly as `rpbench sweep` would into `tasks/<index>/`, resuming what an earlier attempt
left there. When SLURM warns a task that its time limit is near (submitit asks for the warning signal 90 s
ahead) or preempts it, submitit calls `Task.checkpoint`: the task is requeued as it is (up to 3 times after a
time limit) and, started again, resumes its own run dir, so nothing measured is lost.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from ..core.errors import ExecutionError, one_line
from ..results import launched
from ..results.resume import RunRecord
from ..results.store import SUITE


class Task:
    """The callable submitit runs (and pickles by reference): `Task()(run_dir, index)`."""

    def __call__(self, run_dir: str, index: int) -> dict[str, Any]:
        try:
            return run_task(run_dir, index)
        except Exception as err:  # one line on stderr, where `rpbench status` reads why a task stopped
            print(f"{launched.TASK_FAILED} {index}: {one_line(err)}", file=sys.stderr, flush=True)
            raise

    def checkpoint(self, run_dir: str, index: int) -> Any:
        """Requeue the task as it is: its run dir is its checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, run_dir, index)


def run_task(run_dir: str, index: int) -> dict[str, Any]:
    """One array task, on its node: measure the task's cases into tasks/<index>/ (resuming what an earlier attempt
    left), as `rpbench sweep` would. Returns a summary (submitit keeps it); raises with one line when it cannot."""
    import socket

    import torch

    from ..suites import load_suite
    from ..suites.fields import cases_for_elsewhere
    from .runner import device_names
    from .sweep import run_sweep

    root = Path(run_dir)
    launch = launched.read_launch(root)
    if not 0 <= index < len(launch["tasks"]):
        raise ExecutionError(f"task {index}: {root} has tasks 0 to {len(launch['tasks']) - 1}")
    wanted = set(launch["tasks"][index])
    if "auto_device" in launch:  # `auto` means on the node what it meant when the cases were submitted
        with cases_for_elsewhere(launch["auto_device"]):
            suite = load_suite(root / SUITE, device_override=launch.get("device_override"))
    else:  # a run launched before tasks followed the suite's devices: every case on its one device
        suite = load_suite(root / SUITE, device_override=launch.get("device"))
    cases = [case for case in suite.cases if case.case_id in wanted]
    if len(cases) != len(wanted):
        raise ExecutionError(f"task {index}: {len(wanted) - len(cases)} of its cases are not in {root / SUITE} any "
                             f"more (edited after the launch?)")
    if any(case.device == "cuda" for case in cases) and not torch.cuda.is_available():
        raise ExecutionError(f"task {index}: its cases run on cuda, but torch sees no GPU on {socket.gethostname()} "
                             f"(did the job get one? see [launcher] gpus_per_task and --sbatch)")
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
