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
from .drift import Drift, pass_sd_pct, unstable
from .intervals import Estimate, half_width_pct, latency_estimate
from .gpu import ClockWindow, GpuReading, GpuTelemetry  # noqa: F401  (re-exported)
from .passes import DISTURBED_MIN_CORES, Load, Round, pooled_rounds, round_spread_pct  # noqa: F401  (re-exported)
from .schema import MEASURED_STATUSES

# A case whose interquartile range exceeds this share of its median is flagged `noisy`.
NOISY_IQR_PCT = 10.0
# An eager CUDA case is `launch_bound` when enqueueing one call takes at least this share of its synchronised time.
LAUNCH_BOUND_SHARE = 0.5


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
    # The machine's drift (the reference kernel's spread) when the case became final; None where not timed.
    drift: Drift | None = None

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
    def pass_sd_pct(self) -> float | None:
        return pass_sd_pct(self.pooled)

    @property
    def unstable(self) -> bool:
        """Its pooled passes disagree by more than the machine's drift explains (see `core.drift.unstable`)."""
        return unstable(self.pooled, self.drift)

    @cached_property
    def estimate(self) -> Estimate | None:
        """The latency with its uncertainty, from the pooled passes (see `core.intervals`): the first
        `timing.rounds` of them planned any extra ones."""
        passes = [r.samples for r in self.pooled] if self.rounds else [self.samples]
        first = self.timing.rounds if self.timing is not None else len(passes)
        drift = None if self.drift is None else (self.drift.sd_pct, self.drift.timings)
        return latency_estimate(passes, first, self.case.case_id, drift=drift)

    @property
    def latency_interval(self) -> tuple[float, float] | None:
        """The 95 % interval of the median latency, ms (holding the median itself), or None."""
        if self.estimate is None or self.stats is None:
            return None
        return self.estimate.interval(median=self.stats.median)

    @property
    def ci_pct(self) -> float | None:
        """The ± of the interval as a share of the median, % (the unit of `target_ci_pct`)."""
        found = self.latency_interval
        return None if found is None else half_width_pct(*found, self.stats.median)

    @property
    def target_met(self) -> bool | None:
        """Whether the interval is within ±target_ci_pct; None without settings or without a between-pass interval
        (a single pass: its interval leaves the drift out, so no target can be met with it)."""
        if self.ci_pct is None or self.timing is None or self.estimate.passes < 2:
            return None
        return bool(self.ci_pct <= self.timing.target_ci_pct)

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
