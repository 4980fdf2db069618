"""Run a suite's cases one after another, handing each Measurement to the store the moment it is taken."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from attentions.dense import SDPA_BACKENDS

from ..core.case import Case, Suite, Timing
from ..core.errors import ExecutionError
from ..core.drift import Drift
from ..core.measurement import Measurement
from ..machine import ceilings, environment, timer_check
from ..machine.reference import ReferenceClock
from ..results.resume import RunRecord, open_run
from ..results.store import RunWriter, run_drift
from . import isolated
from .profile import trace_case
from .rounds import measure_in_rounds
from .workload import forces_fastest_sdpa
from .runner import ContextLost


@dataclass
class SweepOutcome:
    run_dir: Path
    measurements: list[Measurement] = field(default_factory=list)
    skipped: int = 0
    traced: int = 0
    drift: Drift | None = None  # the machine's drift over the whole run (earlier sessions' timings included)


@contextmanager
def fixed_threads(suite: Suite) -> Iterator[None]:
    """Fix the CPU thread count for the whole run so every row measures with the same one; the process's own count
    is restored afterwards (a sweep run from Python leaves no trace)."""
    before = torch.get_num_threads()
    if suite.timing.threads:
        torch.set_num_threads(suite.timing.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ceilings_for(cases: list[Case]) -> dict[str, Any] | None:
    """Ceilings `rpbench doctor` cached for the exact device this sweep runs on (for a CPU: with the threads the
    sweep uses); reports show % of them."""
    devices = {case.device for case in cases}
    return ceilings.cached(ceilings.device_key(devices.pop())) if len(devices) == 1 else None


def cooldown_seconds(suite: Suite, case: Case) -> float:
    if suite.timing.cooldown_s is not None:
        return suite.timing.cooldown_s
    return 1.0 if case.device == "cuda" else 0.0


@contextmanager
def passes(isolate_timeout_s: float | None, workers: int, gpus: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """How passes run, as arguments of `measure_in_rounds`: in this process (no arguments), or in persistent
    worker processes (`isolated.Slots`, ended when the block ends), each pass killed after the timeout: one
    worker, `workers` of them (the CPU threads split between them), or one per GPU of `gpus` (pinned by
    CUDA_VISIBLE_DEVICES)."""
    if isolate_timeout_s is None:
        yield {}
        return
    envs = isolated.slot_envs(workers, gpus)
    with isolated.Slots(envs, isolate_timeout_s, max(1, torch.get_num_threads() // len(envs))) as slots:
        yield {"first_pass": slots.first, "later_pass": slots.later, "workers": len(envs), "cancel": slots.kill}


def reference_clock(cases: list[Case], writer: RunWriter, isolated: bool) -> ReferenceClock | None:
    """The reference kernel on the device most of the cases run on (see `machine.reference`), its timings written
    to the run dir as they are taken; none when CUDA passes run in worker processes (a CUDA context of the sweep's
    own would count as another process on their GPU: the drift is then unknown)."""
    devices = [case.device for case in cases]
    device = max(set(devices), key=devices.count) if devices else None
    if device is None or (isolated and device == "cuda"):
        return None
    return ReferenceClock(device, writer.reference.append, earlier=writer.reference.timings())


def trace_measured(cases: list[Case], writer: RunWriter, on_trace: Callable[[Case], None] | None = None) -> int:
    """Profile every timed case of `cases` that has no trace yet, after all timing is done (a profiler session
    must not slow what is timed after it), each with the SDPA backend its row forced; link each trace to its row.
    A failed trace becomes a note on the row, which stays as measured. Returns how many were traced."""
    by_id = {case.case_id: case for case in cases}
    traced = 0
    for row in writer.untraced().itertuples():
        case = by_id.get(row.case_id)
        if case is None:
            continue
        if on_trace is not None:
            on_trace(case)
        backend = row.sdpa_backend if isinstance(row.sdpa_backend, str) and row.sdpa_backend in SDPA_BACKENDS else None
        try:
            path, notes = trace_case(case, writer, backend if forces_fastest_sdpa(case) else None)
        except ExecutionError as err:
            writer.link_trace(case.case_id, note=str(err))
            continue
        writer.link_trace(case.case_id, trace=path, note="; ".join(f"trace: {note}" for note in notes) or None)
        traced += 1
    return traced


def run_sweep(
    suite: Suite,
    cases: list[Case],
    run_dir: Path,
    record: RunRecord,
    resume: bool = False,
    on_start: Callable[[Case, int, int], None] | None = None,
    on_measured: Callable[[Measurement], None] | None = None,
    profile: bool = False,
    on_trace: Callable[[Case], None] | None = None,
    isolate_timeout_s: float | None = None,
    workers: int = 1,
    gpus: list[str] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> SweepOutcome:
    """Measure every case not already final in run_dir, in rounds (`rpbench.measure.rounds`); each case is flushed
    to disk the moment it is final. The dir is locked against other writers throughout, and a resume must be the
    same sweep (see `rpbench.results.resume`). `on_start(case, pass, passes planned)` precedes every pass. With
    `profile`, every timed case is traced once all timing is done (`on_trace(case)` precedes each trace), so no
    profiler session runs before a timed pass. With `isolate_timeout_s`, every pass runs in a worker process
    (`rpbench.measure.isolated`: persistent, replaced after a case that needs a fresh one) and is killed after
    that many seconds; `workers` of them at a time (the CPU threads split between them), or one per GPU of `gpus`
    (CUDA_VISIBLE_DEVICES values, see `isolated.gpu_slots`). This process stays the only writer of the run dir.
    `on_ready()` runs once the run dir is open, before anything is measured (a refused dir raises before it)."""
    with open_run(run_dir, record, resume) as writer, fixed_threads(suite):
        if on_ready is not None:
            on_ready()
        return _measure_all(suite, cases, writer, record.command, on_start, on_measured, profile, on_trace,
                            isolate_timeout_s, workers, gpus)


def _measure_all(suite: Suite, cases: list[Case], writer: RunWriter, command: str,
                 on_start: Callable[[Case, int, int], None] | None,
                 on_measured: Callable[[Measurement], None] | None, profile: bool,
                 on_trace: Callable[[Case], None] | None = None,
                 isolate_timeout_s: float | None = None, workers: int = 1,
                 gpus: list[str] | None = None) -> SweepOutcome:
    done = writer.finished_case_ids()
    env = environment.collect(command=command)
    env["suite"] = {"name": suite.name, "path": str(suite.path), "cases": len(cases)}
    env["ceilings"] = ceilings_for(cases)
    env["timer_check"] = timer_check.for_run({case.device for case in cases})  # rpbench vs independent timers
    writer.record_environment(env)
    writer.record_suite(suite.text)

    outcome = SweepOutcome(run_dir=writer.run_dir)
    todo = [case for case in cases if case.case_id not in done]
    outcome.skipped = len(cases) - len(todo)

    def final(measured: Measurement) -> None:
        writer.append(measured)
        outcome.measurements.append(measured)
        if on_measured:
            on_measured(measured)

    clock = reference_clock(todo, writer, isolate_timeout_s is not None)
    try:
        with passes(isolate_timeout_s, workers, gpus) as how:
            measure_in_rounds(todo, suite.timing, suite.name, final, on_start,
                              pause=lambda case: time.sleep(cooldown_seconds(suite, case)),
                              on_pass=lambda case, index, taken: writer.journal_pass(case.case_id, index, taken),
                              earlier=writer.earlier_passes(), clock=clock, **how)
    except ContextLost as err:
        raise ExecutionError(f"{err}; the sweep stopped after writing that case as an error. Every row and pass "
                             f"taken so far is kept: continue in a new process with `rpbench sweep --resume "
                             f"{writer.run_dir}`") from None
    finally:
        if clock is not None:
            clock.close()
            writer.reference.record_drift(clock.drift())
    outcome.drift = clock.drift() if clock is not None else run_drift(writer.run_dir)
    writer.forget_passes()
    if profile:
        outcome.traced = trace_measured(cases, writer, on_trace)
    return outcome
