"""Doctor checks of a CUDA GPU: event timer vs host time, other processes, persistence, MIG, clocks and
temperature under load (NVML). They only look; nothing here changes a GPU setting."""
from __future__ import annotations

import time
from typing import Any

from ..measure.timing import quick_median_ms
from ..core.diagnostics import Check
from ..core.gpu import SLOWDOWN_REASONS
from . import interference, telemetry

# Slow-downs that come from heat or hardware protection rather than the normal power cap of a busy GPU.
HARMFUL_THROTTLES = SLOWDOWN_REASONS
HOT_C = 85
TIMER_AGREEMENT_PASS_PCT = 5.0
TIMER_AGREEMENT_FAIL_PCT = 20.0


def cuda_timer_check() -> Check:
    """CUDA events around a matmul loop must agree with synchronised host time, or event timing is suspect."""
    import torch

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    b, out = torch.randn_like(a), torch.empty_like(a)
    per_call = quick_median_ms(lambda: torch.mm(a, b, out=out), lambda: None, "cuda") / 1e3
    iters = max(10, min(5000, int(0.2 / per_call)))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    host_start = time.perf_counter()
    start.record()
    for _ in range(iters):
        torch.mm(a, b, out=out)
    end.record()
    end.synchronize()
    host_ms = (time.perf_counter() - host_start) * 1e3
    event_ms = start.elapsed_time(end)
    gap_pct = abs(host_ms - event_ms) / event_ms * 100
    values = {"event_ms": event_ms, "host_ms": host_ms, "iterations": iters, "disagreement_pct": gap_pct}
    detail = f"{iters} matmuls: CUDA events {event_ms:.1f} ms vs host {host_ms:.1f} ms ({gap_pct:.1f}% apart)"
    if gap_pct <= TIMER_AGREEMENT_PASS_PCT:
        return Check("timer", "pass", detail, "", values)
    status = "warn" if gap_pct <= TIMER_AGREEMENT_FAIL_PCT else "fail"
    return Check("timer", status, detail,
                 "event and host time disagree: another process or a launch bottleneck is interfering", values)


def _snapshot_under_load(cuda_index: int, seconds: float) -> dict[str, Any]:
    """NVML snapshot taken while matmuls run, after `seconds` of load so clocks and heat have settled.

    Work is queued in ~50 ms batches and the host waits for the previous batch before queueing the next, so the
    GPU never idles yet at most two batches are pending (a full launch queue could take seconds to drain).
    """
    import torch

    a = torch.randn(4096, 4096, device=f"cuda:{cuda_index}", dtype=torch.float16)
    b, out = torch.randn_like(a), torch.empty_like(a)
    per_call = quick_median_ms(lambda: torch.mm(a, b, out=out), lambda: None, "cuda") / 1e3
    batch = max(1, int(0.05 / per_call))
    previous = None
    deadline = time.perf_counter() + seconds
    while True:
        for _ in range(batch):
            torch.mm(a, b, out=out)
        queued = torch.cuda.Event()
        queued.record()
        if previous is not None:
            previous.synchronize()
        previous = queued
        if time.perf_counter() >= deadline:
            break
    busy = telemetry.snapshot(cuda_index)  # the last batch is still running
    previous.synchronize()
    return busy


def check_gpu_state(cuda_index: int = 0) -> list[Check]:
    """Processes, persistence, and clocks/throttling/temperature read while the GPU is busy (NVML)."""
    if not telemetry.nvml_available():
        return [Check("gpu telemetry", "warn", f"NVML unavailable: {telemetry.nvml_unavailable_reason()}",
                      "clocks, throttling and other processes cannot be verified; energy will not be recorded")]
    nvml_index = telemetry.nvml_index_for_cuda_device(cuda_index)
    if nvml_index is None:
        return [Check("gpu telemetry", "warn", f"cannot match cuda:{cuda_index} to an NVML device",
                      "check CUDA_VISIBLE_DEVICES (MIG slices are not mapped); GPU state is not verified")]
    checks = []
    others = interference.other_gpu_processes(cuda_index)
    if others is None:
        checks.append(Check("gpu processes", "warn", "NVML cannot list processes here", ""))
    elif others.count:
        listed = ", ".join(f"pid {pid}" for pid in others.pids)
        hidden = " (NVML shows host pids: this process is one of them)" if others.ours_hidden else ""
        checks.append(Check("gpu processes", "fail", f"{others.count} other process(es) on the GPU: {listed}{hidden}",
                            interference.busy_machine_sentence(None, 0, others.count) or "",
                            {"other_pids": list(others.pids), "others": others.count}))
    else:
        checks.append(Check("gpu processes", "pass", "no other process on the GPU", ""))

    info = telemetry.gpu_inventory()[nvml_index]
    if info["persistence_mode"] is False:
        checks.append(Check("persistence mode", "warn", "persistence mode is off",
                            "the driver may unload between runs (slow starts, cold clocks); an administrator can "
                            "run `nvidia-smi -pm 1`; rpbench never changes it"))
    else:
        state = "on" if info["persistence_mode"] else "unknown"
        checks.append(Check("persistence mode", "pass", f"persistence mode {state}", ""))
    if info["mig_enabled"]:
        checks.append(Check("mig", "warn", "MIG is enabled: this is a slice of the GPU",
                            "ceilings and MFU refer to the slice, not the whole GPU"))

    busy = _snapshot_under_load(cuda_index, 0.5)
    checks.append(_clock_check(busy, info["sm_clock_max_mhz"]))
    checks.append(_temperature_check(busy["temp_c"]))
    return checks


def _clock_check(busy: dict[str, Any], max_mhz: int | None) -> Check:
    clock, reasons = busy["sm_clock_mhz"], busy["throttle_reasons"] or []
    values = {"sm_clock_busy_mhz": clock, "sm_clock_max_mhz": max_mhz, "throttle_reasons_busy": reasons}
    ratio = f" ({clock / max_mhz:.0%} of max {max_mhz})" if clock and max_mhz else ""
    detail = f"under load: SM clock {clock} MHz{ratio}; reasons: {', '.join(reasons) or 'none'}"
    harmful = sorted(HARMFUL_THROTTLES.intersection(reasons))
    if harmful:
        return Check("gpu clocks", "warn", detail,
                     f"{', '.join(harmful)}: cooling or power delivery limits the clock; results will drift",
                     values)
    return Check("gpu clocks", "pass", detail, "", values)


def _temperature_check(temp_c: int | None) -> Check:
    values = {"temp_busy_c": temp_c}
    if temp_c is None:
        return Check("gpu temperature", "warn", "temperature not readable", "", values)
    if temp_c >= HOT_C:
        return Check("gpu temperature", "warn", f"{temp_c} °C under load",
                     "a hot GPU throttles and draws more power: improve cooling or cool down between cases",
                     values)
    return Check("gpu temperature", "pass", f"{temp_c} °C under load", "", values)
