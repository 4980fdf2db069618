"""The case table every view shows: prepared rows plus efficiency and speedups, and the best value per size."""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from .bootstrap import Draws
from .metrics import Metric
from .peaks import efficiency
from .speedups import speedups

BEST_DIRECTIONS = {
    "latency_ms_median": "min",
    "throughput_img_s": "max",
    "peak_mem_mb": "min",
    "flops": "min",
    "tflops_s": "max",
    "speedup": "max",
}


def case_summary(frame: pd.DataFrame, env: Mapping[str, Any], baseline: str | None, metric: Metric,
                 latency_draws: Draws | None = None) -> pd.DataFrame:
    """Prepared rows plus efficiency and speedup columns (intervals from `latency_draws` where the cases have
    them, see `speedups`), ordered by context, size and series."""
    summary = pd.concat([frame, efficiency(frame, env).drop(columns="tflops_s")], axis=1)
    if baseline is not None:
        summary = pd.concat([summary, speedups(frame, baseline, metric, latency_draws)], axis=1)
    else:
        for col in ("speedup", "speedup_low", "speedup_high"):
            summary[col] = pd.Series(pd.NA, index=summary.index, dtype="Float64")
        summary["speedup_method"] = pd.Series(pd.NA, index=summary.index, dtype="string")
    order = summary.sort_values(["context", "tokens", "resolution", "series"], na_position="last", kind="stable")
    return order.reset_index(drop=True)


def best_flags(summary: pd.DataFrame) -> pd.DataFrame:
    """True where a case has the best value of a column among the usable (ok, unflagged) cases of the same context
    and size."""
    flags = pd.DataFrame(False, index=summary.index, columns=list(BEST_DIRECTIONS))
    ok = summary[summary["usable"]]
    for _, rows in ok.groupby(["_context", "_size"], sort=False):
        if len(rows) < 2:
            continue
        for column, direction in BEST_DIRECTIONS.items():
            values = rows[column].astype("Float64").dropna()
            if values.nunique() < 2:
                continue
            best = values.min() if direction == "min" else values.max()
            flags.loc[values[values == best].index, column] = True
    return flags
