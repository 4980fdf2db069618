"""The result of measuring one case: every kept sample, their statistics, and what else was measured beside them.

In the spirit of `torch.utils.benchmark`'s `Measurement`: raw samples plus the case they belong to, statistics
derived from the samples on demand. A `Measurement` travels from the runner to the store, which alone turns it into
a results row (`rpbench.results.rows.row_of`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .case import Case, Timing

# A case whose interquartile range exceeds this share of its median is flagged `noisy`.
NOISY_IQR_PCT = 10.0


@dataclass(frozen=True)
class Stats:
    """Summary of latency samples, ms. Quantiles interpolate linearly between order statistics (numpy's default)."""

    median: float
    p20: float
    p80: float
    minimum: float
    mean: float
    iqr_pct: float
    n: int

    @property
    def noisy(self) -> bool:
        return self.iqr_pct > NOISY_IQR_PCT


def summarize(samples: Sequence[float]) -> Stats:
    values = np.asarray(samples, dtype=float)
    p20, q25, median, q75, p80 = np.quantile(values, [0.2, 0.25, 0.5, 0.75, 0.8])
    return Stats(
        median=float(median),
        p20=float(p20),
        p80=float(p80),
        minimum=float(values.min()),
        mean=float(values.mean()),
        iqr_pct=100.0 * float(q75 - q25) / float(median) if median > 0 else 0.0,
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
    """Whole-model facts of a backbone case: forward MACs per image and the measured share of time in attention."""

    macs: int
    attention_share: float

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        return 2 * self.macs / 1e9


@dataclass(frozen=True)
class GpuReading:
    """NVML readings at one moment; None where the board or driver cannot report a value."""

    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    throttled: bool = False


@dataclass(frozen=True)
class GpuTelemetry:
    """What NVML saw around a CUDA case (never inside the timed region) and the energy of one call."""

    start: GpuReading
    end: GpuReading
    energy_j_per_iter: float | None = None

    @property
    def throttled(self) -> bool:
        return self.start.throttled or self.end.throttled


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

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def note(self) -> str | None:
        """The notes as one line, or None."""
        return "; ".join(n for n in self.notes if n) or None

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
        """Counted FLOPs (else analytic) per second of the median call, in TFLOP/s."""
        rate = self._per_second(self.flops_counted or self.flops_analytic)
        return None if rate is None else rate / 1e12
