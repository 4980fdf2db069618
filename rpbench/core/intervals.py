"""How sure a latency is: a 95 % interval that includes the drift between timed passes, numpy only and seeded.

Why not a plain bootstrap. A case is timed in a few passes interleaved across the suite; samples inside one pass
share its machine state (clocks, cache, neighbours), and on a shared or virtual machine that state moves by tens of
per cent from one pass to the next. Resampling the samples with the passes held fixed ignores that movement, and
resampling the passes themselves cannot help with three of them: a bootstrap over 3 values can only ever pick
among 3 values, so its 95 % interval under-covers badly (Kalibera & Jones, "Rigorous benchmarking in reasonable
time", ISMM 2013, make the same point and use the levels' variances instead).

What rpbench does (`PASS_T`, a random-effects estimate). Each pass is summarised by the log of its median; the
pass medians are the units, so the variance between them holds both levels at once (the drift between passes and
the sampling noise of each pass median), as in a balanced nested design. The latency's interval is the Student t
interval of their mean, exp(mean ± t(0.975, k0 − 1) · s0 / √k), where k is the number of pooled passes, and s0
the standard deviation of the first k0 of them (k0: the sweep's regular `rounds`, see below). t with k0 − 1
degrees of freedom is exact for normal pass effects however few passes there are (wide with 3: t = 4.30), and
heavy-tailed pass effects make it conservative, not optimistic.

Why s0 and not the s of all passes: adaptive rounds (`measure.rounds`) give a case more passes when its interval
is wider than `target_ci_pct`. Deciding from the same s that then makes the interval stops exactly when s came out
small by chance: simulated with normal pass effects, sequential stopping covered 84–86 % instead of 95 % once the
drift exceeded the target. Stein's two-stage procedure (Stein 1945, the textbook fixed-width interval) plans the
passes from the first k0 alone and keeps s0 and t(k0 − 1) for the interval, whatever k it ended with: exact again
(92–94 % against a noisy reference median in the same simulation, `benchmarks/noise_calibration.py` checks it on
real runs). A row that was not extended has k = k0: the plain t interval.

A row with a single pooled pass (`rounds = 1`, or the others disturbed by other processes and left out) has no
between-pass variance of its own. Where the run measured the machine's drift (`core.drift`: the standard deviation
σ of the reference kernel's log medians over m timings), that stands in for it (`PASS_DRIFT`): the pass's bootstrap
medians times exp(σ · T), T Student t(m − 1) (the single pass is one draw of the pass effects whose spread the
reference kernel measured). Without a drift the interval is the bootstrap alone (`WITHIN_PASS`, the pass held
fixed), which leaves the machine's drift out, and says so. On a shared machine the first case is common: passes
disturbed by other processes are left out, and a bootstrap of the one clean pass covered the reference median in
about half the rows of `benchmarks/noise_calibration.py`.

Draws. Speedups without pairing, fitted exponents and crossovers need the latency's distribution, not only its
interval: `Estimate.draws` gives RESAMPLES values exp(mean + s0/√k · T) with T Student t(k0 − 1) variates, whose
percentiles are the t interval (the flat-prior posterior of the random-effects mean), or the bootstrap medians of a
single pass. Each case draws from its own generator, seeded from SEED and its case_id.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 19  # GitHub issue 19: any fixed number does; changing it changes the last digit of some intervals
MIN_SAMPLES = 3  # fewer samples have no spread worth resampling

PASS_T = "pass-t"  # random-effects t interval over the pass medians (both levels)
PASS_DRIFT = "pass-drift"  # one pass: bootstrap of its samples widened by the machine's measured drift
WITHIN_PASS = "within-pass"  # one pass, no drift measured: bootstrap of its samples, the machine's drift left out


# ---------------------------------------------------------------- distributions (numpy only, no scipy)


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with an integer df, exact via the finite series of Abramowitz & Stegun 26.7.3–4."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    theta = math.atan2(abs(t), math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * j) / (2 * j + 1)
        inside = (2 / math.pi) * (theta + math.sin(theta) * math.cos(theta) * total)  # total = 0 for df = 1
    else:
        total, term = 0.0, 1.0
        for j in range(1, df // 2 + 1):
            total += term
            term *= cos2 * (2 * j - 1) / (2 * j)
        inside = math.sin(theta) * total
    return 0.5 + math.copysign(inside / 2, t)


def _bisect(cdf, p: float) -> float:
    """The x >= 0 where the monotone `cdf` reaches p (cdf(0) <= p), to machine precision."""
    high = 1.0
    while cdf(high) < p:
        high *= 2
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2
        if cdf(mid) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return (low + high) / 2


def student_t_quantile(p: float, df: int) -> float:
    """Inverse of student_t_cdf by bisection (the CDF is monotone, so this converges to machine precision)."""
    if not 0 < p < 1:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1 - p, df)
    return _bisect(lambda x: student_t_cdf(x, df), p)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta (modified Lentz, Numerical Recipes 6.4)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def beta_cdf(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1 - x) / b


def f_quantile(p: float, d1: int, d2: int) -> float:
    """The p quantile of Fisher's F(d1, d2): P(F <= f) = I_{d1 f / (d1 f + d2)}(d1 / 2, d2 / 2)."""
    if not 0 < p < 1:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    return _bisect(lambda f: beta_cdf(d1 * f / (d1 * f + d2), d1 / 2, d2 / 2), p)


