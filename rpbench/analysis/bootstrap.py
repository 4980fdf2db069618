"""Intervals from the kept timed samples (samples.csv), numpy only and seeded: every case's latency as
`core.intervals` estimates it, and RESAMPLES draws of it for the statistics built on several cases (speedups
without pairing, fitted exponents, crossovers), which are recomputed per draw.

Two levels. A case is timed in several passes interleaved across the suite, and the machine moves between them, so
the unit is the pass: a case with k >= 2 pooled passes gets the random-effects t interval over the log medians of
its passes (`PASS_T`: the drift between passes and each pass's own noise both inside it), drawn as
exp(mean + s0/√k · T(k0 − 1)); a case with a single pooled pass has its samples to resample, times the machine's
measured drift where its row carries one (`PASS_DRIFT`), else alone (`WITHIN_PASS`: the pass held fixed, the drift
left out). See `core.intervals` for why this and not a bootstrap over 3 passes. Samples without a pass (old runs,
hand-written rows) count as one pass.

Each case gets its own generator, seeded from SEED and its case_id: two reports of the same run print the same
digits, and a case's interval does not change when other cases are added or filtered out. A case whose samples do
not reproduce its row's median (a samples.csv that is not this row's) gets no draws: its intervals fall back to
the p20–p80 pairing, and say so.

Every case also keeps the log median of each pass by the round of the sweep it was taken in (`Draws.rounds`): two
cases timed in the same rounds are paired for their speedup (`speedups`).
"""
from __future__ import annotations

import json
from typing import Hashable

import numpy as np
import pandas as pd

from ..core.case import LEGACY_TIMING
from ..core.intervals import (MIN_SAMPLES, PASS_DRIFT, PASS_T, RESAMPLES, SEED, WITHIN_PASS, Estimate, case_rng,
                              half_width_pct, latency_estimate)
from ..core.intervals import percentile_interval as interval  # noqa: F401  (what speedups and scaling use)

# Share of resamples that must agree with the measured crossover status before an interval is printed.
AGREEMENT = 0.95


