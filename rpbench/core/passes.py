"""Timed passes: one pass over a case (`Round`), the load of other processes beside it (`Load`), and which passes a
row pools. A sweep times every case in several passes interleaved across the suite (`rpbench.measure.rounds`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .gpu import ClockWindow

# A timed window is `disturbed` when other processes kept at least this many cores busy during it AND there were not
# enough idle cores for them and the case's own threads together (see `Load.reasons`).
DISTURBED_MIN_CORES = 0.25


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
    sweep_round: int | None = None  # the round of the sweep it was taken in (regular, then retry and extra rounds)
    reference_ms: float | None = None  # the reference kernel's median timed last before it (see core.drift)

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def median_variance(self) -> float:
        """The sampling variance of log(median) inside this pass: (π/2)·σ²/n for σ the log-scale spread that
        its IQR implies (IQR / median / 1.349, exact for a normal). 0 with fewer than 3 samples."""
        if len(self.samples) < 3:
            return 0.0
        q25, middle, q75 = np.quantile(self.samples, [0.25, 0.5, 0.75])
        if middle <= 0:
            return 0.0
        sigma = float(q75 - q25) / float(middle) / 1.349
        return math.pi / 2 * sigma**2 / len(self.samples)

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
