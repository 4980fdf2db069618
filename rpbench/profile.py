"""Profile one workload: a TensorBoard run, a gzipped Chrome/Perfetto trace, and time per phase label.

The profiler follows a schedule: `wait` and `warmup` steps run first so one-off costs (allocator growth, kernel
selection, lazy init) stay out of the `active` steps that are recorded, as in the timed passes of `rpbench run`.
Each step is wrapped in one extra label, CALL_LABEL, so phase times have a per-call total to be a share of.
Trace files come from torch alone; the TensorBoard plugin is only needed to view them.
"""
from __future__ import annotations

import gzip
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function, schedule, tensorboard_trace_handler

from .cases import Case
from .measure import quiet_native_stderr, running_peak, synchronize
from .runner import Workload, apply_fastest_sdpa, make_workload, one_line, release

CALL_LABEL = "rpbench.call"
STEP_PREFIX = "ProfilerStep"  # ProfilerStep#<n>, averaged as ProfilerStep*
TRACES_DIR = "traces"
TOP_OPS = 12
US_PER_MS = 1e3


@dataclass(frozen=True)
class Schedule:
    """Steps skipped (wait), profiled but discarded (warmup), and recorded (active)."""

    wait: int = 1
    warmup: int = 2
    active: int = 3

    @property
    def steps(self) -> int:
        return self.wait + self.warmup + self.active

    def problem(self) -> str | None:
        """One line when the schedule cannot record anything, else None."""
        if self.wait < 0 or self.warmup < 0:
            return "--wait and --warmup must be >= 0"
        if self.active < 1:
            return "--active must be >= 1"
        return None


# Sweeps profile every case: one discarded step to warm caches, one recorded.
SWEEP_SCHEDULE = Schedule(wait=0, warmup=1, active=1)


@dataclass(frozen=True)
class PhaseTime:
    """One record_function label, per call (mean over the active steps)."""

    label: str
    calls: float
    self_cpu_ms: float
    cpu_ms: float
    device_ms: float | None


@dataclass(frozen=True)
class OpTime:
    """A CUDA kernel (on GPU) or an aten op (on CPU), per call; `self_ms` is device time resp. self CPU time."""

    name: str
    calls: float
    self_ms: float


@dataclass(frozen=True)
class ProfileSummary:
    device: str
    active_steps: int
    call_cpu_ms: float
    call_device_ms: float | None
    phases: list[PhaseTime]
    ops_kind: str
    top_ops: list[OpTime]
    peak_memory_mb: float | None
    trace_path: Path
    tensorboard_dir: Path | None

    @property
    def labelled_cpu_ms(self) -> float:
        return sum(phase.cpu_ms for phase in self.phases)

    @property
    def labelled_device_ms(self) -> float | None:
        if self.call_device_ms is None:
            return None
        return sum(phase.device_ms or 0.0 for phase in self.phases)


def build_as_measured(case: Case) -> Workload:
    """The case's workload set up as the timed passes run it (dense's auto backend resolved to the fastest),
    so the trace shows the kernels that were timed."""
    work = make_workload(case)
    apply_fastest_sdpa(case, work)
    return work


def _is_annotation(event: Any) -> bool:
    return event.device_type == DeviceType.CPU and event.is_user_annotation


def _is_phase(event: Any) -> bool:
    return _is_annotation(event) and event.key != CALL_LABEL and not event.key.startswith(STEP_PREFIX)


def _peak_memory_mb(prof: profile, device: str) -> float | None:
    """Largest running sum of the allocator's events inside one call, on the case's device: the peak above what
    was resident when the call began (as in measure.peak_memory), taken over the active calls."""
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

    with quiet_native_stderr(), profile(
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
                work.step()
            synchronize(device)
            prof.step()
    return summaries[0]


def trace_case(case: Case, run_dir: Path) -> tuple[str | None, str | None]:
    """Profile one case of a sweep into traces/<case_id>.json.gz: (path relative to run_dir, None) or (None, why)."""
    relative = Path(TRACES_DIR) / f"{case.case_id}.json.gz"
    work = None
    try:
        work = build_as_measured(case)
        profile_workload(work, case.device, run_dir / relative, plan=SWEEP_SCHEDULE, worker=case.label)
    except Exception as err:  # a trace is extra: failing to write one must not cost the measured row
        return None, f"trace not written: {one_line(err)[:200]}"
    finally:
        del work
        release(case.device)
    return relative.as_posix(), None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "-"
    return f"{100.0 * part / whole:.1f}%"


def phase_table(summary: ProfileSummary) -> Table:
    """Time per phase label per call; the last rows are the call's total and what no label covers."""
    on_device = summary.call_device_ms is not None
    table = Table(title=f"time per phase label, ms per call (mean of {summary.active_steps} active step(s))")
    table.add_column("label")
    table.add_column("calls", justify="right")
    table.add_column("self CPU", justify="right")
    table.add_column("CPU total", justify="right")
    table.add_column("% of call CPU", justify="right")
    if on_device:
        table.add_column("device", justify="right")
        table.add_column("% of call device", justify="right")
    for phase in summary.phases:
        cells = [phase.label, f"{phase.calls:g}", _ms(phase.self_cpu_ms), _ms(phase.cpu_ms),
                 _pct(phase.cpu_ms, summary.call_cpu_ms)]
        if on_device:
            cells += [_ms(phase.device_ms), _pct(phase.device_ms, summary.call_device_ms)]
        table.add_row(*cells)
    outside_cpu = max(summary.call_cpu_ms - summary.labelled_cpu_ms, 0.0)
    outside = ["outside labels", "", "", _ms(outside_cpu), _pct(outside_cpu, summary.call_cpu_ms)]
    total = ["call total", "1", "", _ms(summary.call_cpu_ms), "100.0%"]
    if on_device:
        outside_device = max(summary.call_device_ms - summary.labelled_device_ms, 0.0)
        outside += [_ms(outside_device), _pct(outside_device, summary.call_device_ms)]
        total += [_ms(summary.call_device_ms), "100.0%"]
    table.add_section()
    table.add_row(*outside, style="dim")
    table.add_row(*total, style="bold")
    return table


def ops_table(summary: ProfileSummary) -> Table:
    whole = summary.call_device_ms if summary.call_device_ms is not None else summary.call_cpu_ms
    time_kind = "device" if summary.call_device_ms is not None else "self CPU"
    table = Table(title=f"top {summary.ops_kind}s by {time_kind} time, per call")
    table.add_column(summary.ops_kind, overflow="fold")
    table.add_column("calls", justify="right")
    table.add_column(f"{time_kind} ms", justify="right")
    table.add_column("% of call", justify="right")
    for op in summary.top_ops:
        table.add_row(op.name, f"{op.calls:g}", _ms(op.self_ms), _pct(op.self_ms, whole))
    return table


def memory_line(summary: ProfileSummary) -> str:
    where = "GPU" if summary.device == "cuda" else "CPU"
    if summary.peak_memory_mb is None:
        return f"peak {where} memory: the profiler recorded no allocations"
    return (f"peak {where} memory of one call: {summary.peak_memory_mb:.2f} MiB allocated above what was resident "
            "when it began (largest over the active calls)")


def how_to_open(summary: ProfileSummary) -> list[str]:
    lines = [f"Perfetto: open https://ui.perfetto.dev and load {summary.trace_path}"]
    if summary.tensorboard_dir is not None:
        lines.append(f"TensorBoard: tensorboard --logdir {summary.tensorboard_dir}  "
                     "(needs the optional extra: pip install 'rpbench[tensorboard]')")
    return lines
