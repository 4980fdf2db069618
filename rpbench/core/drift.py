"""The machine's own drift, measured: a fixed reference kernel (`rpbench.machine.reference`: a matmul and a copy,
the same work in every run on a device) timed at the start of every round of a sweep and between chunks of a long
round. Its spread over the run is how much the machine itself moves between passes; a case whose passes move more
than that is `unstable` (see `unstable`), one that moves as much is not: its interval already holds the drift
(`core.intervals`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .intervals import f_quantile
from .passes import Round, round_spread_pct

# Fewer undisturbed reference timings than this leave the drift unknown.
MIN_TIMINGS = 3
# The unstable rule: an F test of the case's pass variance against the machine's, at this level...
UNSTABLE_LEVEL = 0.99
# ...and only for passes further apart than this (a few per cent is no reason to distrust a row on a quiet machine,
# where the reference kernel hardly moves: its interval already says how far the passes are apart).
UNSTABLE_FLOOR_PCT = 10.0
# Without a reference kernel (runs from before it existed): passes further apart than this are unstable.
LEGACY_UNSTABLE_PCT = 25.0


@dataclass(frozen=True)
class ReferenceTiming:
    """One timing of the reference kernel: the median of its samples, ms, and when it was taken."""

    median_ms: float
    n_samples: int
    sweep_round: int
    started_at: str | None = None
    disturbed: bool = False  # other processes disturbed the window (left out of the drift, like a disturbed pass)
    workload: str = ""  # what ran: device, sizes, threads


@dataclass(frozen=True)
class Drift:
    """The spread of the reference kernel over a run: `sd_pct` = 100 × the standard deviation of the log of its
    undisturbed medians (≈ the ± per cent one timing moves), from `timings` of them."""

    sd_pct: float
    timings: int
    median_ms: float
    low_ms: float
    high_ms: float
    workload: str = ""

    @staticmethod
    def of(timings: Sequence[ReferenceTiming]) -> Drift | None:
        """The drift of the undisturbed timings (all of them when fewer than MIN_TIMINGS were undisturbed: on a
        busy machine the drift then holds the disturbance, as it should); None below MIN_TIMINGS in all."""
        measured = [t for t in timings if t.median_ms > 0]
        usable = [t for t in measured if not t.disturbed]
        usable = usable if len(usable) >= MIN_TIMINGS else measured
        if len(usable) < MIN_TIMINGS:
            return None
        medians = np.array([t.median_ms for t in usable])
        return Drift(sd_pct=100.0 * float(np.std(np.log(medians), ddof=1)), timings=len(usable),
                     median_ms=float(np.median(medians)), low_ms=float(medians.min()), high_ms=float(medians.max()),
                     workload=usable[-1].workload)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(saved: Any) -> Drift | None:
        """A Drift run.json kept, or None when it is missing or damaged."""
        try:
            drift = Drift(**{key: saved[key] for key in ("sd_pct", "timings", "median_ms", "low_ms", "high_ms")},
                          workload=str(saved.get("workload") or ""))
        except (TypeError, KeyError, AttributeError):
            return None
        numbers = (drift.sd_pct, drift.median_ms, drift.low_ms, drift.high_ms)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in numbers):
            return None
        return drift if isinstance(drift.timings, int) and drift.timings >= 2 else None

    def sentence(self) -> str:
        return (f"this machine drifted ±{self.sd_pct:.1f} % between rounds (the reference kernel, {self.workload}, "
                f"timed {self.timings} times: {self.low_ms:.3g}–{self.high_ms:.3g} ms)")


def drift_sentence(drift: Drift | Mapping[str, Any] | None) -> str:
    """The line at the end of a sweep and the top of a report; says so when the run has no reference kernel."""
    found = drift if isinstance(drift, Drift) or drift is None else Drift.from_json(drift)
    if found is None:
        return (f"machine drift unknown: this run has no reference kernel timings (measured before rpbench timed one, "
                f"or too few); `unstable` here means passes more than {LEGACY_UNSTABLE_PCT:.0f} % apart")
    return found.sentence()


def pass_sd_pct(passes: Sequence[Round]) -> float | None:
    """100 × the standard deviation of the log pass medians; None below two passes."""
    medians = [r.median for r in passes if r.samples]
    if len(medians) < 2:
        return None
    return 100.0 * float(np.std(np.log(medians), ddof=1))


def unstable(passes: Sequence[Round], drift: Drift | None) -> bool:
    """Whether a case's pooled passes disagree by more than the machine explains.

    With the machine's drift measured: unstable when its passes are more than UNSTABLE_FLOOR_PCT apart AND the
    variance of their log medians s² exceeds what the drift and the case's own sampling noise explain, by an F
    test at UNSTABLE_LEVEL: s² / (drift² + mean within-pass variance of a pass median) > F(0.99; k − 1, m − 1) for
    k passes and m reference timings (3 passes against 12 timings: s more than 2.7× the drift). Without a
    reference kernel (older runs): passes more than LEGACY_UNSTABLE_PCT apart."""
    timed = [r for r in passes if r.samples]
    spread = round_spread_pct(timed)
    if spread is None:
        return False
    if drift is None:
        return spread > LEGACY_UNSTABLE_PCT
    if spread <= UNSTABLE_FLOOR_PCT:
        return False
    variance = float(np.var(np.log([r.median for r in timed]), ddof=1))
    expected = (drift.sd_pct / 100) ** 2 + float(np.mean([r.median_variance for r in timed]))
    if expected <= 0:
        return True
    return variance / expected > f_quantile(UNSTABLE_LEVEL, len(timed) - 1, drift.timings - 1)
