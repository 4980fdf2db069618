"""`python -m rpbench.measure.worker JOBS RESULTS`: a persistent isolated worker (see `rpbench.measure.process`).

It imports torch once (and on a GPU slot creates its CUDA context once), says "ready" on the RESULTS pipe, then
runs the jobs that arrive pickled on the JOBS pipe, one pass each: it says "took" as it gets one, then answers
with (result, retire). The result is a Measurement (a first pass), a Round (a later pass) or the one-line
exception of a later pass; `retire` is None, or why this process must not take another case
(`fresh_process_reason`), and then it exits. It exits too when the JOBS pipe closes, and when the sweep that
started it dies.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

PARENT_POLL_S = 0.5
FIRST_JOB_WAIT_S = 120.0  # a worker started ahead (isolated.prestart) that gets no job by then was not needed


def _die_with_parent() -> None:
    """A sweep killed with -9 cannot close its workers: each one notices its parent gone and ends its process
    group (a pass still hanging in a mechanism included), so no orphan keeps a CPU or a GPU busy."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="rpbench-parent-watch", daemon=True).start()


def process_state(torch: Any) -> dict[str, Any]:
    """The process-wide torch settings a mechanism could change and the next case would inherit."""
    from ..machine.environment import tf32_settings

    return {"default dtype": str(torch.get_default_dtype()), "grad mode": torch.is_grad_enabled(),
            "deterministic algorithms": torch.are_deterministic_algorithms_enabled(), **tf32_settings(torch)}


def fresh_process_reason(job: Any, result: object, before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Why this worker must not take another pass (None: it may). The cases that get a fresh process after them:

    - a compiled case (`compile` other than none): torch.compile leaves process-wide state that
      `torch._dynamo.reset()` does not clear (Inductor's in-memory kernel and FX-graph caches, the loaded kernel
      modules, its pool of compile workers), so a later compile would find warm caches (a shorter `compile_s`)
      and every later pass would run beside that pool;
    - a pass that failed (a first pass with status error, oom or nonfinite, or a later pass that raised): what a
      failure leaves (half-built modules, a fragmented allocator, a lost CUDA context) must not reach the next
      case; `unsupported` is refused before anything is built and keeps the worker;
    - a lost CUDA context: every later CUDA call in this process would fail;
    - a case that changed a process-wide torch setting (default dtype, grad mode, deterministic algorithms,
      TF32 / matmul precision, cudnn.benchmark): the next case would run under it.
    """
    from ..core.measurement import Measurement

    if job.case.compile != "none":
        return f"compiled case (compile = {job.case.compile})"
    if isinstance(result, Measurement):
        if result.context_lost:
            return "CUDA context lost"
        if result.status in ("error", "oom", "nonfinite"):
            return f"first pass failed ({result.status})"
    elif isinstance(result, BaseException):
        return "later pass failed"
    changed = [key for key in before if before[key] != after.get(key)]
    if changed:
        return "the case changed " + ", ".join(f"{key} ({before[key]} -> {after.get(key)})" for key in changed)
    return None


def warm_up() -> None:
    """One tiny CPU case, measured and thrown away, before the worker says it is ready: what a first pass pays
    once per process (lazy imports, the profiler and FLOP counter set up, first-call paths) is paid here, outside
    every case's timeout and timed window, as a sweep in one process pays it once."""
    from ..core.case import CaseFlags, Timing
    from ..suites import case_from_flags
    from .runner import run_case

    try:
        case = case_from_flags(CaseFlags(attention="dense", tokens=16, dim=16, heads=2, device="cpu"))
        run_case(case, Timing(warmup_ms=1, repeat=1, rounds=1, min_samples=1), suite="warm-up")
    except Exception:  # a warm-up that fails costs the first case its warm start, nothing more
        pass


def run_job(job: Any) -> object:
    """One pass: a first pass's Measurement (never raises), or a later pass's Round or its error as one line."""
    from .runner import NOTE_LIMIT, measure_again, run_case

    if job.kind == "first":
        return run_case(job.case, job.timing, suite=job.suite)
    try:
        return measure_again(job.case, job.timing, job.like, retry=job.retry)
    except Exception as err:  # the parent keeps the passes already taken and notes this one
        return RuntimeError(f"{type(err).__name__}: {' '.join(str(err).split())[:NOTE_LIMIT]}")


def main(argv: list[str]) -> int:
    jobs = Connection(int(argv[0]), writable=False)
    results = Connection(int(argv[1]), readable=False)
    _die_with_parent()
    import torch

    from ..machine.interference import PARENT_ENV
    from .isolated import GPU_ENV
    from .process import READY, TOOK

    from .runner import freeze_heap

    warm_up()
    freeze_heap()
    if os.environ.get(GPU_ENV) is not None and torch.cuda.is_available():
        torch.zeros(1, device="cuda")  # the CUDA context of this worker's GPU, created once
        torch.cuda.synchronize()
    results.send(READY)
    if not jobs.poll(FIRST_JOB_WAIT_S):
        return 0
    while True:
        try:
            job = jobs.recv()
        except EOFError:  # the sweep is done with this worker
            return 0
        results.send(TOOK)
        torch.set_num_threads(job.threads)
        os.environ[PARENT_ENV] = job.parent  # the sweep's CUDA context may be newer than this worker
        before = process_state(torch)
        result = run_job(job)
        retire = fresh_process_reason(job, result, before, process_state(torch))
        results.send((result, retire))
        if retire:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
