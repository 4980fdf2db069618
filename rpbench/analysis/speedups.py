"""How many times better than the baseline each case is, with a 95 % interval; `speedup_method` says how it was made.

`paired-t` (round-paired): within a round of the sweep every case is timed once, so the case and its baseline have
one pass each in most rounds. The speedup is computed per round from those two passes (the log ratio of their
medians), and the rounds are combined: the point is exp(mean of the log ratios), the interval its Student t
interval (n − 1 df over n paired rounds; the spread taken from the pairs of the regular rounds when they are at
least two, as `core.intervals` does for one case, so extra rounds cannot make a pair look surer). Drift that slows
a whole round slows both passes of a pair and cancels; drift within a round stays in the spread of the ratios, so
the interval holds it either way. Needs two rounds in which both cases have a pooled pass.

Otherwise: the ratio of the two rows' values, with the percentile interval of the ratio of both cases' independent
draws (`pass-t` when both cases have several passes; `pass-drift` when one has a single pass and the machine's
drift stands in for its own, `within-pass` when there was none to stand in: see `bootstrap`); without samples for both (old runs without samples.csv, the memory metric, several
baseline rows at one size) the ends of both p20–p80 spreads paired in the least favourable way, e.g. for latency
baseline p20 / mechanism p80 up to baseline p80 / mechanism p20 (`p20-p80`).

Latency and throughput speedups are the same number (the batch is part of a row's context, so baseline and case
share it): both come from latency passes.
"""
from __future__ import annotations

from typing import Hashable

import numpy as np
import pandas as pd

from ..core.intervals import paired_ratio
from .bootstrap import Draws, first_stage, interval, metric_draws, weakest
from .metrics import Metric

PAIRED = "paired-t"
BAND = "p20-p80"
MIN_PAIRS = 2


def paired(case: dict[int, float] | None, base: dict[int, float] | None,
           regular: int) -> tuple[float, float, float] | None:
    """(speedup, low, high) of a case over its baseline from their passes' log medians by sweep round, or None
    below MIN_PAIRS rounds in common. The spread comes from the pairs of rounds < `regular` when they are at least
    MIN_PAIRS (see the module docstring)."""
    if not case or not base:
        return None
    shared = sorted(set(case) & set(base))
    if len(shared) < MIN_PAIRS:
        return None
    logs = np.array([base[r] - case[r] for r in shared])
    first = sum(r < regular for r in shared)
    return paired_ratio(logs, first if first >= MIN_PAIRS else len(logs))


def speedups(frame: pd.DataFrame, baseline: str, metric: Metric, latency_draws: Draws | None = None) -> pd.DataFrame:
    """Per case, how many times better than the baseline at the same context and size (> 1: better); see the
    module docstring for the point and the interval."""
    value = frame[metric.column].astype("Float64")
    low, high = metric.band(frame)
    parts = pd.DataFrame({"value": value, "low": low, "high": high, "_context": frame["_context"],
                          "_size": frame["_size"]})
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
    latency = latency_draws if latency_draws is not None else Draws()
    draws = metric_draws(frame, latency, metric.name)
    # The baseline row of a (context, size) that has exactly one.
    only = base_rows.groupby(["_context", "_size"]).filter(lambda rows: len(rows) == 1)
    base_of = dict(zip(zip(only["_context"], only["_size"]), only.index))
    regular = _regular_rounds(frame)
    found: dict[Hashable, tuple[float, ...]] = {}
    methods: dict[Hashable, str] = {}
    candidates = result.index[usable & result["speedup"].notna()]
    for index, key in zip(candidates, zip(parts.loc[candidates, "_context"], parts.loc[candidates, "_size"])):
        base = base_of.get(key)
        if base is None:
            continue
        pair = paired(latency.rounds.get(index), latency.rounds.get(base), regular.get(index, 0)) \
            if metric.name in ("latency", "throughput") and index != base else None
        if pair is not None:
            found[index], methods[index] = pair, PAIRED
        elif index in draws and base in draws:
            mine, theirs = draws[index], draws[base]
            with np.errstate(divide="ignore", invalid="ignore"):
                bounds = interval(mine / theirs if metric.higher_is_better else theirs / mine)
            found[index] = (float(result.at[index, "speedup"]), *bounds)
            methods[index] = weakest([latency.methods.get(index, ""), latency.methods.get(base, "")])
    if found:
        bounds = pd.DataFrame.from_dict(found, orient="index", columns=["speedup", "speedup_low", "speedup_high"])
        result.loc[bounds.index, ["speedup", "speedup_low", "speedup_high"]] = bounds.astype("Float64")
        result.loc[bounds.index, "speedup_method"] = pd.Series(methods)
    result.loc[~usable, ["speedup", "speedup_low", "speedup_high"]] = pd.NA
    result.loc[result["speedup"].isna(), "speedup_method"] = pd.NA
    return result


def _regular_rounds(frame: pd.DataFrame) -> dict[Hashable, int]:
    """Each row's regular rounds (k0, from its `timing`), the rounds whose pairs give a paired spread."""
    if "timing" not in frame:
        return {}
    return {index: first_stage(text) for index, text in frame["timing"].items()}
