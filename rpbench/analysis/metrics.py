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
