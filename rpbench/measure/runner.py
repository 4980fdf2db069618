"""One case in, one Measurement out: build the workload, then measure each quantity in its own pass.

A failing case becomes a Measurement with a status (unsupported, oom, nonfinite, error); it never stops a sweep.
"""
from __future__ import annotations

import gc
import socket
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import torch

import attentions

from ..core.case import Case, Timing
from ..core.errors import one_line
from ..core.measurement import GpuTelemetry, Measurement, Round
from ..machine import telemetry
from ..machine.gpu_watch import GpuWatch
from ..machine.interference import LoadMonitor
from ..machine import environment
from ..core.schema import ERROR_TOLERANCE
from .notes import capped, flop_note, knobs_as_run
from .accuracy import REFERENCE_DTYPES, relative_error
from .probes import peak_memory, sdpa_kernels_that_ran
from .passes import NOTE_LIMIT, compile_first, counted_flops, energy_per_call, reading, timer_for
from .timing import CUDA_GRAPH, TIMER_NAMES, launch_costs, timed_samples
from .workload import Workload, apply_fastest_sdpa, make_workload, pinned_sdpa


class NonFiniteOutput(RuntimeError):
    pass


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else environment.cpu_model()


def device_names(cases: list[Case]) -> tuple[tuple[str, str], ...]:
    """(device, model) for every device the cases run on: what a resume of their run must run on again."""
    return tuple((kind, device_name(kind)) for kind in sorted({case.device for case in cases}))


def run_case(case: Case, timing: Timing, suite: str = "") -> Measurement:
    """Measure one case; every failure is a status on the result, never an exception."""
    began = time.perf_counter()
    where: dict[str, Any] = {
        "suite": suite,
        "timer": TIMER_NAMES[case.device],
        "device_name": device_name(case.device),
        "device_uuid": telemetry.device_uuid(torch.cuda.current_device() if case.device == "cuda" else None),
        "host": socket.gethostname(),
        "threads": torch.get_num_threads(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "timing": timing,
    }
    work = None
    try:
        work = make_workload(case)
        result = _run_passes(case, timing, work, where)
    except Exception as err:  # a failing case must never stop the sweep
        built = {} if work is None else {"params": _params(work), "model": work.model}
        result = Measurement(case=case, **_failure(err), **where, **built)
    finally:
        del work
    lost = release_or_why(case.device)
    if lost is not None:  # the device is unusable: this case is an error that names why, and nothing more runs
        result = replace(result, status="error", samples=(), rounds=(), context_lost=True,
                         notes=(*([result.note] if result.note and not result.ok else []), lost))
    return replace(result, elapsed_s=time.perf_counter() - began)


class ContextLost(RuntimeError):
    """The device cannot be used any more (a lost CUDA context); nothing after it can be measured."""


def release_or_why(device: str) -> str | None:
    """`release`, or the one line saying why the device cannot go on (a lost CUDA context: after an illegal
    address every later CUDA call, the cleanup's synchronize included, raises the same error again)."""
    try:
        release(device)
    except Exception as err:
        return f"CUDA context lost: {one_line(err)[:NOTE_LIMIT]}"
    return None


def _failure(err: Exception) -> dict[str, Any]:
    """The status and note of a failed case."""
    if isinstance(err, attentions.UnsupportedConfig):
        return {"status": "unsupported", "notes": (str(err),)}
    if is_out_of_memory(err):
        return {"status": "oom", "notes": (one_line(err)[:NOTE_LIMIT],)}
    if isinstance(err, NonFiniteOutput):
        return {"status": "nonfinite", "notes": (str(err),)}
    return {"status": "error", "notes": (one_line(err)[:NOTE_LIMIT],)}


# How allocation failures read when they do not come as torch.cuda.OutOfMemoryError: the CPU allocator, cuBLAS and
# cuDNN workspaces, and a failed host allocation.
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory", "alloc_failed",
                 "not enough memory")


def is_out_of_memory(err: BaseException) -> bool:
    """True for an allocation failure on any device (an `oom` row, not an `error`)."""
    if isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(err, RuntimeError) and any(text in str(err).lower() for text in _OOM_MESSAGES)


def _params(work: Workload) -> int:
    return sum(p.numel() for p in work.module.parameters())


def _check_output(case: Case, work: Workload) -> None:
    """The output is a tensor of the shape the case promises ((B, N, C) for a layer), with no NaN or Inf."""
    work.reset()
    with torch.inference_mode():
        out = work.forward()
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{case.attention} returned {type(out).__name__}, not a tensor")
    if case.scope == "layer" and tuple(out.shape) != (case.batch, case.tokens, case.dim):
        raise ValueError(f"{case.attention} maps (B, N, C) = {(case.batch, case.tokens, case.dim)} to "
                         f"{tuple(out.shape)}; a mechanism must return (B, N, C)")
    if not torch.isfinite(out).all():
        raise NonFiniteOutput("output contains NaN or Inf")


