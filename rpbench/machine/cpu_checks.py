"""Doctor checks of the host CPU: load from other processes, frequency governor, thread count, timer resolution."""
from __future__ import annotations

import os
import time

from ..core.diagnostics import Check
from . import environment


def _proc_stat_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait; guest time is already inside user
    return sum(fields) - idle, sum(fields)


def _others_busy_cores(interval_s: float) -> float | None:
    """Cores kept busy by *other* processes over a short sleep (this process's own CPU time is subtracted)."""
    before, own_before = _proc_stat_jiffies(), time.process_time()
    time.sleep(interval_s)
    after, own_after = _proc_stat_jiffies(), time.process_time()
    if before is None or after is None or after[1] == before[1]:
        return None
    busy, total = after[0] - before[0], after[1] - before[1]
    own = (own_after - own_before) * os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    return max(0.0, busy - own) / total * cores


def check_cpu_load() -> Check:
    cores = os.cpu_count() or 1
    busy = _others_busy_cores(0.3)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    values = {"others_busy_cores": busy, "loadavg_1m": load1, "logical_cores": cores}
    if busy is None and load1 is None:
        return Check("cpu load", "warn", "neither /proc/stat nor a load average is readable", "", values)
    if busy is None:
        busy_text, busy = f"load average {load1:.2f} on {cores} cores", load1
    else:
        busy_text = f"other processes keep {busy:.2f} of {cores} cores busy"
    if busy > max(0.5, 0.1 * cores):
        return Check("cpu load", "warn", busy_text,
                     "other work competes for the CPU (launch overhead, CPU timings): wait for it or move", values)
    return Check("cpu load", "pass", busy_text, "", values)


def check_cpu_governor() -> Check:
    governor = environment.cpu_governor()
    values = {"governor": governor}
    if governor is None:
        return Check("cpu governor", "pass", "not exposed here (usual in VMs and containers); cannot check",
                     "", values)
    if governor == "performance":
        return Check("cpu governor", "pass", "scaling governor 'performance'", "", values)
    return Check("cpu governor", "warn", f"scaling governor '{governor}': clocks ramp with load",
                 "an administrator can set 'performance' (cpupower frequency-set -g performance); "
                 "rpbench never changes it", values)


def check_threads() -> Check:
    import torch

    threads, cores, logical = torch.get_num_threads(), environment.usable_cores(), os.cpu_count()
    values = {"torch_threads": threads, "usable_cores": cores, "logical_cores": logical}
    detail = f"torch uses {threads} intra-op threads; {cores} usable of {logical} logical cores"
    if threads > cores:
        return Check("cpu threads", "warn", detail,
                     "more threads than usable cores oversubscribes the CPU: lower OMP_NUM_THREADS", values)
    return Check("cpu threads", "pass", detail, "", values)


def _perf_counter_resolution(samples: int = 2000) -> float:
    """Smallest step perf_counter actually takes, in seconds (the declared resolution can be optimistic)."""
    smallest = float("inf")
    for _ in range(samples):
        start = now = time.perf_counter()
        while now == start:
            now = time.perf_counter()
        smallest = min(smallest, now - start)
    return smallest


def cpu_timer_check() -> Check:
    resolution = _perf_counter_resolution()
    declared = time.get_clock_info("perf_counter").resolution
    values = {"perf_counter_resolution_s": resolution, "declared_resolution_s": declared}
    detail = f"time.perf_counter steps every {resolution * 1e9:.0f} ns (declared {declared * 1e9:.0f} ns)"
    if resolution <= 1e-6:
        return Check("timer", "pass", detail, "", values)
    if resolution <= 1e-3:
        return Check("timer", "warn", detail, "coarse clock: sub-millisecond CPU cases will be quantised", values)
    return Check("timer", "fail", detail, "the clock is too coarse for CPU latency measurements", values)
