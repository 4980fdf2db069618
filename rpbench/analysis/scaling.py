"""How each curve scales with N (fitted exponents) and where it overtakes the baseline (crossovers)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .statistics import fit_power_law
from .metrics import Metric

SCALING_QUANTITIES = {"latency": "latency_ms_median", "memory": "peak_mem_mb", "flops": "flops"}
# An exponent from fewer sizes is mostly noise (3 sizes gave CIs like [-16.6, 14.2]): such a curve gets a row with
# n_points and no exponent, shown as "n/a (3 sizes)".
MIN_FIT_SIZES = 4


def scaling_exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Fitted exponent of latency, peak memory and FLOPs vs N for every curve with >= MIN_FIT_SIZES usable sizes
    (a curve with 2 or 3 gets its row with n_points and a missing exponent); flagged rows are left out (`left_out`
    counts them per curve). `line` names the curve with its facet (dtype, mode) when the run mixes them."""
    records = []
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
            records.append(
                {
                    "context": first["context"],
                    "series": first["series"],
                    "line": curve_name(first),
                    "_context": first["_context"],
                    "_variant": first["_variant"],
                    "quantity": quantity,
                    "exponent": nan if fit is None else fit.exponent,
                    "ci_low": nan if fit is None else fit.ci_low,
                    "ci_high": nan if fit is None else fit.ci_high,
                    "r2": nan if fit is None else fit.r2,
                    "n_points": len(usable) if fit is None else fit.n_points,
                    "left_out": int(left_out.get((context, variant), 0)),
                }
            )
    columns = ["context", "series", "line", "_context", "_variant", "quantity", "exponent", "ci_low", "ci_high", "r2"]
    return pd.DataFrame.from_records(records, columns=[*columns, "n_points", "left_out"])


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


def crossovers(frame: pd.DataFrame, baseline: str, metric: Metric) -> pd.DataFrame:
    """For every non-baseline curve, where it overtakes each baseline curve of the same context (from usable rows;
    `left_out` counts the flagged rows of both curves)."""
    records = []
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
                }
            )
    columns = ["context", "series", "line", "_context", "_variant", "baseline", "metric", "status", "tokens"]
    return pd.DataFrame.from_records(records, columns=[*columns, "resolution", "left_out"])