def _run_passes(case: Case, timing: Timing, work: Workload, where: dict[str, Any]) -> Measurement:
    """Every pass in order: finiteness, backend choice, compilation, accuracy, FLOPs, kernels, timing, launch cost,
    memory, energy; each on its own. Probes, FLOPs, kernels and memory run the eager step (`probe_step`)."""
    gpu = torch.cuda.current_device() if case.device == "cuda" else None
    start = reading(gpu) if gpu is not None else None

    _check_output(case, work)
    backend_note = apply_fastest_sdpa(case, work)
    forced = getattr(work.module, "sdpa_backend", None) if backend_note else None
    compiled = compile_first(work, case.device) if case.compile != "none" else {}
    rel_err, accuracy_note = _accuracy(case, work)
    notes = [accuracy_note, knobs_as_run(case), backend_note, work.model.note if work.model else None]
    flops_counted, count_note = counted_flops(case, work)
    notes.append(count_note or flop_note(case, work.flops_analytic, flops_counted))
    with pinned_sdpa(case, work):
        kernels = sdpa_kernels_that_ran(work.probe_step, work.reset)
    first = timed_round(case, timing, work)
    samples = first.samples
    notes += [first.note, capped(timing, len(samples))]
    where = {**where, "timer": first.timer}
    with pinned_sdpa(case, work):
        launch = dict(zip(("host_ms", "launch_ms"), launch_costs(work.step, work.reset))) if gpu is not None else {}
        memory = peak_memory(work.probe_step, work.reset, case.device)
        notes.append(memory.note)
        gpu_telemetry = None
        if gpu is not None:
            energy, window_s, energy_note = energy_per_call(gpu, work, timing, first.timer)
            notes.append(energy_note)
            gpu_telemetry = GpuTelemetry(start=start, end=reading(gpu), energy_j_per_iter=energy,
                                         energy_window_s=window_s)
    return Measurement(
        case=case, status="inaccurate" if _too_far(case, rel_err) else "ok", notes=tuple(n for n in notes if n),
        samples=tuple(samples), **where, rel_err=rel_err, compiled=compiled, launch=launch,
        params=_params(work), flops_analytic=work.flops_analytic, flops_counted=flops_counted,
        sdpa_backend="+".join(kernels) if kernels else None, memory=memory, model=work.model, gpu=gpu_telemetry,
        rounds=(first,), forced_backend=forced,
    )


def timed_round(case: Case, timing: Timing, work: Workload, retry: bool = False) -> Round:
    """One timed pass (warm-up and samples) with the load of other processes read around it."""
    began = datetime.now(timezone.utc).isoformat(timespec="seconds")
    own_threads = torch.get_num_threads() if case.device == "cpu" else 1
    cuda_index = torch.cuda.current_device() if case.device == "cuda" else None
    timing, timer_note = timer_for(case, timing)
    with LoadMonitor(own_threads, cuda_index) as monitor, GpuWatch(cuda_index) as watch, pinned_sdpa(case, work):
        samples, timer, note = timed_samples(work.step, work.reset, case.device, timing)
    note = "; ".join(n for n in (timer_note, note) if n) or None
    return Round(samples=tuple(samples), load=monitor.load, retry=retry, started_at=began, timer=timer,
                 note=note, gpu=watch.window, host=socket.gethostname(), device_uuid=telemetry.device_uuid(cuda_index))


def same_timer(timing: Timing, like: Measurement) -> Timing:
    """The settings of a later pass: the timer the first pass ended up with, never a new choice."""
    chosen = {CUDA_GRAPH: "cudagraph", TIMER_NAMES["cuda"]: "eager"}.get(like.timer)
    return timing if chosen is None else replace(timing, timer=chosen)


def measure_again(case: Case, timing: Timing, like: Measurement, retry: bool = False) -> Round:
    """Another round of a case measured before (`like`): rebuilt from its seed, with the SDPA backend the first
    round chose. Raises what building or running raises; the sweep keeps the rounds it has."""
    work = make_workload(case, describe=False)
    try:  # a release that fails here leaves the error to the sweep, which keeps the passes already taken
        if like.forced_backend is not None:
            work.module.sdpa_backend = like.forced_backend
        if case.compile != "none":
            compile_first(work, case.device)  # compiles again (each workload compiles from scratch), outside the window
        return timed_round(case, same_timer(timing, like), work, retry)
    finally:
        del work
        lost = release_or_why(case.device)
        if lost is not None:
            raise ContextLost(lost)



def _accuracy(case: Case, work: Workload) -> tuple[float | None, str | None]:
    """rel_err against the higher-precision reference, and the note of an `inaccurate` case (or of a reference
    that could not run, e.g. out of memory in float64)."""
    try:
        error = relative_error(case, work)
    except Exception as err:  # the reference costs more memory than the case; its failure is a note, not a status
        release(case.device, forget_compiled=False)  # the timed pass must run what compile_first compiled
        return None, f"rel_err not measured: {one_line(err)[:NOTE_LIMIT]}"
    if _too_far(case, error):
        reference = str(REFERENCE_DTYPES[case.dtype]).removeprefix("torch.")
        return error, f"inaccurate: rel_err {error:.3g} against {reference} exceeds {ERROR_TOLERANCE[case.dtype]:g}"
    return error, None


def _too_far(case: Case, error: float | None) -> bool:
    return error is not None and error > ERROR_TOLERANCE[case.dtype]


def freeze_heap() -> None:
    """Collect, then move every object still alive (torch and what it imported on first use, the suite, the
    harness) out of the collector's reach (`gc.freeze`), so the next full collection walks only what was created
    since: 67–138 ms a pass on a 2-core VM otherwise, a third of a quick-suite pass. What a case left in a
    reference cycle is collected here, before the freeze; what is frozen is alive, freed by its reference count
    when dropped (only a cycle formed later among frozen objects would stay)."""
    gc.collect()
    gc.freeze()


def release(device: str, forget_compiled: bool = True) -> None:
    """Free what a case left: compiled code (unless `forget_compiled`: mid-case), garbage, cached device memory."""
    if forget_compiled and "torch._dynamo" in sys.modules:  # nothing compiled stays cached for the next case
        sys.modules["torch._dynamo"].reset()
    freeze_heap()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
