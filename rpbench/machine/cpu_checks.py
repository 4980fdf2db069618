"""Doctor checks of the host CPU: load from other processes, frequency governor, thread count, timer resolution."""
from __future__ import annotations

import os
import time

from ..core.diagnostics import Check
from . import environment, interference


def check_cpu_load() -> Check:
    """Fails when other processes keep half the cores or more busy: the sentence a sweep warns with."""
    cores = interference.logical_cores()
    busy = interference.others_busy_cores(0.3)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    values = {"others_busy_cores": busy, "loadavg_1m": load1, "logical_cores": cores}
    if busy is None:
        text = "no /proc/stat here" + (f"; load average {load1:.2f} on {cores} cores" if load1 is not None else "")
        return Check("cpu load", "warn", text, "cannot tell how busy the machine is; watch the `disturbed` column",
                     values)
    detail = f"other processes keep {busy:.2f} of {cores} cores busy"
    busiest = interference.busiest_others() if busy >= interference.DISTURBED_MIN_CORES else []
    values["busiest"] = [vars(p) for p in busiest]
    if busiest:
        detail += f" (busiest: {interference.describe_busiest(busiest)})"
    sentence = interference.busy_machine_sentence(busy, cores)
    if sentence:
        return Check("cpu load", "fail", detail, sentence, values)
    if busy >= interference.DISTURBED_MIN_CORES:
        return Check("cpu load", "warn", detail, "cases whose threads need those cores will be flagged `disturbed`",
                     values)
    return Check("cpu load", "pass", detail, "", values)


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
