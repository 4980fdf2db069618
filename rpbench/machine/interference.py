"""What else the machine is doing: other processes' share of the CPU and other processes on the GPU.

Read around a timed window, never inside a timed call: /proc/stat's busy time of all CPUs minus this process's own
CPU time (so our threads never count as interference), and NVML's process list of the GPU. `busiest_others` names
the processes responsible, from their /proc/<pid>/stat accounting. Off Linux or without NVML the readings are None:
unknown, never "idle".
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.measurement import DISTURBED_MIN_CORES, Load
from . import telemetry

# rpbench's own test suite sets this so that what it checks of rounds, retries and pooling does not depend on what
# else the machine runs (tests side by side, a shared CI runner): other processes then read as using no CPU. The tests
# of this module and of the doctor's load check take it away. Never set it for a real measurement: env.json records
# it (`assume_quiet`), so a run measured with it says so.
ASSUME_QUIET_ENV = "RPBENCH_ASSUME_QUIET"


def assume_quiet() -> bool:
    return os.environ.get(ASSUME_QUIET_ENV, "") not in ("", "0")


# Windows shorter than this are extended (by waiting, after the timed loop) so the /proc/stat tick counts
# (100 per second per core) can resolve half a core.
MIN_WINDOW_S = 0.1


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot from /proc/stat (steal counts as busy), or None off Linux."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait; guest time is already inside user
    return sum(fields) - idle, sum(fields)


def logical_cores() -> int:
    return os.cpu_count() or 1


class _CpuWindow:
    """Others' busy cores between `start()` and `stop()`."""

    def start(self) -> None:
        self._jiffies, self._own, self._began = cpu_jiffies(), time.process_time(), time.perf_counter()

    def stop(self) -> tuple[float | None, float]:
        """(others' busy cores, window seconds)."""
        elapsed = time.perf_counter() - self._began
        if elapsed < MIN_WINDOW_S:
            time.sleep(MIN_WINDOW_S - elapsed)
            elapsed = time.perf_counter() - self._began
        if assume_quiet():
            return 0.0, elapsed
        after, own_after = cpu_jiffies(), time.process_time()
        before = self._jiffies
        if before is None or after is None or after[1] <= before[1]:
            return None, elapsed
        busy, total = after[0] - before[0], after[1] - before[1]
        own = (own_after - self._own) * os.sysconf("SC_CLK_TCK")
        return max(0.0, busy - own) / total * logical_cores(), elapsed


def others_busy_cores(interval_s: float) -> float | None:
    """Cores kept busy by other processes over a short sleep of this one; this process's own worker processes
    (its descendants: a sweep's `--isolate`/`--workers` workers importing torch as it starts) are not others."""
    window = _CpuWindow()
    kids_before = _descendant_ticks()
    window.start()
    time.sleep(interval_s)
    busy, elapsed = window.stop()
    if busy is None or assume_quiet():
        return busy
    return max(0.0, busy - (_descendant_ticks() - kids_before) / os.sysconf("SC_CLK_TCK") / elapsed)


PARENT_ENV = "RPBENCH_PARENT"  # "<pid>:<1 if it holds a CUDA context>", set by a sweep for its worker processes


@dataclass(frozen=True)
class GpuOthers:
    """The other processes on a GPU: how many, and the pids NVML lists for them (`pids` holds every listed pid
    when ours could not be told apart: a pid namespace hides our own pid from NVML's list)."""

    count: int
    pids: tuple[int, ...]
    ours_hidden: bool = False


def other_gpu_processes(cuda_index: int) -> GpuOthers | None:
    """The processes on torch's `cuda:<cuda_index>` other than this one (and, in a worker, the sweep that started
    it); None when NVML cannot list them. The one rule the doctor and every timed window use.

    A process is on NVML's list once it holds a CUDA context (torch's lazy init creates none, so this asks the
    driver: `torch_compat.holds_cuda_context`). In a container NVML reports host pids, and then the list does not
    show ours: one entry is taken to be us when we hold a context (and one our sweep's, when it holds one)."""
    nvml_index = telemetry.nvml_index_for_cuda_device(cuda_index)
    processes = None if nvml_index is None else telemetry.gpu_processes(nvml_index)
    if processes is None:
        return None
    pids = tuple(p["pid"] for p in processes)
    parent_pid, parent_context = _parent()
    ours = {os.getpid(), parent_pid} & set(pids)
    if ours:
        others = tuple(pid for pid in pids if pid not in ours)
        return GpuOthers(len(others), others)
    count = max(0, len(pids) - _holds_cuda_context(cuda_index) - parent_context)
    return GpuOthers(count, pids, ours_hidden=count < len(pids))


def gpu_others(cuda_index: int) -> int | None:
    """How many other processes use torch's `cuda:<cuda_index>` (`other_gpu_processes`); None when unknown."""
    found = other_gpu_processes(cuda_index)
    return None if found is None else found.count


