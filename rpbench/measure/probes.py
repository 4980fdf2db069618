"""Untimed passes that observe one call: peak memory, which SDPA kernel ran, and a model's share of attention time.

Each runs in its own pass, never inside a timed region: the allocator's bookkeeping slows down whatever it watches.
None of them starts a profiler session on CUDA (a session can leave CUPTI attached and slow the timed passes after
it, and a CPU-only first session can leave kineto without GPU tracing for the process): the SDPA kernel is read
from torch's own dispatch rule, peak memory from the allocator's statistics, the attention share from CUDA events.
Only the CPU's peak memory uses a (CPU-only) profile.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from ..core.measurement import MemoryPeak
from . import torch_compat
from .timing import Step

# SDPA backends worth probing per device type (CPU builds have only the flash and math kernels).
SDPA_CANDIDATES = {"cuda": ("flash", "efficient", "cudnn", "math"), "cpu": ("flash", "math")}


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
        baseline, held = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
        step()
        torch.cuda.synchronize()
        return MemoryPeak(
            allocated_mb=(torch.cuda.max_memory_allocated() - baseline) / 2**20,
            reserved_mb=(torch.cuda.max_memory_reserved() - held) / 2**20,
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


@contextlib.contextmanager
def _sdpa_choices() -> Iterator[list[str]]:
    """Inside: every call of F.scaled_dot_product_attention also records the backend torch's dispatch rule picks
    for its arguments (`torch_compat.sdpa_choice`, under the sdpa_kernel context in force at the call). The module
    attribute is swapped for the block, not a TorchFunctionMode: a mode on the stack makes torch.compile'd code
    called inside (neighborhood's flex) trace it, fail, or recompile when the mode is gone."""
    chosen: list[str] = []
    original = F.scaled_dot_product_attention

    def recording(*args, **kwargs):
        name = torch_compat.sdpa_choice(*args, **kwargs)
        if name is not None:
            chosen.append(name)
        return original(*args, **kwargs)

    F.scaled_dot_product_attention = recording
    try:
        yield chosen
    finally:
        F.scaled_dot_product_attention = original


def sdpa_kernels_that_ran(step: Step, reset: Step) -> list[str]:
    """The SDPA backends of every F.scaled_dot_product_attention call during one call, by torch's own rule: no
    profiler session (see the module's docstring)."""
    reset()
    with _sdpa_choices() as chosen:
        step()
    return sorted(set(chosen))


# ---- a backbone's time inside attention

SHARE_CALLS = 3  # forwards averaged for the attention share, after one warm-up forward


class _Clock:
    """Marks on one timeline: CUDA events recorded on the current stream (GPU time, no profiler, no CUPTI), or
    perf_counter on the CPU."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def spans_ms(self) -> list[float]:
        """Durations between consecutive pairs of marks (mark 0-1, 2-3, ...), in ms."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks[::2], self.marks[1::2])]
        return [(b - a) * 1e3 for a, b in zip(self.marks[::2], self.marks[1::2])]


def attention_share(model: nn.Module, images: Tensor, device: str | torch.device) -> tuple[float | None, str]:
    """Fraction of a forward's time spent inside the model's attention modules, measured, and "" ; or None and why
    it could not be measured (no attention module known, or none ran): an unknown share is never a 0.

    Forward hooks put a mark before and after every attention module, and marks around the whole forward:
    CUDA events on CUDA (the GPU timeline, so no profiler session and no CUPTI is started before the timed
    passes), perf_counter on the CPU. One warm-up forward, then the mean over SHARE_CALLS forwards. `model` must
    be a backbone from `rpbench.backbones.build` (it lists its attention modules), on `device` with `images`.
    """
    modules = model.attention_modules()
    if not modules:
        note = getattr(model, "no_attention_note", None)
        return None, note() if note else "attention share not measured: the model lists no attention module"
    cuda = torch.device(device).type == "cuda"
    inside, whole = _Clock(cuda), _Clock(cuda)
    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(lambda *_: inside.mark()))
        handles.append(module.register_forward_hook(lambda *_: inside.mark()))
    try:
        with torch.no_grad():
            model(images)
            inside.marks.clear()
            for _ in range(SHARE_CALLS):
                whole.mark()
                model(images)
                whole.mark()
        total, attention = sum(whole.spans_ms()), sum(inside.spans_ms())
    finally:
        for handle in handles:
            handle.remove()
    if total <= 0:
        raise RuntimeError("no forward time was measured; cannot compute the attention share")
    if not inside.marks:
        return None, (f"attention share not measured: none of its {len(modules)} attention module(s) ran in a "
                      f"forward")
    return min(max(attention / total, 0.0), 1.0), ""
