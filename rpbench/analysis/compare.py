"""The same cases in two runs, matched by case_id, with regressions told apart from noise.

A change counts only when it exceeds the relative threshold AND the two runs' p20–p80 bands do not overlap,
so a noisy case cannot fail a gate on its own spread.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..core.errors import AnalysisError
from .metrics import Metric
from .table import prepare

VERDICTS = ("regression", "improvement", "unchanged", "only in A", "only in B")


@dataclass
class Comparison:
    """One row per case_id of either run, with its verdict and the reason for it."""

    cases: pd.DataFrame
    metric: Metric
    threshold_pct: float

    def counts(self) -> dict[str, int]:
        found = self.cases["verdict"].value_counts()
        return {verdict: int(found.get(verdict, 0)) for verdict in VERDICTS}

    def summary_line(self) -> str:
        counts = self.counts()
        regressions = counts["regression"]
        improvements = counts["improvement"]
        return (
            f"{regressions} regression{'s' * (regressions != 1)}, {improvements} improvement{'s' * (improvements != 1)}, "
            f"{counts['unchanged']} unchanged, {counts['only in A']} only in A, {counts['only in B']} only in B "
            f"({self.metric.label}, threshold {self.threshold_pct:g} % beyond the p20–p80 spread)"
        )


def _side(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    prepared = prepare(frame)
    low, high = metric.band(prepared)
    side = pd.DataFrame(
        {
            "case_id": prepared["case_id"].astype(str),
            "series": prepared["line"],
            "tokens": prepared["tokens"],
            "status": prepared["status"].fillna("?").astype(str),
            "ok": prepared["ok"],
            "value": prepared[metric.column].astype("Float64"),
            "low": low.astype("Float64").fillna(prepared[metric.column].astype("Float64")),
            "high": high.astype("Float64").fillna(prepared[metric.column].astype("Float64")),
        }
    )
    return side.drop_duplicates("case_id", keep="last").set_index("case_id")


def _judge(a: pd.Series, b: pd.Series, metric: Metric, threshold_pct: float) -> tuple[str, str]:
    if not a["ok"] or not b["ok"]:
        if a["ok"]:
            return "regression", f"status ok → {b['status']}"
        if b["ok"]:
            return "improvement", f"status {a['status']} → ok"
        return "unchanged", f"status {a['status']} → {b['status']}"
    if pd.isna(a["value"]) or pd.isna(b["value"]) or a["value"] <= 0:
        return "unchanged", f"no {metric.label} value"
    change = 100 * (b["value"] / a["value"] - 1)
    if abs(change) <= threshold_pct:
        return "unchanged", f"{change:+.1f} %, within threshold"
    went_up = change > 0
    if not (b["low"] > a["high"] if went_up else b["high"] < a["low"]):
        return "unchanged", f"{change:+.1f} %, within p20–p80 spread"
    return ("improvement" if went_up == metric.higher_is_better else "regression"), f"{change:+.1f} %"


MAX_THRESHOLD_PCT = 1e6


def compare_runs(frame_a: pd.DataFrame, frame_b: pd.DataFrame, metric: Metric, threshold_pct: float) -> Comparison:
    """Judge every case_id present in either run."""
    if not 0 <= threshold_pct <= MAX_THRESHOLD_PCT:  # NaN fails too
        raise AnalysisError(f"threshold must be between 0 and {MAX_THRESHOLD_PCT:g} %, got {threshold_pct:g}")
    side_a, side_b = _side(frame_a, metric), _side(frame_b, metric)
    records = []
    for case_id in list(side_a.index) + [c for c in side_b.index if c not in side_a.index]:
        in_a, in_b = case_id in side_a.index, case_id in side_b.index
        a = side_a.loc[case_id] if in_a else None
        b = side_b.loc[case_id] if in_b else None
        shown = b if b is not None else a
        record = {
            "case_id": case_id,
            "series": shown["series"],
            "tokens": shown["tokens"],
            "status_a": a["status"] if a is not None else "",
            "status_b": b["status"] if b is not None else "",
            "value_a": a["value"] if a is not None else pd.NA,
            "value_b": b["value"] if b is not None else pd.NA,
        }
        if a is None or b is None:
            record["verdict"], record["reason"] = ("only in B", "") if a is None else ("only in A", "")
        else:
            record["verdict"], record["reason"] = _judge(a, b, metric, threshold_pct)
        records.append(record)
    cases = pd.DataFrame.from_records(records, columns=["case_id", "series", "tokens", "status_a", "status_b",
                                                        "value_a", "value_b", "verdict", "reason"])
    cases["value_a"] = cases["value_a"].astype("Float64")
    cases["value_b"] = cases["value_b"].astype("Float64")
    cases["ratio"] = cases["value_b"] / cases["value_a"]
    order = {verdict: rank for rank, verdict in enumerate(VERDICTS)}
    cases = cases.sort_values(["verdict", "series", "tokens"], key=lambda s: s.map(order) if s.name == "verdict" else s)
    return Comparison(cases.reset_index(drop=True), metric, threshold_pct)
