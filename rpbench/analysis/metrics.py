"""Headline metrics: which column, which direction is better, and its p20–p80 spread."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..core.errors import AnalysisError
from ..core.schema import METRIC_COLUMNS


@dataclass(frozen=True)
class Metric:
    """A headline quantity: which column, which direction is better, and its p20–p80 spread."""

    name: str
    column: str
    label: str
    unit: str
    higher_is_better: bool

    def band(self, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Low and high ends of the spread, derived from the latency percentiles where the metric has one."""
        value = frame[self.column].astype("Float64")
        median = frame["latency_ms_median"].astype("Float64")
        if self.name == "latency":
            return frame["latency_ms_p20"].astype("Float64"), frame["latency_ms_p80"].astype("Float64")
        if self.name == "throughput":
            # Throughput is work / latency, so its slow end comes from p80 and its fast end from p20.
            return value * median / frame["latency_ms_p80"], value * median / frame["latency_ms_p20"]
        return value, value

    def interval(self, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
        """(low, high, has) per row: its 95 % interval where it has one (latency_ms_ci_low/high, which hold the
        drift between passes; throughput from them, batch / latency), else the p20–p80 `band`; `has` says which."""
        low, high = self.band(frame)
        if self.name not in ("latency", "throughput") or "latency_ms_ci_low" not in frame:
            return low, high, pd.Series(False, index=frame.index)
        ci_low = frame["latency_ms_ci_low"].astype("Float64")
        ci_high = frame["latency_ms_ci_high"].astype("Float64")
        if self.name == "throughput":  # batch / latency: the slow end is the latency's high end
            work = frame[self.column].astype("Float64") * frame["latency_ms_median"].astype("Float64")
            ci_low, ci_high = work / ci_high, work / ci_low
        has = (ci_low.notna() & ci_high.notna()).astype(bool)
        return low.where(~has, ci_low), high.where(~has, ci_high), has


METRICS = {
    "latency": Metric("latency", METRIC_COLUMNS["latency"], "latency", "ms", higher_is_better=False),
    "throughput": Metric("throughput", METRIC_COLUMNS["throughput"], "throughput", "img/s", higher_is_better=True),
    "memory": Metric("memory", METRIC_COLUMNS["memory"], "peak memory", "MiB", higher_is_better=False),
}
assert set(METRICS) == set(METRIC_COLUMNS)


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise AnalysisError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}") from None
