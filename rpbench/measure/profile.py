"""Profile one workload: a TensorBoard run, a gzipped Chrome/Perfetto trace, and time per phase label.

The profiler follows a schedule: `wait` and `warmup` steps run first so one-off costs (allocator growth, kernel
selection, lazy init) stay out of the `active` steps that are recorded, as in the timed passes of `rpbench run`.
Each step is wrapped in one extra label, CALL_LABEL, so phase times have a per-call total to be a share of.
Trace files come from torch alone; the TensorBoard plugin is only needed to view them. The tables that show a
`ProfileSummary` are in `rpbench.views.profile`.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function, schedule, tensorboard_trace_handler

from ..core.case import Case
from ..core.diagnostics import OpTime, PhaseTime, ProfileSummary, Schedule
from ..core.errors import ExecutionError, one_line
from ..results.store import RunWriter
from .probes import quiet_native_stderr, running_peak
from .runner import release
from .timing import synchronize
from .workload import Workload, apply_fastest_sdpa, make_workload

CALL_LABEL = "rpbench.call"
STEP_PREFIX = "ProfilerStep"  # ProfilerStep#<n>, averaged as ProfilerStep*
TOP_OPS = 12
US_PER_MS = 1e3

# Sweeps profile every case: one discarded step to warm caches, one recorded.
SWEEP_SCHEDULE = Schedule(wait=0, warmup=1, active=1)

NO_DEVICE_TIME = ("the profiler captured no CUDA kernel time (CUPTI unavailable or not permitted here): device "
                  "columns are left out, CPU times shown")
# Kineto tears CUPTI down (cuptiFinalize, from a runtime callback after the session) when TEARDOWN_CUPTI=1 at a
# session's end; otherwise CUPTI stays attached and later kernels run 10-20 % slower (pytorch/pytorch#144455).
# Teardown with CUDA graphs crashed before CUDA 12.6. Kineto reads the variable at every session's end and at every
# start, so it is set for rpbench's own CUDA profiler sessions only (`cupti_released`), never process-wide.
TEARDOWN_ENV = "TEARDOWN_CUPTI"
TEARDOWN_MIN_CUDA = (12, 6)


def _cuda_version() -> tuple[int, ...]:
    import torch

    return tuple(int(part) for part in (torch.version.cuda or "0").split(".")[:2] if part.isdigit())


@contextlib.contextmanager
def cupti_released(device: str) -> Iterator[None]:
    """Around one CUDA profiler session: TEARDOWN_CUPTI=1 (CUDA >= 12.6, the variable not set by the user or by
    torch.compile, which sets 0 for its CUDA graphs), so CUPTI is detached after it; afterwards one synchronize
    (the runtime call whose callback runs the teardown) and the variable as it was."""
    if device != "cuda" or TEARDOWN_ENV in os.environ or _cuda_version() < TEARDOWN_MIN_CUDA:
        yield
        return
    os.environ[TEARDOWN_ENV] = "1"
    try:
        yield
    finally:
        try:
            import torch

            torch.cuda.synchronize()
        finally:
            os.environ.pop(TEARDOWN_ENV, None)


def cupti_notes(device: str) -> tuple[str, ...]:
    """A note when CUPTI stays attached after CUDA profiling (kernels timed later in this process run slower)."""
    if device != "cuda" or os.environ.get(TEARDOWN_ENV) == "1":
        return ()
    return (f"CUPTI stays attached after profiling ({TEARDOWN_ENV} is not 1): kernels timed later in this process "
            "may run slower",)


def build_as_measured(case: Case, sdpa_backend: str | None = None) -> Workload:
    """The case's workload set up as the timed passes ran it, so the trace shows the kernels that were timed:
    `sdpa_backend` is the backend the measured row forced (never probed again: a new probe may choose another);
    without it, dense's auto backend is resolved to the fastest now."""
    work = make_workload(case, describe=False)
    if sdpa_backend is not None and hasattr(work.module, "sdpa_backend"):
        work.module.sdpa_backend = sdpa_backend
    else:
        apply_fastest_sdpa(case, work)
    return work


def _is_annotation(event: Any) -> bool:
    return event.device_type == DeviceType.CPU and event.is_user_annotation


def _is_phase(event: Any) -> bool:
    return _is_annotation(event) and event.key != CALL_LABEL and not event.key.startswith(STEP_PREFIX)


