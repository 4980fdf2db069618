"""Isolation: every pass of a case out of the sweep's process (`rpbench sweep --isolate`, `--workers`, `--gpus`).

A long run in one process can carry state from case to case (a compiled-kernel cache, a CUDA context poisoned by
an illegal address, a changed torch setting); tritonbench made isolation its default for this reason. Here the
parent keeps the sweep (rounds, journal, store) and hands one pass at a time to a worker process
(`rpbench.measure.process`), one per slot: one for `--isolate`, N for `--workers N`, one per GPU for `--gpus`.
A worker lives across passes and cases (torch imported and its CUDA context created once: a few milliseconds per
pass instead of seconds) and is replaced only when it must be: after a case that needs a fresh process (compiled,
failed, a lost CUDA context, a changed torch setting: `worker.fresh_process_reason`), or when it dies. What a dead
worker leaves is a status, never a stopped sweep:

- `timeout`: no result within the case timeout; the worker's whole process group is killed;
- `crashed`: the worker died without a result (a segfault, a kill, an abort, an exception outside the runner), with
  its signal or exit code and the last line it wrote to stderr.

A lost CUDA context stays inside the worker: the case is an `error` naming it, and the next case gets a fresh
process (no resume needed). Mechanisms must be importable in the worker: registry names, installed plugins and
`pkg.module:Factory` / `file.py:Factory` references are; one registered only in the parent's own code is not.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from ..core.case import Case, Timing
from ..core.errors import UsageError
from ..core.measurement import Measurement, Round
from ..machine import interference
from .process import WorkerProcess, kill_all

DEFAULT_TIMEOUT_S = 900.0
GPU_ENV = "CUDA_VISIBLE_DEVICES"

__all__ = ["DEFAULT_TIMEOUT_S", "GPU_ENV", "Job", "Slots", "WorkerDied", "gpu_slots", "kill_all", "prestart",
           "run_again", "run_first", "slot_envs"]


class WorkerDied(RuntimeError):
    """A later pass whose worker timed out or crashed (the rounds keep the passes already taken)."""


@dataclass(frozen=True)
class Job:
    kind: str  # "first" (run_case) or "again" (measure_again)
    case: Case
    timing: Timing
    suite: str
    threads: int
    like: Measurement | None = None
    retry: bool = False
    env: tuple[tuple[str, str], ...] = ()  # a one-off worker's environment (CUDA_VISIBLE_DEVICES of its GPU)
    parent: str = field(default_factory=lambda: interference.parent_env()[interference.PARENT_ENV])  # see there:
    # this sweep's pid and whether it holds a CUDA context now (it may create one after its workers started)


def _on(env: Mapping[str, str]) -> str:
    """' on GPU 3' for a worker pinned to a GPU (its row has no UUID when it died before it could say)."""
    gpu = env.get(GPU_ENV)
    return f" on GPU {gpu}" if gpu is not None else ""


def _run(job: Job, timeout_s: float) -> tuple[Any, str | None]:
    """A job in a worker of its own, closed afterwards: (its result, None), or (None, why there is none)."""
    worker = WorkerProcess(dict(job.env), _on(dict(job.env)))
    try:
        return worker.run(job, timeout_s)
    finally:
        worker.close()


def _threads(threads: int | None) -> int:
    import torch

    return threads or torch.get_num_threads()


def _measurement(case: Case, timing: Timing, suite: str, found: Any, why: str | None, began: float) -> Measurement:
    """A first pass's answer as its row: a dead worker is a `timeout` / `crashed` row."""
    if found is None:
        return Measurement(case=case, suite=suite, status=why.split(":", 1)[0], notes=(why,), timing=timing,
                           elapsed_s=time.perf_counter() - began)
    if found.context_lost:  # contained in the worker: the next case starts in a fresh process
        found = replace(found, context_lost=False)
    return found


def _round(found: Any, why: str | None) -> Round:
    """A later pass's answer: its Round; WorkerDied (one line) for a dead worker, the pass's own error raised."""
    if found is None:
        raise WorkerDied(why)
    if isinstance(found, BaseException):
        raise found
    return found


def run_first(case: Case, timing: Timing, suite: str, timeout_s: float = DEFAULT_TIMEOUT_S,
              threads: int | None = None, env: Mapping[str, str] | None = None) -> Measurement:
    """`runner.run_case` in a process of its own (with `threads` torch threads, default this process's count, and
    `env` added to its environment); a worker that hangs or dies is a `timeout` / `crashed` row."""
    began = time.perf_counter()
    found, why = _run(Job("first", case, timing, suite, _threads(threads), env=tuple((env or {}).items())), timeout_s)
    return _measurement(case, timing, suite, found, why, began)


