"""Isolation: every pass of a case in a fresh Python process (`rpbench sweep --isolate`).

A long run in one process can carry state from case to case (allocator fragmentation, a compiled-kernel cache, a
CUDA context poisoned by an illegal address); tritonbench made isolation its default for this reason. Here the
parent keeps the sweep (rounds, journal, store) and hands one pass at a time to `python -m rpbench.measure.worker`:
the job goes in on stdin (pickled), the result comes back in a file (pickled) so that whatever the mechanism prints
cannot corrupt it. What a dead worker leaves is a status, never a stopped sweep:

- `timeout`: no result within the case timeout; the worker's whole process group is killed;
- `crashed`: the worker died without a result (a segfault, a kill, an abort, an exception outside the runner), with
  its signal or exit code and the last line it wrote to stderr.

A lost CUDA context stays inside the worker: the case is an `error` naming it, and the next case gets a fresh
process (no resume needed). Mechanisms must be importable in the worker: registry names, installed plugins and
`pkg.module:Factory` / `file.py:Factory` references are; one registered only in the parent's own code is not.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from ..core.case import Case, Timing
from ..core.errors import UsageError
from ..core.measurement import Measurement, Round
from ..machine import interference

DEFAULT_TIMEOUT_S = 900.0
GPU_ENV = "CUDA_VISIBLE_DEVICES"
STDERR_TAIL = 200  # characters of a dead worker's stderr kept in its note


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
    env: tuple[tuple[str, str], ...] = ()  # set in the worker's environment (CUDA_VISIBLE_DEVICES of its GPU)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


_LIVE: set[subprocess.Popen] = set()  # workers running now (several with --workers), for kill_all
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """Kill every worker still running (a sweep stopped by Ctrl-C or an error does not wait for them)."""
    with _LIVE_LOCK:
        for process in list(_LIVE):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _run(job: Job, timeout_s: float) -> tuple[Any, str | None]:
    """(the worker's result, None), or (None, why there is none)."""
    with tempfile.TemporaryDirectory(prefix="rpbench-worker-") as scratch:
        result = Path(scratch) / "result.pickle"
        env = {**os.environ, **dict(job.env), **interference.parent_env()}
        process = subprocess.Popen([sys.executable, "-m", "rpbench.measure.worker", str(result)],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True, env=env)
        with _LIVE_LOCK:
            _LIVE.add(process)
        try:
            _, stderr = process.communicate(pickle.dumps(job), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return None, f"timeout: no result within {timeout_s:g} s{_on(job)}; the worker was killed"
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(process)
        if process.returncode == 0 and result.is_file():
            with result.open("rb") as handle:
                return pickle.load(handle), None
        how = _signal_name(process.returncode) if process.returncode < 0 else f"exit code {process.returncode}"
        tail = " ".join((stderr or b"").decode(errors="replace").split())[-STDERR_TAIL:]
        return None, f"crashed: the worker died ({how}){_on(job)}" + (f": {tail}" if tail else "")


def _on(job: Job) -> str:
    """' on GPU 3' for a pass pinned to a GPU (its row has no UUID: the worker died before it could say)."""
    gpu = dict(job.env).get(GPU_ENV)
    return f" on GPU {gpu}" if gpu is not None else ""


def _threads(threads: int | None) -> int:
    import torch

    return threads or torch.get_num_threads()


def run_first(case: Case, timing: Timing, suite: str, timeout_s: float = DEFAULT_TIMEOUT_S,
              threads: int | None = None, env: Mapping[str, str] | None = None) -> Measurement:
    """`runner.run_case` in a fresh process (with `threads` torch threads, default this process's count, and `env`
    added to its environment); a worker that hangs or dies is a `timeout` / `crashed` row."""
    began = time.perf_counter()
    found, why = _run(Job("first", case, timing, suite, _threads(threads), env=tuple((env or {}).items())), timeout_s)
    if found is None:
        status = why.split(":", 1)[0]
        return Measurement(case=case, suite=suite, status=status, notes=(why,), timing=timing,
                           elapsed_s=time.perf_counter() - began)
    if found.context_lost:  # contained in the worker: the next case starts in a fresh process
        found = replace(found, context_lost=False)
    return found


def run_again(case: Case, timing: Timing, like: Measurement, retry: bool = False,
              timeout_s: float = DEFAULT_TIMEOUT_S, threads: int | None = None,
              env: Mapping[str, str] | None = None) -> Round:
    """`runner.measure_again` in a fresh process; raises WorkerDied (one line) when the worker gives no result."""
    found, why = _run(Job("again", case, timing, "", _threads(threads), like, retry, tuple((env or {}).items())),
                      timeout_s)
    if found is None:
        raise WorkerDied(why)
    if isinstance(found, BaseException):
        raise found
    return found


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
