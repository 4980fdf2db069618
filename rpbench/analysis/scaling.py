"""How each curve scales with N (fitted exponents) and where it overtakes the baseline (crossovers)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .bootstrap import AGREEMENT, Draws, crossover_draws, interval, metric_draws, slope_draws, stacked, weakest
from .statistics import fit_power_law
from .metrics import Metric

SCALING_QUANTITIES = {"latency": "latency_ms_median", "memory": "peak_mem_mb", "flops": "flops"}
# An exponent from fewer sizes is mostly noise (3 sizes gave CIs like [-16.6, 14.2]): such a curve gets a row with
# n_points and no exponent, shown as "n/a (3 sizes)".
MIN_FIT_SIZES = 4
# The columns the fits and crossovers read: the prepared table has a hundred, and every per-curve selection would
# copy them all (a 500-case report spent most of its time there).
CURVE_COLUMNS = ("context", "series", "line", "facet", "_context", "_variant", "mechanism", "tokens", "resolution",
                 "ok", "flagged", "usable", *SCALING_QUANTITIES.values(), "throughput_img_s", "batch")


def _narrow(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[column for column in dict.fromkeys(CURVE_COLUMNS) if column in frame]]


def scaling_exponents(frame: pd.DataFrame, latency_draws: Draws | None = None) -> pd.DataFrame:
    """Fitted exponent of latency, peak memory and FLOPs vs N for every curve with >= MIN_FIT_SIZES usable sizes
    (a curve with 2 or 3 gets its row with n_points and a missing exponent); flagged rows are left out (`left_out`
    counts them per curve). `line` names the curve with its facet (dtype, mode) when the run mixes them.

    The exponent is the least-squares slope through the rows' values. Its 95 % interval (`ci_method`): for latency,
    when every point has draws (see `bootstrap`), the percentile interval of the slope refitted to each draw
    (`pass-t` when every point has several passes, so the drift between passes is inside; `pass-drift` /
    `within-pass` when one has a single pass, with or without the machine's drift standing in: how far measurement
    noise moves the fitted slope; whether the curve is a power law at all is what R² says); otherwise, and always for memory and FLOPs (one number per case, nothing to resample), the
    t-interval of the fit (`t`)."""
    records = []
    frame = _narrow(frame)
    ok = frame[frame["usable"]]
    left_out = frame[frame["ok"] & frame["flagged"]].groupby(["_context", "_variant"]).size()
    for (context, variant), rows in ok.groupby(["_context", "_variant"], sort=False):
        first = rows.iloc[0]
        for quantity, column in SCALING_QUANTITIES.items():
            values = rows[column].astype("Float64")
            usable = rows[values.notna() & (values > 0) & rows["tokens"].notna() & (rows["tokens"] > 0)]
            sizes = usable["tokens"].nunique()
            if sizes < 2:
                continue
            if sizes < MIN_FIT_SIZES:
                fit = None
            else:
                fit = fit_power_law(usable["tokens"].astype(float), usable[column].astype(float))
            nan = float("nan")
            low, high, method = (nan, nan, None) if fit is None else (fit.ci_low, fit.ci_high, "t")
            drawn = stacked(usable, latency_draws or {}) if quantity == "latency" and fit is not None else None
            if drawn is not None:
                low, high = interval(slope_draws(usable["tokens"].to_numpy(float), drawn))
                method = weakest([latency_draws.methods.get(index, "") for index in usable.index])
            records.append(
                {
                    "context": first["context"],
                    "series": first["series"],
                    "line": curve_name(first),
                    "_context": first["_context"],
                    "_variant": first["_variant"],
                    "quantity": quantity,
                    "exponent": nan if fit is None else fit.exponent,
                    "ci_low": low,
                    "ci_high": high,
                    "ci_method": method,
                    "r2": nan if fit is None else fit.r2,
                    "n_points": len(usable) if fit is None else fit.n_points,
                    "left_out": int(left_out.get((context, variant), 0)),
                }
            )
    columns = ["context", "series", "line", "_context", "_variant", "quantity", "exponent", "ci_low", "ci_high"]
    return pd.DataFrame.from_records(records, columns=[*columns, "ci_method", "r2", "n_points", "left_out"])


@dataclass(frozen=True)
class Crossover:
    """Where a mechanism starts beating the baseline. status: crossover | always | never | mixed | insufficient."""

    status: str
    tokens: float | None = None


def curve_name(row: pd.Series) -> str:
    """A curve's name in the scaling tables: its line, with its facet (dtype, mode) when the run has several."""
    facet = row.get("facet")
    return f"{row['line']} · {facet}" if isinstance(facet, str) and facet else str(row["line"])


