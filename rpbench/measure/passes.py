"""The untimed passes of one case around its timed loop that are more than a call: compiling first, counting
FLOPs, choosing the timer, and the GPU energy of one call over NVML (`rpbench.measure.runner` runs them in order).
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch

import attentions

from ..core.case import Case, Timing
from ..core.errors import one_line
from ..core.measurement import GpuReading
from ..machine import telemetry
from .timing import CUDA_GRAPH, GraphCaptureFailed, capture_step, synchronize
from .torch_compat import compile_replays_cudagraphs
from .workload import Workload

NOTE_LIMIT = 300  # characters of an error message kept in a row's notes


def counted_flops(case: Case, work: Workload) -> tuple[int | None, str | None]:
    """(FLOPs of one call, a note): FlopCounterMode's count; for a mechanism it cannot count here (neighborhood's
    flex and natten backends) the formula, saying so; a count that fails is a note, never the row's error."""
    reason = attentions.uncounted_flops(work.module, case.device)
    if reason is not None:
        if case.scope == "layer" and work.flops_analytic is not None:
            return work.flops_analytic, f"flops_counted is the FLOP formula's: {reason}"
        return None, f"FLOPs not counted: {reason}"
    try:
        # 0 counted means FlopCounterMode saw none of the work (ops it does not know): unknown, kept empty, noted
        return attentions.count_flops(lambda: (work.reset(), work.probe_step())) or None, None
    except Exception as err:  # noqa: BLE001 - a count is a fact about the case, never its failure
        return None, f"FLOPs not counted: {one_line(err)[:NOTE_LIMIT]}"


def timer_for(case: Case, timing: Timing) -> tuple[Timing, str | None]:
    """The timer settings of a case's timed passes, and a note when they differ from `timing`: a torch.compile
    mode that replays its own CUDA graphs (reduce-overhead, max-autotune) is timed with CUDA events around the
    compiled call, never captured again inside a second graph."""
    if case.device != "cuda" or timing.timer == "eager" or not compile_replays_cudagraphs(case.compile):
        return timing, None
    return replace(timing, timer="eager"), (f"timed with CUDA events around the compiled call: torch.compile mode "
                                            f"{case.compile} replays its own CUDA graphs")


class CompileFailed(RuntimeError):
    """torch.compile could not compile the case (its status, never a silent fallback to eager)."""


def compile_first(work: Workload, device: str) -> dict[str, float | int]:
    """The first compiled call (where torch.compile compiles), timed on its own, then a second call that must not
    compile again: compile_s, graphs, graph_breaks and recompiles, from Dynamo's counters. A failure to compile
    is the case's status, never a silent fallback to eager."""
    from torch._dynamo.utils import counters

    try:
        work.reset()
        began = time.perf_counter()
        work.step()
        synchronize(device)
        seconds = time.perf_counter() - began
        graphs = counters["stats"]["unique_graphs"]
        work.reset()
        work.step()
    except Exception as err:
        raise CompileFailed(f"torch.compile failed: {one_line(err)[:NOTE_LIMIT]}") from None
    return {"compile_s": seconds, "graphs": graphs, "graph_breaks": sum(counters["graph_break"].values()),
            "recompiles": counters["stats"]["unique_graphs"] - graphs}


def reading(gpu: int) -> GpuReading:
    """SM clock, temperature and power now (NVML; a handful of reads, never inside timing)."""
    snap = telemetry.snapshot(gpu)
    return GpuReading(sm_clock_mhz=snap.get("sm_clock_mhz"), temp_c=snap.get("temp_c"), power_w=snap.get("power_w"))


def energy_per_call(gpu: int, work: Workload, timing: Timing,
                     timer: str) -> tuple[float | None, float | None, str | None]:
    """(joules per call, window seconds, a note) from NVML's energy counter over back-to-back calls of what the
    row's `timer` timed (replays of the captured step under the graph timer, else the step) until at least
    max(timing.energy_s, EnergyMeter.MIN_WINDOW_S) of synchronised wall time has passed (the counter refreshes
    every 20-100 ms); no energy, with a note saying why, when the counter is unsupported or capture fails."""
    meter = telemetry.EnergyMeter(gpu)
    if not meter.supported:
        return None, None, "energy: NVML total-energy counter unsupported on this GPU/driver"
    call, reset = work.step, work.reset
    if timer == CUDA_GRAPH:
        try:
            call, reset = capture_step(work.step, work.reset).replay, (lambda: None)
        except GraphCaptureFailed as err:
            return None, None, f"energy not measured: CUDA graph capture failed ({err})"
    least_s = max(timing.energy_s, telemetry.EnergyMeter.MIN_WINDOW_S)
    torch.cuda.synchronize()
    meter.start()
    began = time.perf_counter()
    calls, chunk = 0, 1
    while True:
        for _ in range(chunk):
            reset()
            call()
        calls += chunk
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - began
        if elapsed >= least_s:
            break
        chunk = min(calls, 1024)  # doubling chunks: few synchronisations, never far past the window
    joules = meter.stop()
    if joules is None:
        return None, None, "energy: the NVML energy counter gave no reading over the window"
    return joules / calls, elapsed, None