class Draws(dict):
    """Frame index -> RESAMPLES values of one case's latency, ms. `methods[index]` says how they were drawn (PASS_T
    or WITHIN_PASS), `estimates[index]` is the case's Estimate, `rounds[index]` maps the round of the sweep of each
    pooled pass (its pass number in runs from before rounds were recorded) to the log of its median."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.methods: dict[Hashable, str] = {}
        self.estimates: dict[Hashable, Estimate] = {}
        self.rounds: dict[Hashable, dict[int, float]] = {}


def first_stage(timing: object) -> int:
    """k0 of a row: the regular rounds its `timing` JSON says it was planned with (1 for rows from before rounds)."""
    try:
        return int({**LEGACY_TIMING, **json.loads(str(timing))}["rounds"])
    except (ValueError, TypeError, KeyError):
        return 0  # unknown: every pooled pass counts (see latency_estimate)


def median_draws(frame: pd.DataFrame, samples: pd.DataFrame | None, resamples: int = RESAMPLES,
                 seed: int = SEED) -> Draws:
    """Draws of the latency (ms) of every timed row of `frame` whose samples reproduce its median."""
    draws = Draws()
    if samples is None or samples.empty or "latency_ms" not in samples:
        return draws
    kept = samples[samples["latency_ms"].notna() & samples["case_id"].notna()]
    values = kept["latency_ms"].to_numpy(dtype=float)
    passes = (kept["round"].astype("Int64").fillna(-1) if "round" in kept else pd.Series(-1, index=kept.index))
    passes = passes.to_numpy(dtype=np.int64)
    sweep = kept["sweep_round"].astype("Int64") if "sweep_round" in kept else pd.Series(pd.NA, index=kept.index)
    sweep = sweep.fillna(pd.Series(passes, index=kept.index)).to_numpy(dtype=np.int64)
    positions = kept.groupby(kept["case_id"].astype(str)).indices
    timed = frame[frame["ok"] & frame["latency_ms_median"].notna()]
    timings = timed["timing"] if "timing" in timed else pd.Series(None, index=timed.index)
    for index, case_id, median, timing in zip(timed.index, timed["case_id"].astype(str), timed["latency_ms_median"],
                                              timings):
        drift = _row_drift(timed, index)
        found = positions.get(case_id)
        if found is None or len(found) < MIN_SAMPLES:
            continue
        mine = values[found]
        if not np.isclose(np.median(mine), float(median), rtol=1e-6, atol=0.0):
            continue  # not this row's samples: no interval from them
        numbers = passes[found]
        order = list(dict.fromkeys(numbers))  # passes in the order taken (samples are written pass by pass)
        groups = [mine[numbers == number] for number in order]
        estimate = latency_estimate(groups, first_stage(timing), case_id, resamples, drift, seed)
        if estimate is None:
            continue
        draws[index] = estimate.draws(resamples, case_rng(case_id, seed))
        draws.methods[index], draws.estimates[index] = estimate.method, estimate
        by_round: dict[int, list[float]] = {}
        mine_sweep = sweep[found]
        for number, group in zip(order, groups):
            by_round.setdefault(int(mine_sweep[numbers == number][0]), []).append(float(np.log(np.median(group))))
        draws.rounds[index] = {key: float(np.mean(logs)) for key, logs in sorted(by_round.items())}
    return draws


def with_latency_intervals(frame: pd.DataFrame, draws: Draws) -> pd.DataFrame:
    """`frame` with latency_ms_ci_low / _high, latency_ci_method and ci_pct filled from the samples for rows that
    do not carry them (runs from before rows had them): the same numbers a sweep writes today."""
    out = frame.copy()
    for column, dtype in (("latency_ms_ci_low", "Float64"), ("latency_ms_ci_high", "Float64"),
                          ("latency_ci_method", "string"), ("ci_pct", "Float64")):
        if column not in out:
            out[column] = pd.Series(pd.NA, index=out.index, dtype=dtype)
    missing = [index for index in draws.estimates if pd.isna(out.at[index, "latency_ms_ci_low"])]
    for index in missing:
        median = float(out.at[index, "latency_ms_median"])
        low, high = draws.estimates[index].interval(median=median)
        out.loc[index, ["latency_ms_ci_low", "latency_ms_ci_high"]] = [low, high]
        out.at[index, "latency_ci_method"] = draws.methods[index]
        out.at[index, "ci_pct"] = half_width_pct(low, high, median)
    return out


def _row_drift(rows: pd.DataFrame, index: Hashable) -> tuple[float, int] | None:
    """(drift %, timings) a row carries, None when it has none (a run without a reference kernel)."""
    if "drift_pct" not in rows or "drift_timings" not in rows:
        return None
    sd, count = rows.at[index, "drift_pct"], rows.at[index, "drift_timings"]
    return None if pd.isna(sd) or pd.isna(count) else (float(sd), int(count))


def weakest(methods: list[str]) -> str:
    """The interval method of a statistic drawn from several cases: the least complete of theirs (within-pass when
    any had one pass and no drift, pass-drift when any had one pass with it)."""
    return next((method for method in (WITHIN_PASS, PASS_DRIFT) if method in methods), PASS_T)


def metric_draws(frame: pd.DataFrame, latency: Draws, metric_name: str) -> Draws:
    """The metric's bootstrap values per row: latency as drawn, throughput as results.csv computes it (batch / median
    latency, per second: `Measurement.throughput_img_s`); memory is one number per case and has none."""
    if metric_name == "latency":
        return latency
    found = Draws()
    if metric_name == "throughput":
        batch = frame["batch"]
        found.update({index: float(batch[index]) * 1e3 / draws for index, draws in latency.items()
                      if pd.notna(batch[index]) and batch[index] > 0})
        found.methods = {index: method for index, method in getattr(latency, "methods", {}).items() if index in found}
    return found


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
