"""Timers: the only code that decides what is inside a timed region.

CUDA: one pair of CUDA events around every iteration, L2 flushed before each (outside the events), after a
time-based warm-up. CPU: time.perf_counter around every iteration, the garbage collector off during the loop (as
timeit does). All samples are kept; statistics are derived
from them later (`rpbench.core.measurement.summarize`).
"""
from __future__ import annotations

import gc
import math
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from ..core.case import Timing
from ..core.errors import one_line
from . import torch_compat

Step = Callable[[], object]

# The most time the timed loop of one case may take, whatever `repeat` or `min_samples` ask (the runner notes a cut).
MAX_TIMED_S = 600.0

# Which timer produced a row's samples (the `timer` column).
TIMER_NAMES = {"cuda": "cuda_event", "cpu": "perf_counter"}
CUDA_GRAPH = "cuda_graph"


class GraphCaptureFailed(RuntimeError):
    pass


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _warm_up(step: Step, reset: Step, device: str, warmup_ms: float) -> float:
    """Run until warmup_ms of wall time has passed (at least twice); returns ms per call seen."""
    synchronize(device)
    began = time.perf_counter()
    calls = 0
    while True:
        reset()
        step()
        synchronize(device)
        calls += 1
        elapsed_ms = (time.perf_counter() - began) * 1e3
        if calls >= 2 and elapsed_ms >= warmup_ms:
            return elapsed_ms / calls


def _sample_count(timing: Timing, per_call_ms: float) -> int:
    """Samples to take: `repeat`, else what fits in repeat_ms within [min_samples, max_samples]; never more than
    fit in MAX_TIMED_S (at least one)."""
    if timing.repeat is not None:
        wanted = timing.repeat
    else:
        wanted = min(max(math.ceil(timing.repeat_ms / max(per_call_ms, 1e-3)), timing.min_samples),
                     timing.max_samples)
    budget = max(1, math.floor(MAX_TIMED_S * 1e3 / max(per_call_ms, 1e-3)))
    return int(max(1, min(wanted, budget)))


def l2_flush_buffer(device: str) -> torch.Tensor | None:
    """A buffer twice the device's L2 (at least 64 MiB) whose zeroing evicts the cache."""
    props = torch.cuda.get_device_properties(torch.device(device))
    l2_bytes = getattr(props, "L2_cache_size", 0) or 0
    size = max(2 * l2_bytes, 64 * 2**20)
    return torch.empty(size // 4, dtype=torch.int32, device=device)


def _event_samples(call: Step, reset: Step, device: str, timing: Timing, count: int) -> list[float]:
    """`count` samples of `call`, each between a CUDA event pair, L2 flushed and `reset` run before (outside)."""
    flush = l2_flush_buffer(device) if timing.flush_l2 else None
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
    for start, end in zip(starts, ends):
        if flush is not None:
            flush.zero_()
        reset()
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in zip(starts, ends)]


def capture_step(step: Step, reset: Step) -> torch.cuda.CUDAGraph:
    """One call of `step` captured into a CUDA graph: three warm-up calls on a side stream (lazy init, workspace and
    autotuning stay out of the graph), `reset` (grads cleared) before capture. Raises GraphCaptureFailed with the
    failing op's own error; the current stream is the one before (`torch_compat.capture`)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                reset()
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        reset()
        torch_compat.capture(graph, step)
        torch.cuda.synchronize()
    except Exception as err:  # an op that cannot be captured (a host sync, dynamic shapes, CPU tensors)
        torch.cuda.synchronize()
        raise GraphCaptureFailed(str(err) if isinstance(err, torch_compat.CaptureFailed) else one_line(err)) from None
    return graph


def time_graph(step: Step, reset: Step, device: str, timing: Timing) -> list[float]:
    """Latency samples in ms of one captured step replayed (`capture_step`), then flush -> start event -> replay ->
    end event per sample. Raises GraphCaptureFailed."""
    graph = capture_step(step, reset)
    per_call_ms = _warm_up(graph.replay, lambda: None, device, timing.warmup_ms)
    return _event_samples(graph.replay, lambda: None, device, timing, _sample_count(timing, per_call_ms))


def timed_samples(step: Step, reset: Step, device: str, timing: Timing) -> tuple[list[float], str, str | None]:
    """(samples, the timer that produced them, a note): the timer `timing.timer` asks for on this device.

    auto: a CUDA graph where capture works, else eager events with a note saying why; cudagraph: a capture
    failure raises; eager: CUDA events around each call. The CPU always times with perf_counter."""
    if device != "cuda":
        note = "the cudagraph timer is CUDA-only; timed with perf_counter" if timing.timer == "cudagraph" else None
        return time_step(step, reset, device, timing), TIMER_NAMES[device], note
    if timing.timer != "eager":
        try:
            return time_graph(step, reset, device, timing), CUDA_GRAPH, None
        except GraphCaptureFailed as err:
            if timing.timer == "cudagraph":
                raise GraphCaptureFailed(f"CUDA graph capture failed: {err}") from None
            note = f"CUDA graph capture failed ({err}); timed eagerly"
            return time_step(step, reset, device, timing), TIMER_NAMES[device], note
    return time_step(step, reset, device, timing), TIMER_NAMES[device], None


def time_step(step: Step, reset: Step, device: str, timing: Timing) -> list[float]:
    """Latency samples in ms, one per iteration (eager: the step itself between the events)."""
    per_call_ms = _warm_up(step, reset, device, timing.warmup_ms)
    count = _sample_count(timing, per_call_ms)
    if device == "cuda":
        return _event_samples(step, reset, device, timing, count)
    samples = []
    with gc_off():
        for _ in range(count):
            reset()
            began = time.perf_counter()
            step()
            samples.append((time.perf_counter() - began) * 1e3)
    return samples


@contextmanager
def gc_off() -> Iterator[None]:
    """Python's garbage collector off while a CPU loop is timed, as timeit does: a collection the loop's own
    allocations trigger would land inside one sample. Back on afterwards, if it was on before."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def launch_costs(step: Step, reset: Step, calls: int = 5) -> tuple[float, float]:
    """(host_ms, launch_ms) of an eager CUDA call: synchronised wall time per call, and the time the call takes to
    return before synchronising (enqueueing its kernels), medians over `calls` calls started on an idle GPU."""
    host_ms = quick_median_ms(step, reset, "cuda", calls)
    launches = []
    for _ in range(calls):
        reset()
        torch.cuda.synchronize()
        began = time.perf_counter()
        step()
        launches.append((time.perf_counter() - began) * 1e3)
        torch.cuda.synchronize()
    return host_ms, statistics.median(launches)


def quick_median_ms(step: Step, reset: Step, device: str, calls: int = 5) -> float:
    """A short synchronised estimate, for choosing between variants (not for reporting)."""
    _warm_up(step, reset, device, warmup_ms=0.0)
    times = []
    for _ in range(calls):
        reset()
        synchronize(device)
        began = time.perf_counter()
        step()
        synchronize(device)
        times.append((time.perf_counter() - began) * 1e3)
    return statistics.median(times)
