"""One run analysed once, for every view: the prepared table, the case summary, exponents and crossovers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from .bootstrap import Draws, median_draws, with_latency_intervals
from .metrics import Metric, get_metric
from .scaling import crossovers, scaling_exponents
from .summary import case_summary
from .table import prepare, resolve_baseline


@dataclass(frozen=True)
class RunAnalysis:
    """What the terminal report, report.html and the readable exports show for one run."""

    frame: pd.DataFrame  # prepared rows (see table.prepare)
    env: Mapping[str, Any]
    baseline: str | None  # resolved: the requested label, else dense when the run has it, else None
    metric: Metric
    summary: pd.DataFrame  # case_summary: rows + efficiency + speedups, in display order
    exponents: pd.DataFrame
    crossings: pd.DataFrame
    draws: Draws = field(default_factory=Draws)  # draws of the median latency of latency per row of `frame` (see bootstrap)


def analyse_run(frame: pd.DataFrame, env: Mapping[str, Any], baseline: str | None = None,
                metric: str = "latency", samples: pd.DataFrame | None = None) -> RunAnalysis:
    """`samples` (samples.csv as the store reads it) gives speedups, latency exponents and crossovers their
    intervals (two levels, and speedups paired by round: see `bootstrap`, `speedups`), and rows that lack a
    latency interval (older runs) theirs; without it they fall back to the p20–p80 pairing and t-intervals.

    Raises AnalysisError with one line for an unknown metric or a baseline the run does not have."""
    chosen_metric = get_metric(metric)
    prepared = prepare(frame)
    chosen = resolve_baseline(prepared, baseline)
    draws = median_draws(prepared, samples)
    prepared = with_latency_intervals(prepared, draws)
    return RunAnalysis(
        frame=prepared,
        env=env,
        baseline=chosen,
        metric=chosen_metric,
        summary=case_summary(prepared, env, chosen, chosen_metric, draws),
        exponents=scaling_exponents(prepared, draws),
        crossings=crossovers(prepared, chosen, chosen_metric, draws) if chosen is not None else pd.DataFrame(),
        draws=draws,
    )
