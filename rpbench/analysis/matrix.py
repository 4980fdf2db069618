"""Several runs against the first: per case (`case_id`), each run's value and its speedup over the first run with
a 95 % interval, judged by the rules of `compare`.

The speedup is the one `speedups` computes against a baseline mechanism, with the first run's row of the case as
the baseline (> 1: this run is better than the first): the ratio of the two medians, its interval from the
draws of both rows' latency where both have samples (see `bootstrap`: the drift between passes inside), else the p20–p80 ends paired least favourably. The draws of
the two runs must be independent (two runs share no pass), yet `bootstrap` seeds a case by its case_id, which both
runs share: the other run's draws are made again with the seed moved by its position among the runs. Flagged rows get none. The verdict per case and run is `compare_runs` of the
first run and that run: a change counts only beyond the threshold and beyond both rows' 95 % intervals (p20–p80 spreads where a row has
none), a flagged
case is "flagged", a status change is judged as in `rpbench compare A B`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .bootstrap import SEED, Draws, median_draws
from .compare import Comparison, compare_runs
from .metrics import Metric
from .runs import AnalysedRun
from .scaling import curve_name
from .speedups import speedups

_FIRST, _OTHER = "\x00first", "\x00other"  # mechanism names no label can take: the two sides of one speedup
SPEEDUP_COLUMNS = ("speedup", "speedup_low", "speedup_high", "speedup_method")


@dataclass(frozen=True)
class RunMatrix:
    """`cases`: one line per case and run (case_id, name, tokens, run, value, status, flags, speedup, its
    interval and method, verdict, reason); the first run's lines have no speedup and no verdict."""

    cases: pd.DataFrame
    names: list[str]
    metric: Metric
    threshold_pct: float
    comparisons: dict[str, Comparison]  # run name -> compare_runs(first run, that run)

    def summary_lines(self) -> list[str]:
        first = self.names[0]
        return [f"{name} vs {first}: {found.summary_line()}" for name, found in self.comparisons.items()]

    def regressed(self) -> list[str]:
        """Runs with a regression against the first, or with no case in common with it."""
        return [name for name, found in self.comparisons.items() if not found.shared or found.counts()["regression"]]


def _last(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per case, the last written (as `compare` keeps them)."""
    return frame.drop_duplicates("case_id", keep="last")


def versus_first(first: AnalysedRun, other: AnalysedRun, metric: Metric, position: int = 1) -> pd.DataFrame:
    """Speedup of `other` (the run at `position`) over `first` per case_id (the index), with its interval (see
    the module docstring)."""
    a, b = _last(first.analysis.frame), _last(other.analysis.frame)
    pair = pd.concat([a.assign(mechanism=_FIRST), b.assign(mechanism=_OTHER)], ignore_index=True)
    pair["_context"], pair["_size"] = pair["case_id"].astype(str), ""
    own = median_draws(other.analysis.frame, other.samples, seed=SEED + position)
    draws = Draws()  # no rounds: two runs share none, so nothing pairs and the draws are independent
    for offset, (rows, source) in enumerate(((a, first.analysis.draws), (b, own))):
        start = 0 if offset == 0 else len(a)
        for i, old in enumerate(rows.index):
            if old in source:
                draws[start + i] = source[old]
                draws.methods[start + i] = source.methods.get(old, "")
    found = speedups(pair, _FIRST, metric, draws).iloc[len(a):]
    found.index = b["case_id"].astype(str).to_numpy()
    return found


def _lines(run: AnalysedRun, metric: Metric) -> pd.DataFrame:
    rows = _last(run.analysis.frame)
    return pd.DataFrame({
        "case_id": rows["case_id"].astype(str), "name": [curve_name(row) for _, row in rows.iterrows()],
        "tokens": rows["tokens"], "run": run.facets.name, "value": rows[metric.column].astype("Float64"),
        "status": rows["status"].fillna("?").astype(str), "ok": rows["ok"], "flags": rows["flags"],
    })


def run_matrix(runs: list[AnalysedRun], metric: Metric, threshold_pct: float = 5.0) -> RunMatrix:
    """Every run against the first (see the module docstring); AnalysisError for a threshold out of range."""
    first = runs[0]
    parts, comparisons = [_lines(first, metric)], {}
    for position, other in enumerate(runs[1:], start=1):
        found = compare_runs(first.rows, other.rows, metric, threshold_pct)
        comparisons[other.facets.name] = found
        lines = _lines(other, metric).set_index("case_id", drop=False)
        lines = lines.join(versus_first(first, other, metric, position)[list(SPEEDUP_COLUMNS)])
        verdicts = found.cases.set_index("case_id")[["verdict", "reason"]]
        parts.append(lines.join(verdicts).reset_index(drop=True))
    cases = pd.concat(parts, ignore_index=True)
    for column in ("speedup", "speedup_low", "speedup_high"):
        cases[column] = cases[column].astype("Float64") if column in cases else pd.Series(pd.NA, dtype="Float64")
    for column in ("speedup_method", "verdict", "reason"):
        cases[column] = cases[column].astype("string") if column in cases else pd.Series(pd.NA, dtype="string")
    # Each case named as the first run that has it names it; cases in the order of their names and sizes.
    names = cases.drop_duplicates("case_id").set_index("case_id")["name"]
    cases["name"] = cases["case_id"].map(names)
    runs_names = [r.facets.name for r in runs]
    order = {name: i for i, name in enumerate(runs_names)}
    cases = cases.sort_values(["name", "tokens", "run"], key=lambda s: s.map(order) if s.name == "run" else s,
                              kind="stable", na_position="last")
    return RunMatrix(cases.reset_index(drop=True), runs_names, metric, threshold_pct, comparisons)
