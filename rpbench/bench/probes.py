"""Untimed passes that observe one call: peak memory, which SDPA kernel ran, and a model's share of attention time.

Each runs in its own pass, never inside a timed region: the profiler and the allocator's bookkeeping slow down
whatever they watch.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from ..core.measurement import MemoryPeak
from .timing import Step

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

ATTENTION_EVENT = "backbone.attention"
FORWARD_EVENT = "backbone.forward"


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


# ---- peak memory


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


def _cpu_peak_from_profiler(step: Step) -> MemoryPeak:
    """Replay the CPU allocator's alloc/free events recorded by the profiler and take the running maximum."""
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


# ---- kernels


def sdpa_kernels_that_ran(step: Step, reset: Step) -> list[str]:
    """The SDPA backends dispatched during one call, read from the profiler's op names.

    The profiler sees composite ops too (the math backend has no kernel of its own), which a
    dispatch mode does not when autograd decomposes them first.
    """
    reset()
    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    names = {event.name() for event in prof.profiler.kineto_results.events()}
    return sorted({SDPA_KERNELS[name] for name in names if name in SDPA_KERNELS})


# ---- a backbone's time inside attention


def _annotate(modules: list[nn.Module]) -> list:
    """Wrap each module's forward in a profiler range via hooks, so the model itself is unchanged."""
    open_ranges = []

    def enter(module, args):
        open_ranges.append(record_function(ATTENTION_EVENT))
        open_ranges[-1].__enter__()

    def leave(module, args, output):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles


def attention_share(model: nn.Module, images: Tensor, device: str | torch.device) -> float:
    """Fraction of one forward's time spent inside the model's attention modules, measured.

    Runs one warm-up forward, then one forward under torch.profiler with every attention module in
    a `backbone.attention` range. On CUDA the times are kernel (device) time; on CPU they are the
    ranges' wall time. `model` must be a backbone from `rpbench.backbones.build` (it lists its
    attention modules), on `device` with `images`.
    """
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    handles = _annotate(model.attention_modules())
    try:
        with torch.no_grad():
            model(images)
            if cuda:
                torch.cuda.synchronize()
            with quiet_native_stderr(), profile(activities=activities) as prof:
                with record_function(FORWARD_EVENT):
                    model(images)
                if cuda:
                    torch.cuda.synchronize()
    finally:
        for handle in handles:
            handle.remove()

    def duration(event) -> float:
        return event.device_time_total if cuda else event.cpu_time_total

    # CPU-side ranges only: on CUDA their device_time_total sums the kernels they launched, while
    # the matching GPU-side annotation events would count the same work again.
    events = [
        e for e in prof.events() if e.name in (ATTENTION_EVENT, FORWARD_EVENT) and e.device_type == DeviceType.CPU
    ]
    total = sum(duration(e) for e in events if e.name == FORWARD_EVENT)
    inside = sum(duration(e) for e in events if e.name == ATTENTION_EVENT)
    if total <= 0:
        raise RuntimeError("the profiler recorded no forward time; cannot compute the attention share")
    return min(max(inside / total, 0.0), 1.0)