def _peak_memory_mb(prof: profile, device: str) -> float | None:
    """Largest running sum of the allocator's events inside one call, on the case's device: the peak above what
    was resident when the call began (as in probes.peak_memory), taken over the active calls."""
    wanted = DeviceType.CUDA if device == "cuda" else DeviceType.CPU
    events = prof.profiler.kineto_results.events()
    calls = [(e.start_ns(), e.end_ns()) for e in events if e.name() == CALL_LABEL and e.device_type() == DeviceType.CPU]
    memory = [(e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]" and e.device_type() == wanted]
    peaks = [running_peak([(at, nbytes) for at, nbytes in memory if start <= at <= end]) for start, end in calls]
    return max(peaks) / 2**20 if any(peaks) else None


def _summarize(prof: profile, device: str, active: int, trace_path: Path, tb_dir: Path | None) -> ProfileSummary:
    averages = prof.key_averages()
    per_call = US_PER_MS * active
    calls = [e for e in averages if e.device_type == DeviceType.CPU and e.key == CALL_LABEL]
    if not calls:
        raise RuntimeError(f"the profiler recorded no {CALL_LABEL!r} range; no step ran in the active window")
    on_cuda = device == "cuda"
    notes = list(cupti_notes(device))
    phases = [
        PhaseTime(label=e.key, calls=e.count / active, self_cpu_ms=e.self_cpu_time_total / per_call,
                  cpu_ms=e.cpu_time_total / per_call, device_ms=e.device_time_total / per_call if on_cuda else None)
        for e in averages if _is_phase(e)
    ]
    if on_cuda:
        # Kernels, memcpy and memset; not the GPU-side copies of record_function ranges.
        annotations = {e.key for e in averages if _is_annotation(e)}
        device_work = [e for e in averages if e.device_type != DeviceType.CPU and not e.is_user_annotation
                       and e.key not in annotations]
        ops = [OpTime(e.key, e.count / active, e.self_device_time_total / per_call) for e in device_work]
        call_device_ms: float | None = sum(e.self_device_time_total for e in device_work) / per_call
        kind = "CUDA kernel"
        if not call_device_ms:  # CUPTI blocked or absent: say so, never show 0 ms of GPU time
            notes.append(NO_DEVICE_TIME)
            call_device_ms = None
            phases = [replace(phase, device_ms=None) for phase in phases]
            ops = [OpTime(e.key, e.count / active, e.self_cpu_time_total / per_call)
                   for e in averages if e.device_type == DeviceType.CPU and e.key.startswith("aten::")]
            kind = "aten op"
    else:
        ops = [OpTime(e.key, e.count / active, e.self_cpu_time_total / per_call)
               for e in averages if e.device_type == DeviceType.CPU and e.key.startswith("aten::")]
        call_device_ms = None
        kind = "aten op"
    ops.sort(key=lambda op: op.self_ms, reverse=True)
    return ProfileSummary(
        device=device, active_steps=active, call_cpu_ms=calls[0].cpu_time_total / per_call,
        call_device_ms=call_device_ms, phases=phases, ops_kind=kind, top_ops=ops[:TOP_OPS],
        peak_memory_mb=_peak_memory_mb(prof, device), trace_path=trace_path, tensorboard_dir=tb_dir,
        notes=tuple(notes),
    )


def _gzip(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as plain, gzip.open(target, "wb") as packed:
        shutil.copyfileobj(plain, packed)


def _save_traces(prof: profile, trace_path: Path, tb_dir: Path | None, worker: str) -> None:
    """A profiler saves its trace once: into the TensorBoard dir when asked (then gzip a copy), else a temp file."""
    if tb_dir is not None:
        before = set(tb_dir.glob("*.pt.trace.json"))
        tensorboard_trace_handler(str(tb_dir), worker_name=worker)(prof)
        written = sorted(set(tb_dir.glob(f"{worker}.*.pt.trace.json")) - before)
        if not written:
            raise RuntimeError(f"the TensorBoard trace handler wrote no trace into {tb_dir}")
        _gzip(written[-1], trace_path)
        return
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".json", dir=trace_path.parent)
    os.close(handle)
    plain = Path(name)
    try:
        prof.export_chrome_trace(str(plain))
        _gzip(plain, trace_path)
    finally:
        plain.unlink(missing_ok=True)


def profile_workload(
    work: Workload,
    device: str,
    trace_path: Path,
    tensorboard_dir: Path | None = None,
    plan: Schedule = Schedule(),
    worker: str = "rpbench",
) -> ProfileSummary:
    """Run `plan.steps` calls of the workload under the profiler; write the traces; summarize the active steps.

    reset() runs before every call (outside the call's label), as in the timed passes; a synchronize after every
    call keeps each step's kernels inside its own step.
    """
    problem = plan.problem()
    if problem:
        raise ValueError(problem)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    worker = re.sub(r"[^A-Za-z0-9_-]+", "_", worker)
    summaries: list[ProfileSummary] = []

    def on_trace_ready(prof: profile) -> None:
        _save_traces(prof, trace_path, tensorboard_dir, worker)
        summaries.append(_summarize(prof, device, plan.active, trace_path, tensorboard_dir))

    with cupti_released(device), quiet_native_stderr(), profile(
        activities=activities,
        schedule=schedule(wait=plan.wait, warmup=plan.warmup, active=plan.active, repeat=1),
        on_trace_ready=on_trace_ready,
        record_shapes=True,
        profile_memory=True,
        with_stack=False,
    ) as prof:
        for _ in range(plan.steps):
            work.reset()
            with record_function(CALL_LABEL):
                work.probe_step()  # profiling stays eager, whatever the case compiles
            synchronize(device)
            prof.step()
    return summaries[0]


def trace_case(case: Case, writer: RunWriter, sdpa_backend: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Profile one measured case of a sweep into the run dir's traces (with the SDPA backend its row forced);
    returns the trace's path relative to the run dir and the profile's notes.

    Raises ExecutionError ("trace not written: ...") when anything fails: a trace is extra, so the sweep keeps
    the measured row and only notes the problem.
    """
    path = writer.trace_path(case.case_id)
    work = None
    try:
        work = build_as_measured(case, sdpa_backend)
        summary = profile_workload(work, case.device, path, plan=SWEEP_SCHEDULE, worker=case.label)
    except Exception as err:
        raise ExecutionError(f"trace not written: {one_line(err)[:200]}") from None
    finally:
        del work
        release(case.device)
    return writer.relative(path), summary.notes