# ---------------------------------------------------------------- the bootstrap within passes


def case_rng(case_id: str, seed: int = SEED) -> np.random.Generator:
    """The generator of one case's draws: two reports of a run print the same digits, and a case's draws do not
    change when other cases are added or filtered out."""
    return np.random.default_rng([seed, zlib.crc32(str(case_id).encode("utf-8"))])


def resampled_medians(values: np.ndarray, passes: np.ndarray, resamples: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Medians of `resamples` resamples stratified by pass (each draws as many samples from every pass as it kept),
    computed on ranks: the samples are sorted once, each resample draws (small-integer) ranks within every pass,
    and one partition per resample finds the middle rank(s). The same number as np.median of the drawn values
    (ranks order like the values they stand for), at a fraction of the cost."""
    order = np.argsort(values, kind="stable")
    ordered, passes = values[order], passes[order]
    count = len(ordered)
    dtype = np.int16 if count < 2**15 else np.int64
    ranks = np.empty((resamples, count), dtype=dtype)
    taken = np.unique(passes)
    start = 0
    for one in taken:
        mine = np.flatnonzero(passes == one).astype(dtype)  # ranks, in the pooled order, of this pass's samples
        drawn = rng.integers(0, len(mine), size=(resamples, len(mine)), dtype=dtype)
        ranks[:, start:start + len(mine)] = drawn if len(taken) == 1 else mine.take(drawn)
        start += len(mine)
    middle = (count - 1) // 2
    ranks.partition(middle, axis=1)  # one kth: several kth at once cost five times as much
    lower = ordered[ranks[:, middle]]
    if count % 2:
        return lower
    return (lower + ordered[ranks[:, middle + 1:].min(axis=1)]) / 2


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the finite draws; (nan, nan) when none."""
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


# ---------------------------------------------------------------- one case's latency


@dataclass(frozen=True)
class Estimate:
    """A case's latency and how sure it is (see the module docstring). `method` is PASS_T (k >= 2 pooled passes:
    `center` and `se` on the log scale, `df` = k0 − 1), PASS_DRIFT or WITHIN_PASS (one pass: `within` holds its
    bootstrap medians, times the drift's factors for PASS_DRIFT)."""

    method: str
    passes: int
    center: float = float("nan")
    se: float = float("nan")
    df: int = 0
    within: np.ndarray | None = None

    def interval(self, confidence: float = CONFIDENCE, median: float | None = None) -> tuple[float, float]:
        """The interval in ms, widened (never narrowed) to hold the row's pooled `median` where given: the median
        of k passes lies within them, and a table must never print a value outside its own interval."""
        if self.method != PASS_T:
            low, high = percentile_interval(self.within, confidence)
        else:
            half = student_t_quantile(0.5 + confidence / 2, self.df) * self.se
            low, high = math.exp(self.center - half), math.exp(self.center + half)
        if median is not None and math.isfinite(low):
            low, high = min(low, median), max(high, median)
        return low, high

    def draws(self, resamples: int, rng: np.random.Generator) -> np.ndarray:
        """RESAMPLES values of the latency, ms, distributed as the interval says."""
        if self.method != PASS_T:
            return self.within
        logs = self.center + self.se * rng.standard_t(self.df, size=resamples)
        return np.exp(np.clip(logs, -700.0, 700.0))  # t with 1 df is Cauchy: keep its far tail finite


def half_width_pct(low: float, high: float, median: float) -> float:
    """(high − low) / 2 as a share of the median, %: the ± of an interval, the unit of `target_ci_pct`."""
    return 100.0 * (high - low) / 2 / median if median > 0 else float("nan")


def latency_estimate(passes: Sequence[Sequence[float]], first_stage: int, case_id: str,
                     resamples: int = RESAMPLES, drift: tuple[float, int] | None = None,
                     seed: int = SEED) -> Estimate | None:
    """The Estimate of a case from the samples of its pooled passes, in the order taken; `first_stage` = k0, the
    passes its extension was planned from (the sweep's rounds; all of them when that is unknown or < 2); `drift` =
    (σ as a %, m timings) of the machine, for a single pass. None without samples, or a single pass with fewer
    than MIN_SAMPLES. `seed`: that of the case's generator (see `case_rng`; draws that must be independent of
    another run's of the same case take another)."""
    kept = [np.asarray(p, dtype=float) for p in passes if len(p)]
    if not kept:
        return None
    if len(kept) == 1:
        if len(kept[0]) < MIN_SAMPLES:
            return None
        rng = case_rng(case_id, seed)
        medians = resampled_medians(kept[0], np.zeros(len(kept[0]), dtype=np.int64), resamples, rng)
        if drift is None or not drift[1] >= 2 or not math.isfinite(drift[0]):
            return Estimate(WITHIN_PASS, 1, within=medians)
        factors = np.clip(drift[0] / 100 * rng.standard_t(int(drift[1]) - 1, size=resamples), -700.0, 700.0)
        return Estimate(PASS_DRIFT, 1, within=medians * np.exp(factors))
    logs = np.log([float(np.median(p)) for p in kept])
    k0 = first_stage if 2 <= first_stage <= len(logs) else len(logs)
    spread = float(np.std(logs[:k0], ddof=1))
    return Estimate(PASS_T, len(logs), center=float(logs.mean()), se=spread / math.sqrt(len(logs)), df=k0 - 1)


def planned_passes(first: Sequence[float], target_pct: float, most: int) -> int:
    """Stein's second stage: how many passes bring the half-width of the interval to `target_pct` of the latency,
    from the medians of the first k0 passes (at least k0, at most `most`)."""
    k0 = len(first)
    if k0 < 2:
        return k0
    logs = np.log(np.asarray(first, dtype=float))
    spread = float(np.std(logs, ddof=1))
    goal = math.asinh(target_pct / 100)  # half_width_pct of exp(c ± goal) is exactly target_pct
    if spread <= 0:
        return k0
    needed = math.ceil((student_t_quantile(0.5 + CONFIDENCE / 2, k0 - 1) * spread / goal) ** 2)
    return int(min(max(needed, k0), max(most, k0)))


def paired_ratio(logs: Sequence[float], first: int | None = None,
                 confidence: float = CONFIDENCE) -> tuple[float, float, float] | None:
    """(point, low, high) of exp(mean) of n per-round log ratios with its t interval; the spread (and n − 1 df)
    from the `first` of them when given (Stein, as for one case), else from all. None below 2."""
    values = np.asarray(logs, dtype=float)
    k0 = first if first is not None and 2 <= first <= len(values) else len(values)
    if k0 < 2:
        return None
    center = float(values.mean())
    se = float(np.std(values[:k0], ddof=1)) / math.sqrt(len(values))
    half = student_t_quantile(0.5 + confidence / 2, k0 - 1) * se
    return math.exp(center), math.exp(center - half), math.exp(center + half)
