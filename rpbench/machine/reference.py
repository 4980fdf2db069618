"""The reference kernel: the same small, deterministic work on a device in every run, timed at the start of every
round of a sweep, between chunks of a long round, and by `rpbench doctor`. Its spread over a run is the machine's
own drift between passes (`core.drift`): what the `unstable` flag is measured against, and the line at the end of
a sweep and the top of a report.

The work is a square matmul and a copy (compute and memory, as attention needs both), on seeded inputs made on the
device: 256² float32 and 4 MiB on a CPU (about 0.3 ms a call with 2 threads), 4096² float16 and 256 MiB on a GPU
(about 0.3 ms on an H100; built for every timing and dropped after it, so its memory is the cases' again). Each timing warms up for WARMUP_MS and takes samples for SAMPLE_MS with the sweep's own timer
(perf_counter with the garbage collector off, or CUDA events), the load of other processes read around it as
around a pass: a disturbed timing is kept in reference.csv but left out of the drift.
"""
from __future__ import annotations

import math
import statistics
import time
from datetime import datetime, timezone
from typing import Any, Callable

from ..core.case import Timing
from ..core.diagnostics import Check
from ..core.drift import Drift, ReferenceTiming, RoundEffects
from ..core.intervals import student_t_quantile
from ..measure.timing import time_step
from .interference import LoadMonitor

WARMUP_MS = 5.0
SAMPLE_MS = 15.0
# device -> (matmul side, copy bytes)
SIZES = {"cpu": (256, 4 * 2**20), "cuda": (4096, 256 * 2**20)}
# Between chunks of a long round: a round is cut into chunks of about this many seconds, each preceded by a timing.
CHUNK_S = 5.0


class ReferenceKernel:
    """The reference work on `device` ("cpu" or "cuda"), built once (seeded) and timed as often as asked."""

    def __init__(self, device: str):
        import torch

        self.device = device
        side, copy_bytes = SIZES["cuda" if device == "cuda" else "cpu"]
        dtype = torch.float16 if device == "cuda" else torch.float32
        generator = torch.Generator(device=device).manual_seed(0)
        self._a, self._b = (torch.randn(side, side, generator=generator, device=device, dtype=dtype)
                            for _ in range(2))
        self._out = torch.empty_like(self._a)
        self._src = torch.randn(copy_bytes // 4, generator=generator, device=device)
        self._dst = torch.empty_like(self._src)
        threads = "" if device == "cuda" else f", {torch.get_num_threads()} threads"
        self.workload = (f"{device}: matmul {side}² {str(dtype).removeprefix('torch.')} + copy "
                         f"{copy_bytes // 2**20} MiB{threads}")
        self._torch = torch

    def step(self) -> None:
        self._torch.mm(self._a, self._b, out=self._out)
        self._dst.copy_(self._src)

    def time(self, sweep_round: int = 0) -> ReferenceTiming:
        """One timing: WARMUP_MS of warm-up, SAMPLE_MS of samples, their median."""
        began = datetime.now(timezone.utc).isoformat(timespec="seconds")
        cuda = self.device == "cuda"
        timing = Timing(warmup_ms=WARMUP_MS, repeat_ms=SAMPLE_MS, min_samples=5, flush_l2=False)
        threads = 1 if cuda else self._torch.get_num_threads()
        with LoadMonitor(threads, self._torch.cuda.current_device() if cuda else None) as monitor:
            samples = time_step(self.step, lambda: None, self.device, timing)
        return ReferenceTiming(median_ms=statistics.median(samples), n_samples=len(samples), sweep_round=sweep_round,
                               started_at=began, disturbed=monitor.load.disturbed, workload=self.workload)


class ReferenceClock:
    """What a sweep keeps of the reference kernel: a timing at the start of every round and before any pass that
    starts more than CHUNK_S after the last timing (`checkpoint`); each handed to `record` (reference.csv) and
    counted, with `earlier` ones from before a resume, in `drift`. `latest_ms` is the timing the next pass gets.
    A device that cannot run the kernel (it failed once) is timed no more: the drift is then unknown."""

    def __init__(self, device: str, record: Callable[[ReferenceTiming], None],
                 earlier: list[ReferenceTiming] | None = None, chunk_s: float = CHUNK_S):
        self.device, self.record, self.chunk_s = device, record, chunk_s
        self.timings: list[ReferenceTiming] = list(earlier or [])
        self.latest_ms: float | None = None
        self._kernel: ReferenceKernel | None = None
        self._last = 0.0
        self._broken = False
        self._round = 0
        self.rounds: RoundEffects | None = None  # the cases' round effects, set by the sweep (measure.rounds)

    def round_started(self, index: int) -> None:
        self._round = index
        self._take()

    def checkpoint(self) -> None:
        if time.perf_counter() - self._last >= self.chunk_s:
            self._take()

    def _take(self) -> None:
        if self._broken:
            return
        try:
            if self._kernel is None:
                self._kernel = ReferenceKernel(self.device)
            taken = self._kernel.time(self._round)
        except Exception:  # a device that cannot run it (out of memory, a lost context): no drift, no failure
            self._broken, self._kernel = True, None
            return
        if self.device == "cuda":  # its 0.6 GiB go back to the cases (the runner empties the cache after each)
            self._kernel = None
        self.timings.append(taken)
        self.latest_ms, self._last = taken.median_ms, time.perf_counter()
        self.record(taken)

    def drift(self) -> Drift | None:
        """The reference kernel's drift, with the cases' round effects where the sweep has fitted them (`rounds`)."""
        found = Drift.of(self.timings)
        return found.with_rounds(self.rounds) if found is not None and self.rounds is not None else found

    def close(self) -> None:
        """Free the kernel's tensors."""
        self._kernel = None


# How many timings `rpbench doctor` takes (about 0.1 s each: the load is read over at least that long).
DOCTOR_TIMINGS = 10


def check_drift(device: str) -> Check:
    """The doctor's check: the reference kernel timed DOCTOR_TIMINGS times back to back, and how wide that drift
    makes a row's interval from 3 rounds (t with 2 df over 3 passes: about 2.5 × the drift). Warns, never fails:
    a drifting machine gives honest, wider intervals and extra rounds, not wrong numbers."""
    kernel = ReferenceKernel(device)
    timings = [kernel.time(index) for index in range(DOCTOR_TIMINGS)]
    drift = Drift.of(timings)
    disturbed = sum(t.disturbed for t in timings)
    values: dict[str, Any] = {"timings_ms": [t.median_ms for t in timings], "disturbed": disturbed,
                              "drift": None if drift is None else drift.to_json()}
    if drift is None:
        return Check("drift", "warn", f"reference kernel ({kernel.workload}) could not be timed enough",
                     "cannot tell how much this machine drifts", values)
    target = Timing().target_ci_pct
    wide = 100 * math.sinh(student_t_quantile(0.975, 2) / math.sqrt(3) * drift.sd_pct / 100)
    values["interval_pct_3_rounds"] = wide
    detail = (f"reference kernel ({kernel.workload}) drifted ±{drift.sd_pct:.1f} % over {drift.timings} timings "
              f"({drift.low_ms:.3g}–{drift.high_ms:.3g} ms)" + (f", {disturbed} disturbed" if disturbed else ""))
    if wide <= target:
        return Check("drift", "pass", detail, "", values)
    return Check("drift", "warn", detail,
                 f"with 3 rounds a row's 95 % interval would be about ±{wide:.0f} %: sweeps give such cases extra "
                 f"rounds toward the ±{target:g} % target ([measure] target_ci_pct); a quieter machine narrows them",
                 values)
