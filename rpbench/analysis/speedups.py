"""How many times better than the baseline each case is, with a 95 % interval: a bootstrap of both cases' samples
where both have them, else the p20–p80 pairing (`speedup_method` says which)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .bootstrap import Draws, interval, metric_draws
from .metrics import Metric

BOOTSTRAP = "bootstrap"
BAND = "p20-p80"


def speedups(frame: pd.DataFrame, baseline: str, metric: Metric, latency_draws: Draws | None = None) -> pd.DataFrame:
    """Per case, how many times better than the baseline at the same context and size (> 1: better).

    The point is the ratio of the two rows' values. Its interval is the 95 % percentile interval of the ratio of
    bootstrap draws (`bootstrap`: the two cases are resampled independently, each stratified by pass) when both
    the case and the one baseline row at its size have samples; otherwise (old runs without samples.csv, the memory
    metric, several baseline rows at one size) it pairs the ends of both p20–p80 spreads in the least favourable
    way, e.g. for latency baseline p20 / mechanism p80 up to baseline p80 / mechanism p20 (`p20-p80`).
    """
    value = frame[metric.column].astype("Float64")
    low, high = metric.band(frame)
    parts = pd.DataFrame({"value": value, "low": low, "high": high, "_context": frame["_context"], "_size": frame["_size"]})
    usable = frame["usable"] & value.notna() & (value > 0)  # flagged rows get no speedup and give none
    base_rows = parts[usable & (frame["mechanism"] == baseline)]
    reference = base_rows.groupby(["_context", "_size"])[["value", "low", "high"]].median()
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
    result["speedup_method"] = pd.Series(BAND, index=frame.index, dtype="string")
    draws = metric_draws(frame, latency_draws or {}, metric.name)
    # The baseline draws of a (context, size) with exactly one baseline row that has them.
    only = base_rows.groupby(["_context", "_size"]).filter(lambda rows: len(rows) == 1)
    base_draws = {key: draws[index] for index, key in zip(only.index, zip(only["_context"], only["_size"]))
                  if index in draws}
    found = {}
    candidates = result.index[usable & result["speedup"].notna()]
    for index, key in zip(candidates, zip(parts.loc[candidates, "_context"], parts.loc[candidates, "_size"])):
        mine, theirs = draws.get(index), base_draws.get(key)
        if mine is not None and theirs is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                found[index] = interval(mine / theirs if metric.higher_is_better else theirs / mine)
    if found:
        bounds = pd.DataFrame.from_dict(found, orient="index", columns=["speedup_low", "speedup_high"])
        result.loc[bounds.index, ["speedup_low", "speedup_high"]] = bounds.astype("Float64")
        result.loc[bounds.index, "speedup_method"] = BOOTSTRAP
    result.loc[~usable, ["speedup", "speedup_low", "speedup_high"]] = pd.NA
    result.loc[result["speedup"].isna(), "speedup_method"] = pd.NA
    return result
