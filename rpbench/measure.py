"""Timing, memory and kernel-detection primitives. Each one runs its own pass; none mixes with another.

CUDA: one pair of CUDA events around every iteration, L2 flushed before each (outside the events), after a
time-based warm-up. CPU: time.perf_counter around every iteration. All samples are kept.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .cases import Measure

Step = Callable[[], object]


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Stats:
    median: float
    p20: float
    p80: float
    minimum: float
    mean: float
    iqr_pct: float
    n: int

    @property
    def noisy(self) -> bool:
        return self.iqr_pct > 10.0


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    position = (len(sorted_values) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(samples: list[float]) -> Stats:
    values = sorted(samples)
    median = _quantile(values, 0.5)
    iqr = _quantile(values, 0.75) - _quantile(values, 0.25)
    return Stats(
        median=median,
        p20=_quantile(values, 0.2),
        p80=_quantile(values, 0.8),
        minimum=values[0],
        mean=statistics.fmean(values),
        iqr_pct=100.0 * iqr / median if median > 0 else 0.0,
        n=len(values),
    )


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


def _sample_count(measure: Measure, per_call_ms: float) -> int:
    if measure.repeat is not None:
        return max(1, measure.repeat)
    wanted = math.ceil(measure.repeat_ms / max(per_call_ms, 1e-3))
    return int(min(max(wanted, measure.min_samples), measure.max_samples))


def l2_flush_buffer(device: str) -> torch.Tensor | None:
    """A buffer twice the device's L2 (at least 64 MiB) whose zeroing evicts the cache."""
    props = torch.cuda.get_device_properties(torch.device(device))
    l2_bytes = getattr(props, "L2_cache_size", 0) or 0
    size = max(2 * l2_bytes, 64 * 2**20)
    return torch.empty(size // 4, dtype=torch.int32, device=device)


def time_step(step: Step, reset: Step, device: str, measure: Measure) -> list[float]:
    """Latency samples in ms, one per iteration."""
    per_call_ms = _warm_up(step, reset, device, measure.warmup_ms)
    count = _sample_count(measure, per_call_ms)
    if device == "cuda":
        flush = l2_flush_buffer(device) if measure.flush_l2 else None
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
        for start, end in zip(starts, ends):
            if flush is not None:
                flush.zero_()
            reset()
            start.record()
            step()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in zip(starts, ends)]
    samples = []
    for _ in range(count):
        reset()
        began = time.perf_counter()
        step()
        samples.append((time.perf_counter() - began) * 1e3)
    return samples


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


@dataclass(frozen=True)
class MemoryPeak:
    allocated_mb: float | None
    reserved_mb: float | None
    note: str = ""


def peak_memory(step: Step, reset: Step, device: str) -> MemoryPeak:
    """Peak bytes allocated during one call above what was resident before it."""
    reset()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return MemoryPeak(
            allocated_mb=(torch.cuda.max_memory_allocated() - baseline) / 2**20,
            reserved_mb=torch.cuda.max_memory_reserved() / 2**20,
        )
    return _cpu_peak_from_profiler(step)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to fd 2 (Kineto prints a line at every profiler start and stop)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_from_profiler(step: Step) -> MemoryPeak:
    """Replay the CPU allocator's alloc/free events recorded by the profiler and take the running maximum."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    if not events:
        return MemoryPeak(None, None, "CPU peak memory unavailable: the profiler recorded no allocations")
    return MemoryPeak(allocated_mb=running_peak(events) / 2**20, reserved_mb=None)


def running_peak(events: list[tuple[int, int]]) -> int:
    """Highest running sum of (time, signed bytes) allocator events, in time order: the peak above the start."""
    running = peak = 0
    for _, nbytes in sorted(events):
        running += nbytes
        peak = max(peak, running)
    return peak


# SDPA backends worth probing per device type (CPU builds have only the flash and math kernels).
SDPA_CANDIDATES = {"cuda": ("flash", "efficient", "cudnn", "math"), "cpu": ("flash", "math")}

SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def sdpa_kernels_that_ran(step: Step, reset: Step) -> list[str]:
    """The SDPA backends dispatched during one call, read from the profiler's op names.

    The profiler sees composite ops too (the math backend has no kernel of its own), which a
    dispatch mode does not when autograd decomposes them first.
    """
    from torch.profiler import ProfilerActivity, profile

    reset()
    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    names = {event.name() for event in prof.profiler.kineto_results.events()}
    return sorted({SDPA_KERNELS[name] for name in names if name in SDPA_KERNELS})
