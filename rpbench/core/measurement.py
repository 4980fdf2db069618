"""The result of measuring one case: every kept sample, their statistics, and what else was measured beside them.

In the spirit of `torch.utils.benchmark`'s `Measurement`: raw samples plus the case they belong to, statistics
derived from the samples on demand. A `Measurement` travels from the runner to the store, which alone turns it into
a results row (`rpbench.results.rows.row_of`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Mapping, Sequence

import numpy as np

from .case import Case, Timing
from .gpu import ClockWindow, GpuReading, GpuTelemetry  # noqa: F401  (re-exported)
from .schema import MEASURED_STATUSES

# A case whose interquartile range exceeds this share of its median is flagged `noisy`.
NOISY_IQR_PCT = 10.0
# An eager CUDA case is `launch_bound` when enqueueing one call takes at least this share of its synchronised time.
LAUNCH_BOUND_SHARE = 0.5
# A case whose round medians lie further apart than this share of its pooled median is flagged `unstable`.
UNSTABLE_ROUNDS_PCT = 25.0
# A timed window is `disturbed` when other processes kept at least this many cores busy during it AND there were not
# enough idle cores for them and the case's own threads together (see `Load.reasons`).
DISTURBED_MIN_CORES = 0.25


@dataclass(frozen=True)
class Stats:
    """Summary of latency samples, ms. Quantiles interpolate linearly between order statistics (numpy's default)."""

    median: float
    p20: float
    p80: float
    minimum: float
    mean: float
    iqr_pct: float | None  # None when the median is 0 (a timer too coarse for the call): no spread relative to it
    n: int

    @property
    def noisy(self) -> bool:
        return self.iqr_pct is not None and self.iqr_pct > NOISY_IQR_PCT


def summarize(samples: Sequence[float]) -> Stats:
    values = np.asarray(samples, dtype=float)
    p20, q25, median, q75, p80 = np.quantile(values, [0.2, 0.25, 0.5, 0.75, 0.8])
    return Stats(
        median=float(median),
        p20=float(p20),
        p80=float(p80),
        minimum=float(values.min()),
        mean=float(values.mean()),
        iqr_pct=100.0 * float(q75 - q25) / float(median) if median > 0 else None,
        n=int(values.size),
    )


@dataclass(frozen=True)
class MemoryPeak:
    """Peak memory of one call above what was resident before it, MiB; `note` says why a figure is missing."""

    allocated_mb: float | None
    reserved_mb: float | None
    note: str = ""


@dataclass(frozen=True)
class ModelCosts:
    """Whole-model facts of a backbone case: forward MACs per image (None where FlopCounterMode cannot count a module
    of it: neighborhood's flex and natten backends) and the measured share of time in attention (None when it could
    not be measured; `note` says why)."""

    macs: int | None
    attention_share: float | None
    note: str = ""

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e9

    @property
    def gflops(self) -> float | None:
        return None if self.macs is None else 2 * self.macs / 1e9


@dataclass(frozen=True)
class Load:
    """What other processes did during one timed window (warm-up and samples), read outside every timed call.

    `others_busy_cores`: cores other processes kept busy on average (all CPU time from /proc/stat minus this
    process's own); `gpu_others`: other processes seen on the GPU at the window's start or end. None where the
    machine cannot tell (no /proc/stat, no NVML).
    """

    others_busy_cores: float | None
    cores: int
    own_threads: int
    window_s: float
    gpu_others: int | None = None

    def reasons(self) -> tuple[str, ...]:
        """Why this window is disturbed (empty when it is not)."""
        found = []
        busy = self.others_busy_cores
        if busy is not None and busy >= DISTURBED_MIN_CORES and busy + self.own_threads > self.cores:
            found.append(f"other processes kept {busy:.2f} of {self.cores} cores busy "
                         f"({self.own_threads} thread{'s' * (self.own_threads != 1)} of ours)")
        if self.gpu_others:
            found.append(f"{self.gpu_others} other process{'es' * (self.gpu_others != 1)} on the GPU")
        return tuple(found)

    @property
    def disturbed(self) -> bool:
        return bool(self.reasons())


@dataclass(frozen=True)
class Round:
    """One timed pass over a case: its samples and the load beside them. A sweep measures every case in several
    rounds, interleaved across the suite; `retry` marks a pass that repeats a disturbed one."""

    samples: tuple[float, ...]
    load: Load | None = None
    retry: bool = False
    started_at: str | None = None
    timer: str = ""  # the timer that took the samples (see measure.timing)
    note: str | None = None  # why it was timed otherwise than asked (a CUDA graph that could not be captured)
    gpu: ClockWindow | None = None  # what NVML saw of the GPU during the window (CUDA only)
    host: str | None = None  # the machine the pass ran on (passes of one case may run in different processes)
    device_uuid: str | None = None  # the GPU it ran on ('GPU-…', as nvidia-smi -L prints it); None on the CPU

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    def reasons(self) -> tuple[str, ...]:
        """Why this pass is disturbed: other processes (see Load), or GPU clocks pulled down during it."""
        slowed = self.gpu.slowdowns() if self.gpu is not None else ()
        return (*(self.load.reasons() if self.load is not None else ()),
                *((f"GPU clocks pulled down: {', '.join(slowed)}",) if slowed else ()))

    @property
    def disturbed(self) -> bool:
        return bool(self.reasons())


def pooled_rounds(rounds: Sequence[Round]) -> tuple[Round, ...]:
    """The rounds whose samples a row pools: the undisturbed ones, or all of them when every one was disturbed."""
    clean = tuple(r for r in rounds if r.samples and not r.disturbed)
    return clean or tuple(r for r in rounds if r.samples)


def round_spread_pct(rounds: Sequence[Round]) -> float | None:
    """(slowest − fastest round median) / median of the round medians, %; None with fewer than two rounds or a
    median of 0 (nothing to be relative to: unknown, not 0)."""
    medians = [r.median for r in rounds if r.samples]
    if len(medians) < 2:
        return None
    middle = float(np.median(medians))
    return 100.0 * (max(medians) - min(medians)) / middle if middle > 0 else None


@dataclass(frozen=True)
class Measurement:
    """One case measured (status ok), or the reason it could not be (another of schema.STATUSES, no samples)."""

    case: Case
    suite: str
    status: str
    notes: tuple[str, ...] = ()
    samples: tuple[float, ...] = ()
    timer: str = ""
    device_name: str | None = None
    device_uuid: str | None = None  # the GPU of the first pass ('GPU-…'); None on the CPU
    host: str | None = None  # the machine of the first pass
    threads: int | None = None
    started_at: str | None = None
    elapsed_s: float | None = None
    params: int | None = None
    flops_analytic: int | None = None
    flops_counted: int | None = None
    sdpa_backend: str | None = None
    memory: MemoryPeak | None = None
    model: ModelCosts | None = None
    gpu: GpuTelemetry | None = None
    trace: str | None = None
    timing: Timing | None = None
    # Every timed pass, pooled or not, in the order taken; `samples` holds the pooled ones' samples.
    rounds: tuple[Round, ...] = ()
    # The SDPA backend rpbench forced on the module (dense with backend=auto); later rounds force the same one.
    forced_backend: str | None = None
    # ‖y − y_ref‖ / ‖y_ref‖ against a higher-precision run of the same module and inputs (measure.accuracy).
    rel_err: float | None = None
    # compile_s, graphs, graph_breaks, recompiles of a compiled case (empty when eager).
    compiled: Mapping[str, float] = field(default_factory=dict)
    # The device could not be used after this case (a lost CUDA context): the sweep writes the row, then stops.
    context_lost: bool = False
    # host_ms and launch_ms of an eager CUDA call (empty on the CPU); see `launch_bound`.
    launch: Mapping[str, float] = field(default_factory=dict)

    @property
    def launch_bound(self) -> bool | None:
        """An eagerly timed CUDA case whose launching takes at least half its synchronised wall time: its events
        measure launch overhead more than GPU work (a CUDA graph would not). None off CUDA."""
        if not self.launch:
            return None
        return self.timer != "cuda_graph" and self.launch["launch_ms"] >= LAUNCH_BOUND_SHARE * self.launch["host_ms"]

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def timed(self) -> bool:
        """Measured in full (ok, or inaccurate but timed like any other case)."""
        return self.status in MEASURED_STATUSES

    @property
    def note(self) -> str | None:
        """The notes as one line, or None."""
        return "; ".join(n for n in self.notes if n) or None

    @property
    def pooled(self) -> tuple[Round, ...]:
        return pooled_rounds(self.rounds)

    @property
    def spread_pct(self) -> float | None:
        return round_spread_pct(self.pooled)

    @property
    def unstable(self) -> bool:
        spread = self.spread_pct
        return spread is not None and spread > UNSTABLE_ROUNDS_PCT

    @property
    def disturbance(self) -> tuple[str, ...]:
        """Why the pooled rounds were disturbed (empty when at least one clean round was pooled)."""
        pooled = self.pooled
        if not pooled or not all(r.disturbed for r in pooled):
            return ()
        return tuple(dict.fromkeys(reason for r in pooled for reason in r.reasons()))

    @property
    def busy_machine(self) -> bool:
        """Every pooled pass was disturbed, and other processes did it in at least one (the `disturbed` column)."""
        return bool(self.disturbance) and any(r.load is not None and r.load.disturbed for r in self.pooled)

    @property
    def throttled(self) -> bool:
        """Every pooled pass was disturbed, and GPU clocks were pulled down in at least one (the `throttled`
        column)."""
        return bool(self.disturbance) and any(r.gpu is not None and r.gpu.throttled for r in self.pooled)

    @property
    def gpu_windows(self) -> tuple[ClockWindow, ...]:
        return tuple(r.gpu for r in self.pooled if r.gpu is not None)

    @property
    def retries(self) -> int:
        return sum(r.retry for r in self.rounds)

    def load_peak(self, field: str) -> float | None:
        """The largest `others_busy_cores` / `gpu_others` over the pooled rounds, None when never measured."""
        values = [getattr(r.load, field) for r in self.pooled if r.load is not None]
        values = [v for v in values if v is not None]
        return max(values) if values else None

    @cached_property
    def stats(self) -> Stats | None:
        return summarize(self.samples) if self.samples else None

    def _per_second(self, amount: float | None) -> float | None:
        if self.stats is None or not amount or self.stats.median <= 0:
            return None
        return amount / (self.stats.median / 1e3)

    @property
    def throughput_img_s(self) -> float | None:
        return self._per_second(self.case.batch)

    @property
    def tokens_s(self) -> float | None:
        return self._per_second(self.case.batch * self.case.tokens)

    @property
    def tflops_s(self) -> float | None:
        """Analytic FLOPs (else counted) per second of the median call, in TFLOP/s. The formula comes first: it is
        checked against the count forward, and FlopCounterMode overcounts grouped convolutions' weight gradients."""
        rate = self._per_second(self.flops_analytic or self.flops_counted)
        return None if rate is None else rate / 1e12
