"""The machine's own drift, measured: a fixed reference kernel (`rpbench.machine.reference`: a matmul and a copy,
the same work in every run on a device) timed at the start of every round of a sweep and between chunks of a long
round. Its spread over the run is how much the machine itself moves between passes; a case whose passes move more
than that is `unstable` (see `unstable`), one that moves as much is not: its interval already holds the drift
(`core.intervals`).

The cases themselves measure the machine too. Every case is timed once in every round, so what slows a whole round
slows most cases of it alike: the round's effect is the median, over the cases timed in it, of how far their pass
was from their own centre (`RoundEffects`, log scale, a two-way fit: case × round). On a 2-core cloud VM, idle, the
cases of one round moved together by 20–40 % while the small reference kernel at the round's start moved 7 %
(`benchmarks/noise_calibration.py`): a workload of its own sees only part of what the cases see. `unstable` tests a
case's passes after taking each round's effect out, against what the other cases kept after theirs were taken out;
paired speedups cancel the same effects; the latency interval keeps them (a latency on this machine is that
uncertain).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
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
# A round's effect is estimated only from at least this many cases timed in it (fewer: no effect is taken out).
MIN_CASES_PER_ROUND = 4
# From this many pooled passes, the one furthest from the others is left out of the unstable test (it stays in the
# pool and the interval): a hiccup of a second hits one pass of a few cases, and the pooled median stays with the
# rest (on an idle 2-core VM, 18 of 54 rows had exactly one pass 25–55 % off and the others within ±10 %).
FORGIVE_FROM = 5


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
    rounds: RoundEffects | None = None  # how the cases moved together between rounds (None: too few cases)

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
        found = asdict(self)
        found["rounds"] = None if self.rounds is None else self.rounds.to_json()
        return found

    @staticmethod
    def from_json(saved: Any) -> Drift | None:
        """A Drift run.json kept, or None when it is missing or damaged."""
        try:
            drift = Drift(**{key: saved[key] for key in ("sd_pct", "timings", "median_ms", "low_ms", "high_ms")},
                          workload=str(saved.get("workload") or ""), rounds=RoundEffects.from_json(saved.get("rounds")))
        except (TypeError, KeyError, AttributeError):
            return None
        numbers = (drift.sd_pct, drift.median_ms, drift.low_ms, drift.high_ms)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in numbers):
            return None
        return drift if isinstance(drift.timings, int) and drift.timings >= 2 else None

    def sentence(self) -> str:
        said = (f"this machine drifted ±{self.sd_pct:.1f} % between rounds (the reference kernel, {self.workload}, "
                f"timed {self.timings} times: {self.low_ms:.3g}–{self.high_ms:.3g} ms)")
        if self.rounds is not None:
            said += (f"; the cases moved together by ±{self.rounds.sd_pct:.1f} % between rounds and ±"
                     f"{self.rounds.residual_sd_pct:.1f} % each beyond that ({self.rounds.cases} cases; paired "
                     f"speedups cancel the first, `unstable` allows for both)")
        return said

    def with_rounds(self, rounds: RoundEffects | None) -> Drift:
        return replace(self, rounds=rounds)


@dataclass(frozen=True)
class RoundEffects:
    """How the cases of a sweep moved together: `effects` maps a sweep round to its effect (log scale: +0.2 = the
    round ran about 22 % slow), `sd_pct` = 100 × their standard deviation, `residual_sd_pct` = 100 × the typical
    (median) standard deviation of a case's log pass medians once the effects are taken out, from `cases` cases
    with two passes or more."""

    effects: dict[int, float]
    sd_pct: float
    residual_sd_pct: float
    cases: int

    @staticmethod
    def of(cases: Sequence[Sequence[Round]]) -> RoundEffects | None:
        """The fit of log(pass median) = case centre + round effect over the cases' pooled passes (each a case's
        list), by alternating medians (robust to a case that moved on its own); None when no round holds
        MIN_CASES_PER_ROUND cases with two passes or more."""
        logs = [{r.sweep_round: math.log(r.median) for r in passes if r.samples and r.sweep_round is not None
                 and r.median > 0} for passes in cases]
        logs = [found for found in logs if len(found) >= 2]
        counts: dict[int, int] = {}
        for found in logs:
            for index in found:
                counts[index] = counts.get(index, 0) + 1
        rounds = sorted(index for index, count in counts.items() if count >= MIN_CASES_PER_ROUND)
        if len(rounds) < 2:
            return None
        centres = [float(np.mean(list(found.values()))) for found in logs]
        effects: dict[int, float] = {}
        for _ in range(4):
            effects = {index: float(np.median([found[index] - centre for found, centre in zip(logs, centres)
                                               if index in found])) for index in rounds}
            middle = float(np.median(list(effects.values())))
            effects = {index: value - middle for index, value in effects.items()}
            centres = [float(np.mean([value - effects.get(index, 0.0) for index, value in found.items()]))
                       for found in logs]
        # Each case's residual variance over the median of chi²(df)/df (Wilson–Hilferty), so that the median of
        # them estimates the typical variance, not the smaller median of a skewed distribution.
        residual = [float(np.var([value - effects.get(index, 0.0) for index, value in found.items()], ddof=1))
                    / (1 - 2 / (9 * (len(found) - 1))) ** 3 for found in logs]
        return RoundEffects(effects=effects, sd_pct=100.0 * float(np.std(list(effects.values()), ddof=1)),
                            residual_sd_pct=100.0 * math.sqrt(float(np.median(residual))), cases=len(logs))

    def adjusted(self, passes: Sequence[Round]) -> np.ndarray:
        """The log medians of `passes` with their round's effect taken out (none for a round without one)."""
        return np.array([math.log(r.median) - self.effects.get(r.sweep_round, 0.0) for r in passes])

    def to_json(self) -> dict[str, Any]:
        return {"effects": {str(k): v for k, v in self.effects.items()}, "sd_pct": self.sd_pct,
                "residual_sd_pct": self.residual_sd_pct, "cases": self.cases}

    @staticmethod
    def from_json(saved: Any) -> RoundEffects | None:
        if not isinstance(saved, Mapping):
            return None
        try:
            found = RoundEffects(effects={int(k): float(v) for k, v in dict(saved["effects"]).items()},
                                 sd_pct=float(saved["sd_pct"]), residual_sd_pct=float(saved["residual_sd_pct"]),
                                 cases=int(saved["cases"]))
        except (TypeError, KeyError, ValueError):
            return None
        numbers = (*found.effects.values(), found.sd_pct, found.residual_sd_pct)
        return found if all(math.isfinite(v) for v in numbers) and found.cases >= 2 else None


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

    With the cases' round effects known (`RoundEffects`): each pass's log median less its round's effect; the case
    is unstable when what is left is more than UNSTABLE_FLOOR_PCT apart AND its variance s² exceeds what the other
    cases kept and the case's own sampling noise explain, by an F test at UNSTABLE_LEVEL: s² / (residual² + mean
    within-pass variance of a pass median) > F(0.99; k − 1, n (k − 1)) for k passes and n cases (3 passes: s more
    than 2.1× the typical residual); from FORGIVE_FROM passes, the one furthest from the others is left out of
    the test first. Without them, the same test of the raw log medians against the reference
    kernel's drift, F(0.99; k − 1, m − 1) for m timings (3 passes against 12 timings: s more than 2.7× the
    drift). Without a reference kernel (older runs): passes more than LEGACY_UNSTABLE_PCT apart."""
    timed = [r for r in passes if r.samples]
    spread = round_spread_pct(timed)
    if spread is None:
        return False
    if drift is None:
        return spread > LEGACY_UNSTABLE_PCT
    effects = drift.rounds
    logs = effects.adjusted(timed) if effects is not None else np.log([r.median for r in timed])
    if len(timed) >= FORGIVE_FROM:  # one odd pass among many: the pooled median stays with the others
        odd = int(np.argmax(np.abs(logs - np.median(logs))))
        logs, timed = np.delete(logs, odd), [r for i, r in enumerate(timed) if i != odd]
    if 100.0 * math.expm1(float(logs.max() - logs.min())) <= UNSTABLE_FLOOR_PCT:
        return False
    variance = float(np.var(logs, ddof=1))
    machine, degrees = ((effects.residual_sd_pct, effects.cases * (len(timed) - 1)) if effects is not None
                        else (drift.sd_pct, drift.timings - 1))
    expected = (machine / 100) ** 2 + float(np.mean([r.median_variance for r in timed]))
    if expected <= 0:
        return True
    return variance / expected > f_quantile(UNSTABLE_LEVEL, len(timed) - 1, min(degrees, 1000))