def _parent() -> tuple[int | None, bool]:
    """The sweep process that started this worker, and whether it held a CUDA context then (see PARENT_ENV)."""
    pid, _, context = os.environ.get(PARENT_ENV, "").partition(":")
    return (int(pid) if pid.isdigit() else None), context == "1"


def parent_env() -> dict[str, str]:
    """PARENT_ENV for a worker this process starts or hands a job (a process that has not imported torch yet holds
    no CUDA context, and is not made to import it here)."""
    torch = sys.modules.get("torch")
    held = torch is not None and any(_holds_cuda_context(index) for index in range(torch.cuda.device_count()))
    return {PARENT_ENV: f"{os.getpid()}:{int(held)}"}


def _holds_cuda_context(cuda_index: int) -> bool:
    from ..measure.torch_compat import holds_cuda_context

    return holds_cuda_context(cuda_index)


class LoadMonitor:
    """The load beside one timed window: `with LoadMonitor(...) as monitor: <timed loop>` then `monitor.load`."""

    def __init__(self, own_threads: int, cuda_index: int | None = None):
        self.own_threads, self.cuda_index = own_threads, cuda_index
        self.load: Load | None = None
        self._cpu = _CpuWindow()

    def __enter__(self) -> "LoadMonitor":
        self._gpu_before = None if self.cuda_index is None else gpu_others(self.cuda_index)
        self._cpu.start()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, window_s = self._cpu.stop()
        gpu = None
        if self.cuda_index is not None:
            readings = [n for n in (self._gpu_before, gpu_others(self.cuda_index)) if n is not None]
            gpu = max(readings) if readings else None
        self.load = Load(others_busy_cores=busy, cores=logical_cores(), own_threads=self.own_threads,
                         window_s=window_s, gpu_others=gpu)


@dataclass(frozen=True)
class BusyProcess:
    pid: int
    name: str
    cores: float


def _process_ticks(parents: dict[int, int] | None = None) -> dict[int, tuple[str, int]]:
    """pid -> (command name, user + system ticks so far) of every process /proc lets us read; `parents`, when
    given, is filled with pid -> parent pid."""
    found = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text(encoding="utf-8", errors="replace")
        except OSError:  # gone, or not ours to read
            continue
        name_end = text.rfind(")")
        fields = text[name_end + 2:].split()
        try:
            found[int(entry.name)] = (text[text.find("(") + 1:name_end], int(fields[11]) + int(fields[12]))
            if parents is not None:
                parents[int(entry.name)] = int(fields[1])
        except (IndexError, ValueError):
            continue
    return found


def _descendants(parents: dict[int, int]) -> set[int]:
    """The pids below this process in `parents` (pid -> parent pid)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _descendant_ticks() -> int:
    """User + system ticks used so far by the processes this one started (and theirs)."""
    parents: dict[int, int] = {}
    ticks = _process_ticks(parents)
    return sum(ticks[pid][1] for pid in _descendants(parents) if pid in ticks)


def busiest_others(interval_s: float = 0.3, limit: int = 3) -> list[BusyProcess]:
    """The other processes using the most CPU over `interval_s` (at least a tenth of a core), busiest first."""
    if assume_quiet():
        return []
    before = _process_ticks()
    began = time.perf_counter()
    time.sleep(interval_s)
    parents: dict[int, int] = {}
    after = _process_ticks(parents)
    seconds = time.perf_counter() - began
    ticks = os.sysconf("SC_CLK_TCK")
    ours = {os.getpid(), *_descendants(parents)}  # this process and the workers it started are not others
    busy = []
    for pid, (name, used) in after.items():
        if pid in ours or pid not in before:
            continue
        cores = (used - before[pid][1]) / ticks / seconds
        if cores >= 0.1:
            busy.append(BusyProcess(pid, name, cores))
    return sorted(busy, key=lambda p: -p.cores)[:limit]


def describe_busiest(processes: list[BusyProcess]) -> str:
    """'stress (pid 4242) 1.00 core, python3 (pid 17) 0.98 core' or ''."""
    return ", ".join(f"{p.name} (pid {p.pid}) {p.cores:.2f} core" for p in processes)


# The doctor fails, and a sweep warns once at its start, when other processes keep this share of the cores busy.
BUSY_MACHINE_SHARE = 0.5


def busy_machine_sentence(busy_cores: float | None, cores: int, gpu_processes: int | None = None) -> str | None:
    """The one sentence `doctor` fails with and `sweep` warns with, or None when the machine is quiet enough."""
    parts = []
    if busy_cores is not None and busy_cores >= max(DISTURBED_MIN_CORES, BUSY_MACHINE_SHARE * cores):
        parts.append(f"other processes keep {busy_cores:.2f} of {cores} cores busy")
    if gpu_processes:
        parts.append(f"{gpu_processes} other process{'es use' if gpu_processes != 1 else ' uses'} the GPU")
    if not parts:
        return None
    return (" and ".join(parts) + ": timings taken now are slowed by them; wait until they finish or use an idle "
            "machine (rows measured meanwhile are flagged `disturbed`)")
