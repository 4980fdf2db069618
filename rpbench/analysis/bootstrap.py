"""Bootstrap intervals from the kept timed samples (samples.csv), numpy only and seeded.

Why a bootstrap: a case's headline number is the median of its pooled samples, and the speedups, exponents and
crossovers built on medians have no textbook error formula. Resampling the samples and recomputing the statistic
shows how far it moves with the measurement noise the run actually had.

Scheme (stratified by pass): a case is timed in one or more passes (`round` in samples.csv), interleaved across the
suite. Samples inside one pass share its machine state (clocks, cache, other processes) and are not independent of
each other's pass, so they are never mixed across passes: each resample draws, with replacement, as many samples
from every pass as that pass kept, pools them and takes the median, exactly as the row's median was made. The passes
themselves are held fixed (a run has 1 to 5 of them, too few to resample); a case whose passes disagree by more
than 25 % is flagged `unstable` and left out of speedups, fits and crossovers anyway. Samples without a pass (old
runs, hand-written rows) count as one pass.

Each case gets its own generator, seeded from SEED and its case_id: two reports of the same run print the same
digits, and a case's interval does not change when other cases are added or filtered out. 95 % percentile
intervals from RESAMPLES draws. A case whose samples do not reproduce its row's median (a samples.csv that is not
this row's) gets no draws: its intervals fall back to the p20–p80 pairing, and say so.
"""
from __future__ import annotations

import zlib
from typing import Hashable

import numpy as np
import pandas as pd

RESAMPLES = 1000
SEED = 19  # GitHub issue 19: any fixed number does; changing it changes the last digit of some intervals
CONFIDENCE = 0.95
MIN_SAMPLES = 3  # fewer samples have no spread worth resampling
# Share of resamples that must agree with the measured crossover status before an interval is printed.
AGREEMENT = 0.95

Draws = dict[Hashable, np.ndarray]  # frame index -> RESAMPLES bootstrap values of one case


def median_draws(frame: pd.DataFrame, samples: pd.DataFrame | None, resamples: int = RESAMPLES,
                 seed: int = SEED) -> Draws:
    """Bootstrap medians of latency (ms) per timed row of `frame` (stratified by pass, see the module docstring)."""
    if samples is None or samples.empty or "latency_ms" not in samples:
        return {}
    kept = samples[samples["latency_ms"].notna() & samples["case_id"].notna()]
    values = kept["latency_ms"].to_numpy(dtype=float)
    passes = (kept["round"].astype("Int64").fillna(-1) if "round" in kept else pd.Series(-1, index=kept.index))
    passes = passes.to_numpy(dtype=np.int64)
    positions = kept.groupby(kept["case_id"].astype(str)).indices
    draws: Draws = {}
    timed = frame[frame["ok"] & frame["latency_ms_median"].notna()]
    for index, case_id, median in zip(timed.index, timed["case_id"].astype(str), timed["latency_ms_median"]):
        found = positions.get(case_id)
        if found is None or len(found) < MIN_SAMPLES:
            continue
        mine, rounds = values[found], passes[found]
        if not np.isclose(np.median(mine), float(median), rtol=1e-6, atol=0.0):
            continue  # not this row's samples: no interval from them
        rng = np.random.default_rng([seed, zlib.crc32(case_id.encode("utf-8"))])
        draws[index] = _resampled_medians(mine, rounds, resamples, rng)
    return draws


def _resampled_medians(values: np.ndarray, passes: np.ndarray, resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Medians of `resamples` stratified resamples, computed on ranks: the samples are sorted once, each resample
    draws (small-integer) ranks within every pass, and one partition per resample finds the middle rank(s). The
    same number as np.median of the drawn values (ranks order like the values they stand for), at a fraction of
    the cost: sorting floats per resample took most of a report's time."""
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


def metric_draws(frame: pd.DataFrame, latency: Draws, metric_name: str) -> Draws:
    """The metric's bootstrap values per row: latency as drawn, throughput as results.csv computes it (batch / median
    latency, per second: `Measurement.throughput_img_s`); memory is one number per case and has none."""
    if metric_name == "latency":
        return latency
    if metric_name == "throughput":
        batch = frame["batch"]
        return {index: float(batch[index]) * 1e3 / draws for index, draws in latency.items()
                if pd.notna(batch[index]) and batch[index] > 0}
    return {}


def interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the finite draws; (nan, nan) when none."""
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return float(low), float(high)


def stacked(rows: pd.DataFrame, draws: Draws) -> np.ndarray | None:
    """(rows, resamples) array of the rows' draws, None unless every row has them."""
    if rows.empty or any(index not in draws for index in rows.index):
        return None
    return np.stack([draws[index] for index in rows.index])


def slope_draws(sizes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Least-squares slope of log(value) on log(size) for every column of `values` (rows: sizes), all at once."""
    x = np.log(np.asarray(sizes, float))
    y = np.log(values)
    dx = x - x.mean()
    return (dx[:, None] * (y - y.mean(axis=0))).sum(axis=0) / float((dx**2).sum())


def _per_size(sizes: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sizes and the elementwise median of the rows at each (as `find_crossover` takes medians)."""
    unique = np.unique(sizes)
    return unique, np.stack([np.median(values[sizes == size], axis=0) for size in unique])


def _interpolation(grid: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Matrix W with W @ v = np.interp(grid, knots, v) for any v: np.interp is linear in v, so its columns are the
    interpolations of the unit vectors. Lets every resample be interpolated in one product."""
    return np.stack([np.interp(grid, knots, unit) for unit in np.eye(len(knots))], axis=1)


def crossover_draws(base_sizes: np.ndarray, base_values: np.ndarray, mech_sizes: np.ndarray,
                    mech_values: np.ndarray, higher_is_better: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`scaling.find_crossover` for every resample at once: (status per resample, crossover N or nan).

    base_values / mech_values are (rows, resamples) draws of the metric at base_sizes / mech_sizes."""
    base_n, base_v = _per_size(np.asarray(base_sizes, float), base_values)
    mech_n, mech_v = _per_size(np.asarray(mech_sizes, float), mech_values)
    count = base_values.shape[1]
    low, high = max(base_n.min(), mech_n.min()), min(base_n.max(), mech_n.max())
    if not low < high:
        return np.full(count, "insufficient", dtype=object), np.full(count, np.nan)
    grid = np.log(np.array(sorted(n for n in set(base_n) | set(mech_n) if low <= n <= high)))
    log_base = _interpolation(grid, np.log(base_n)) @ np.log(base_v)
    log_mech = _interpolation(grid, np.log(mech_n)) @ np.log(mech_v)
    gap = (log_base - log_mech) if higher_is_better else (log_mech - log_base)  # < 0: mechanism better
    better = gap < 0
    status = np.full(count, "crossover", dtype=object)
    status[~better[-1]] = "mixed"
    status[better.all(axis=0)] = "always"
    status[~better.any(axis=0)] = "never"
    tokens = np.full(count, np.nan)
    crossing = np.flatnonzero(status == "crossover")
    if len(crossing):
        worse = ~better[:, crossing]
        last = worse.shape[0] - 1 - np.argmax(worse[::-1], axis=0)  # last grid point where the mechanism is worse
        here, after = gap[last, crossing], gap[last + 1, crossing]
        fraction = here / (here - after)
        tokens[crossing] = np.exp(grid[last] + fraction * (grid[last + 1] - grid[last]))
    return status, tokens