def find_crossover(
    base_sizes: Any, base_values: Any, mech_sizes: Any, mech_values: Any, higher_is_better: bool = False
) -> Crossover:
    """Smallest N from which the mechanism stays better, interpolating both curves linearly in log-log space.

    Both curves are compared on the union of their sizes inside the range they share; "mixed" means the
    mechanism is better somewhere but not at the largest shared N, so no single crossover describes it.
    """
    base = pd.Series(np.asarray(base_values, float)).groupby(np.asarray(base_sizes, float)).median()
    mech = pd.Series(np.asarray(mech_values, float)).groupby(np.asarray(mech_sizes, float)).median()
    low, high = max(base.index.min(), mech.index.min()), min(base.index.max(), mech.index.max())
    if not low < high:
        return Crossover("insufficient")
    grid = np.log(np.array(sorted(n for n in set(base.index) | set(mech.index) if low <= n <= high)))
    log_base = np.interp(grid, np.log(base.index.to_numpy()), np.log(base.to_numpy()))
    log_mech = np.interp(grid, np.log(mech.index.to_numpy()), np.log(mech.to_numpy()))
    gap = (log_base - log_mech) if higher_is_better else (log_mech - log_base)  # < 0: mechanism better
    better = gap < 0
    if better.all():
        return Crossover("always")
    if not better.any():
        return Crossover("never")
    if not better[-1]:
        return Crossover("mixed")
    last_worse = int(np.flatnonzero(~better)[-1])
    fraction = gap[last_worse] / (gap[last_worse] - gap[last_worse + 1])
    log_n = grid[last_worse] + fraction * (grid[last_worse + 1] - grid[last_worse])
    return Crossover("crossover", float(math.exp(log_n)))


def _resolution_at(rows: pd.DataFrame, tokens: float) -> float | None:
    """Image side matching a token count, interpolated log-log between the measured (N, resolution) pairs."""
    known = rows[rows["resolution"].notna() & rows["tokens"].notna()]
    pairs = known.groupby(known["tokens"].astype(float))["resolution"].median().astype(float)
    if len(pairs) < 2 or not pairs.index.min() <= tokens <= pairs.index.max():
        return None
    return float(np.exp(np.interp(np.log(tokens), np.log(pairs.index.to_numpy()), np.log(pairs.to_numpy()))))


def _resampled(base: pd.DataFrame, mech: pd.DataFrame, draws: Draws, found: Crossover,
               higher_is_better: bool) -> dict[str, Any]:
    """How the bootstrap resamples (metric draws of every point of both curves) see the crossover: `agree`, the
    share whose status is the measured one; `other`, the commonest status among the rest; and, only when at least
    AGREEMENT of them agree on a crossover, the 95 % interval of its N. Without draws for every point: no interval."""
    nan = float("nan")
    none = {"tokens_low": nan, "tokens_high": nan, "agree": nan, "other": None, "ci_method": None}
    base_draws, mech_draws = stacked(base, draws), stacked(mech, draws)
    if base_draws is None or mech_draws is None:
        return none
    status, tokens = crossover_draws(base["tokens"].to_numpy(float), base_draws, mech["tokens"].to_numpy(float),
                                     mech_draws, higher_is_better)
    agree = float((status == found.status).mean())
    rest = pd.Series(status[status != found.status]).value_counts()
    low, high = nan, nan
    if found.status == "crossover" and agree >= AGREEMENT:
        low, high = interval(tokens[status == "crossover"])
    methods = getattr(draws, "methods", {})
    return {"tokens_low": low, "tokens_high": high, "agree": agree, "other": rest.index[0] if len(rest) else None,
            "ci_method": weakest([methods.get(index, "") for index in (*base.index, *mech.index)])}


def crossovers(frame: pd.DataFrame, baseline: str, metric: Metric, latency_draws: Draws | None = None) -> pd.DataFrame:
    """For every non-baseline curve, where it overtakes each baseline curve of the same context (from usable rows;
    `left_out` counts the flagged rows of both curves), and how sure that is (`_resampled`)."""
    records = []
    draws = metric_draws(frame, latency_draws or {}, metric.name)
    frame = _narrow(frame)
    measured = frame[metric.column].notna() & (frame[metric.column] > 0) & frame["tokens"].notna()
    ok = frame[frame["usable"] & measured]
    flagged = frame[frame["ok"] & frame["flagged"] & measured]
    is_base = ok["mechanism"] == baseline
    for (context, variant), mech in ok[~is_base].groupby(["_context", "_variant"], sort=False):
        if mech["tokens"].nunique() < 2:
            continue  # a single size is a point, not a curve: nothing to cross
        for _, base in ok[is_base & (ok["_context"] == context)].groupby("_variant", sort=False):
            found = find_crossover(
                base["tokens"].astype(float),
                base[metric.column].astype(float),
                mech["tokens"].astype(float),
                mech[metric.column].astype(float),
                metric.higher_is_better,
            )
            resolution = None
            if found.tokens is not None:
                resolution = _resolution_at(pd.concat([mech, base]), found.tokens)
            first = mech.iloc[0]
            out = flagged[(flagged["_context"] == context) & ((flagged["_variant"] == variant)
                                                              | (flagged["mechanism"] == baseline))]
            records.append(
                {
                    "context": first["context"],
                    "series": first["series"],
                    "line": curve_name(first),
                    "_context": context,
                    "_variant": variant,
                    "baseline": base.iloc[0]["series"],
                    "metric": metric.name,
                    "status": found.status,
                    "tokens": found.tokens,
                    "resolution": resolution,
                    "left_out": len(out),
                    **_resampled(base, mech, draws, found, metric.higher_is_better),
                }
            )
    columns = ["context", "series", "line", "_context", "_variant", "baseline", "metric", "status", "tokens"]
    extra = ["resolution", "left_out", "tokens_low", "tokens_high", "agree", "other", "ci_method"]
    return pd.DataFrame.from_records(records, columns=[*columns, *extra])
