"""One persistent worker process, seen from the sweep (`rpbench.measure.isolated` gives each slot one).

`python -m rpbench.measure.worker JOBS RESULTS` is started once; it imports torch (and, on a GPU slot, creates its
CUDA context), says it is ready, then takes one job after another. Jobs go in and results come back pickled over
two pipes of their own (passed as file descriptors), so nothing a mechanism prints on stdout or stderr can corrupt
them; stdout is thrown away and stderr goes to a file, emptied before every job, whose tail names what killed a
worker. What ends a worker:

- it answers with a reason to retire (see `worker.fresh_process_reason`): it exits, and the next job starts a
  fresh one;
- no answer within the timeout (each job's counts from the moment it is sent; starting, which is not the case's
  time, gets at least START_TIMEOUT_S): its whole process group is killed;
- it dies (a segfault, a kill, an abort, an exception outside the runner): the pipe closes, and the job's answer
  is why, with its signal or exit code and the last line it wrote to stderr;
- the sweep is done with it (killed: it holds nothing), or the sweep process dies: the worker sees its parent
  gone and ends its process group;
- it was started ahead (`isolated.prestart`) and no job came for it (`worker.FIRST_JOB_WAIT_S`): it exits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Mapping

STDERR_TAIL = 200  # characters of a dead worker's stderr kept in its note
CLOSE_WAIT_S = 5.0  # how long a worker whose result pipe closed may take to exit before it is killed
START_TIMEOUT_S = 120.0  # at least this long to start (import torch, create a CUDA context) on a loaded machine
READY, TOOK = "ready", "took"  # what a worker says once started, and once it has a job

_LIVE: set["WorkerProcess"] = set()  # workers running now, for kill_all
_LIVE_LOCK = threading.Lock()


def kill_all() -> None:
    """Kill every worker still running (a sweep stopped by Ctrl-C or an error does not wait for them)."""
    with _LIVE_LOCK:
        workers = list(_LIVE)
    for worker in workers:
        worker.kill()


def signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class WorkerProcess:
    """A worker process with `env` added to its environment, started on the first job and again after it ends."""

    def __init__(self, env: Mapping[str, str] | None = None, where: str = ""):
        self.env = dict(env or {})
        self.where = where  # ' on GPU 3': said in every note about this worker
        self.started = 0  # processes started so far (a replaced worker counts again)
        self.pid: int | None = None
        self._process: subprocess.Popen | None = None
        self._jobs: Connection | None = None
        self._results: Connection | None = None
        self._stderr: int | None = None
        self._ready = False
        self._timeout_s = 0.0
        self._lock = threading.RLock()

    def run(self, job: Any, timeout_s: float) -> tuple[Any, str | None]:
        """(the worker's answer, None), or (None, why there is none: `timeout: ...` or `crashed: ...`). The
        timeout counts from the moment the job is sent (a fresh worker imports torch first, with at least
        START_TIMEOUT_S for it: its start is not the case's time). A worker that dies before it took the job
        (killed while idle) is not the job's doing: the job goes once more to a fresh one."""
        self._timeout_s = timeout_s
        for attempt in range(2):
            if self._process is not None and self._process.poll() is not None:
                self.kill()  # it died while idle
            if self._process is None:
                self.start()
            if not self._ready:
                _, why = self._answer(time.monotonic() + max(timeout_s, START_TIMEOUT_S), READY)
                if why is not None:
                    return None, why
                self._ready = True
            os.ftruncate(self._stderr, 0)  # the tail a death leaves is this job's
            deadline = time.monotonic() + timeout_s
            try:
                self._jobs.send(job)
            except OSError:
                pass  # it is dead: the answer below says how
            _, why = self._answer(deadline, TOOK)
            if why is None:
                break
            if attempt or why.startswith("timeout"):
                return None, why
        answer, why = self._answer(deadline, None)
        if why is not None:
            return None, why
        result, retire = answer
        if retire:  # the next job starts a fresh one
            self.close()
        return result, None

    def start(self) -> None:
        """Start the process now (it imports torch while this one goes on); `run` starts it when it is not."""
        from ..machine import interference

        jobs_read, jobs_write = os.pipe()
        results_read, results_write = os.pipe()
        path = tempfile.mkstemp(prefix="rpbench-worker-", suffix=".stderr")[1]
        self._stderr = os.open(path, os.O_RDWR | os.O_APPEND)
        os.unlink(path)
        env = {**os.environ, **self.env, **interference.parent_env()}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "rpbench.measure.worker", str(jobs_read), str(results_write)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
                pass_fds=(jobs_read, results_write), start_new_session=True, env=env)
        finally:
            os.close(jobs_read)
            os.close(results_write)
        self.pid = self._process.pid
        self.started += 1
        self._jobs = Connection(jobs_write, readable=False)
        self._results = Connection(results_read, writable=False)
        self._ready = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _answer(self, deadline: float, expected: str | None) -> tuple[Any, str | None]:
        """The worker's next message (`expected`, or a job's result when None) by `deadline`; else why not."""
        try:
            if not self._results.poll(max(0.0, deadline - time.monotonic())):
                self.kill()
                what = (f"the worker did not start within {max(self._timeout_s, START_TIMEOUT_S):g} s"
                        if expected == READY else f"no result within {self._timeout_s:g} s")
                return None, f"timeout: {what}{self.where}; the worker was killed"
            answer = self._results.recv()
        except (EOFError, OSError):
            return None, self._died()
        if expected is not None and answer != expected:
            return None, self._died()
        return answer, None

    def _died(self) -> str:
        """Why the worker gave no answer: its signal or exit code and the last words on its stderr."""
        process = self._process
        if process is None:  # killed meanwhile by kill_all (the sweep is stopping)
            return f"crashed: the worker was killed{self.where} (the sweep stopped)"
        try:
            code = process.wait(timeout=CLOSE_WAIT_S)
        except subprocess.TimeoutExpired:  # its pipe closed, yet it lives on
            code = None
        how = ("it closed its result pipe" if code is None else signal_name(code) if code < 0 else
               f"exit code {code}")
        tail = " ".join(self._stderr_text().split())[-STDERR_TAIL:]
        self.kill()  # what it started, if anything outlived it
        return f"crashed: the worker died ({how}){self.where}" + (f": {tail}" if tail else "")

    def _stderr_text(self) -> str:
        try:
            size = os.fstat(self._stderr).st_size
            return os.pread(self._stderr, 8 * STDERR_TAIL, max(0, size - 8 * STDERR_TAIL)).decode(errors="replace")
        except (OSError, TypeError):  # gone: killed meanwhile from another thread
            return ""

    def kill(self) -> None:
        """Kill the worker and everything it started, now (its process group). Safe from any thread: a sweep that
        stops kills the workers its slots are waiting on."""
        with self._lock:
            process = self._process
            if process is None:
                return
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            self._forget()

    def close(self) -> None:
        """End the worker. It holds nothing (every answer is in), so it is killed with what it started (a compile
        pool) rather than waited for."""
        self.kill()

    def _forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)
        for connection in (self._jobs, self._results):
            if connection is not None and not connection.closed:
                connection.close()
        if self._stderr is not None:
            os.close(self._stderr)
        self._process = self._jobs = self._results = self._stderr = None
        self._ready = False
