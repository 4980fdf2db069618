"""How many times better than the baseline each case is, with an interval from both p20–p80 spreads."""
from __future__ import annotations

import pandas as pd

from .metrics import Metric


def speedups(frame: pd.DataFrame, baseline: str, metric: Metric) -> pd.DataFrame:
    """Per case, how many times better than the baseline at the same context and size (> 1: better).

    The interval pairs the ends of both p20–p80 spreads in the least favourable way, e.g. for latency
    baseline p20 / mechanism p80 up to baseline p80 / mechanism p20.
    """
    value = frame[metric.column].astype("Float64")
    low, high = metric.band(frame)
    parts = pd.DataFrame({"value": value, "low": low, "high": high, "_context": frame["_context"], "_size": frame["_size"]})
    usable = frame["usable"] & value.notna() & (value > 0)  # flagged rows get no speedup and give none
    reference = (
        parts[usable & (frame["mechanism"] == baseline)]
        .groupby(["_context", "_size"])[["value", "low", "high"]]
        .median()
    )
    joined = parts.join(reference.add_suffix("_base"), on=["_context", "_size"])
    if metric.higher_is_better:
        ratio, lo, hi = (
            joined["value"] / joined["value_base"],
            joined["low"] / joined["high_base"],
            joined["high"] / joined["low_base"],
        )
    else:
        ratio, lo, hi = (
            joined["value_base"] / joined["value"],
            joined["low_base"] / joined["high"],
            joined["high_base"] / joined["low"],
        )
    result = pd.DataFrame({"speedup": ratio, "speedup_low": lo, "speedup_high": hi}, index=frame.index)
    result = result.astype("Float64")
    result.loc[~usable] = pd.NA
    return result