def run_again(case: Case, timing: Timing, like: Measurement, retry: bool = False,
              timeout_s: float = DEFAULT_TIMEOUT_S, threads: int | None = None,
              env: Mapping[str, str] | None = None) -> Round:
    """`runner.measure_again` in a process of its own; raises WorkerDied (one line) when the worker gives no
    result."""
    return _round(*_run(Job("again", case, timing, "", _threads(threads), like, retry, tuple((env or {}).items())),
                        timeout_s))


def slot_envs(workers: int = 1, gpus: Sequence[str] | None = None) -> list[dict[str, str]]:
    """What each slot's worker adds to its environment: one per GPU of `gpus` (its CUDA_VISIBLE_DEVICES), or
    nothing for each of `workers`."""
    return [{GPU_ENV: gpu} for gpu in gpus] if gpus else [{} for _ in range(workers)]


_PRESTARTED: list[WorkerProcess] = []


def prestart(envs: Sequence[Mapping[str, str]]) -> None:
    """Start the workers of these slots now, so each imports torch while this process loads the suite; the next
    Slots with the same environments takes them. One never taken exits by itself (worker.FIRST_JOB_WAIT_S)."""
    for env in envs:
        worker = WorkerProcess(env, _on(env))
        worker.start()
        _PRESTARTED.append(worker)


def _worker(env: Mapping[str, str]) -> WorkerProcess:
    """A prestarted worker with this environment, else a new one (started on its first job)."""
    for worker in _PRESTARTED:
        if worker.env == dict(env):
            _PRESTARTED.remove(worker)
            return worker
    return WorkerProcess(env, _on(env))


class Slots:
    """One persistent worker per slot (`envs`: what each adds to its environment, e.g. its CUDA_VISIBLE_DEVICES),
    each pass killed after `timeout_s`, each worker with `threads` torch threads. `first` and `later` are the pass
    functions of `rounds.measure_in_rounds`; a slot runs one pass at a time. Close it (or use it as a context
    manager) to end the workers."""

    def __init__(self, envs: Sequence[Mapping[str, str]], timeout_s: float = DEFAULT_TIMEOUT_S,
                 threads: int | None = None):
        self.workers = [_worker(env) for env in envs]
        self.timeout_s, self.threads = timeout_s, _threads(threads)

    def first(self, case: Case, timing: Timing, suite: str, slot: int = 0) -> Measurement:
        began = time.perf_counter()
        found, why = self.workers[slot].run(Job("first", case, timing, suite, self.threads), self.timeout_s)
        return _measurement(case, timing, suite, found, why, began)

    def later(self, case: Case, timing: Timing, like: Measurement, retry: bool = False, slot: int = 0) -> Round:
        job = Job("again", case, timing, "", self.threads, like, retry)
        return _round(*self.workers[slot].run(job, self.timeout_s))

    @property
    def started(self) -> int:
        """Worker processes started so far (one per slot, plus one per replacement)."""
        return sum(worker.started for worker in self.workers)

    def kill(self) -> None:
        """Kill every worker now (passes still running included): a sweep that stops early waits for none."""
        for worker in self.workers:
            worker.kill()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def __enter__(self) -> "Slots":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gpu_slots(spec: str) -> list[str]:
    """`--gpus all | 0,1,3` as the CUDA_VISIBLE_DEVICES value of each worker: one GPU each, never shared. The
    numbers are torch's (cuda:0, cuda:1, ...): under a CUDA_VISIBLE_DEVICES of its own, the sweep hands each worker
    the entry that number stands for. UsageError (one line) for a GPU that is not there or is named twice."""
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise UsageError("--gpus: no CUDA GPU is visible here (use --workers N to run passes side by side on the CPU)")
    visible = os.environ.get(GPU_ENV)
    entries = [entry.strip() for entry in visible.split(",")][:count] if visible else [str(i) for i in range(count)]
    if spec.strip().lower() == "all":
        return entries
    picked = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) >= count:
            raise UsageError(f"--gpus {spec!r}: {part!r} is not a GPU here; give 'all' or numbers from 0 to "
                             f"{count - 1}, comma-separated")
        if entries[int(part)] in picked:
            raise UsageError(f"--gpus {spec!r}: GPU {part} is named twice; a GPU runs one case at a time")
        picked.append(entries[int(part)])
    return picked
