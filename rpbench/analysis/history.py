"""Runs in order (of time, or of the commit they measured) and each case's value over them, with the changes beyond
noise marked: airspeed velocity's picture of a project's speed.

Order: `time` sorts by the run's date (env.json collected_at, else its first row's start); `commit` by the
committer date of the commit the run recorded (the project's checkout, or with `commit_of` one package of env.json
`code`), the run's date breaking ties and standing in where no committer date was recorded.

Each device model has its own history: a case's point in a run is judged against the last earlier run that
measured the case on the same device model (`compare_runs` of the two, so exactly the rules of `rpbench compare`:
beyond the threshold and beyond both p20–p80 spreads; flagged cases are "flagged", never a change).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..core.errors import AnalysisError
from ..core.schema import HISTORY_ORDERS as ORDERS
from ..results.runs import LabelledRun, RunFacets
from .compare import check_threshold, compare_runs
from .metrics import Metric
from .scaling import curve_name
from .table import prepare

CHANGES = ("regression", "improvement")


@dataclass(frozen=True)
class History:
    """`runs` in order with their x labels; `points`: one line per run, device model and case (device, case_id,
    name, tokens, run, position, value, low, high, status, ok, flags, verdict against the previous point, reason,
    ratio to it)."""

    runs: list[RunFacets]
    labels: list[str]
    points: pd.DataFrame
    metric: Metric
    threshold_pct: float
    by: str

    def changes(self) -> pd.DataFrame:
        return self.points[self.points["verdict"].isin(CHANGES)]

    def summary_line(self) -> str:
        found = self.changes()["verdict"].value_counts()
        regressions, improvements = int(found.get("regression", 0)), int(found.get("improvement", 0))
        flagged = int((self.points["verdict"] == "flagged").sum())
        return (f"{regressions} regression{'s' * (regressions != 1)}, {improvements} improvement"
                f"{'s' * (improvements != 1)} beyond noise over {len(self.runs)} runs ordered by {self.by} "
                f"({self.metric.label}, threshold {self.threshold_pct:g} % beyond the p20–p80 spread; "
                f"{flagged} flagged point{'s' * (flagged != 1)} not judged)")


def _when(text: str | None) -> pd.Timestamp:
    return pd.to_datetime(text, utc=True, errors="coerce") if text else pd.NaT


def _label(where: str, name: str) -> str:
    """A run's x label: where it sits (commit or date), and its name unless the name already says it."""
    return where if name.startswith(where.removesuffix("+dirty")) else f"{where} {name}"


def order_runs(runs: Sequence[LabelledRun], by: str, commit_of: str | None = None) -> list[tuple[LabelledRun, str]]:
    """The runs in history order, each with its x label; AnalysisError naming a run that cannot be placed."""
    if by not in ORDERS:
        raise AnalysisError(f"unknown order {by!r}; choose one of: {', '.join(ORDERS)}")
    placed = []
    for labelled in runs:
        facets = labelled.facets
        date = _when(facets.date)
        if by == "time":
            if pd.isna(date):
                raise AnalysisError(f"run {facets.name} ({facets.directory}): no date recorded (env.json "
                                    f"collected_at, the rows' started_at), so it cannot be placed in time")
            placed.append(((date, date), labelled, _label(f"{date:%Y-%m-%d %H:%M}", facets.name)))
            continue
        commit, commit_time = facets.commit_of(commit_of)
        if not commit:
            whose = f"package {commit_of}" if commit_of else "the project"
            raise AnalysisError(f"run {facets.name} ({facets.directory}): no git commit of {whose} recorded in "
                                f"env.json (swept outside a git checkout?); order by time instead (--by time)")
        when = _when(commit_time)
        key = (when if not pd.isna(when) else date, date)
        if any(pd.isna(k) for k in key):
            raise AnalysisError(f"run {facets.name} ({facets.directory}): neither a commit date nor a run date "
                                f"recorded, so it cannot be placed")
        dirty = "+dirty" if facets.dirty and commit_of is None else ""
        placed.append((key, labelled, _label(f"{commit[:8]}{dirty}", facets.name)))
    placed.sort(key=lambda item: item[0])
    return [(labelled, label) for _, labelled, label in placed]


def _points(rows: pd.DataFrame, facets: RunFacets, position: int, metric: Metric) -> pd.DataFrame:
    prepared = prepare(rows).drop_duplicates("case_id", keep="last")
    low, high = metric.band(prepared)
    return pd.DataFrame({
        "device": prepared["device_name"].astype("string").fillna(facets.device),
        "case_id": prepared["case_id"].astype(str), "name": [curve_name(r) for _, r in prepared.iterrows()],
        "tokens": prepared["tokens"], "run": facets.name, "position": position,
        "value": prepared[metric.column].astype("Float64"), "low": low.astype("Float64"),
        "high": high.astype("Float64"), "status": prepared["status"].fillna("?").astype(str),
        "ok": prepared["ok"], "flags": prepared["flags"],
    })


def history(runs: Sequence[LabelledRun], metric: Metric, threshold_pct: float = 5.0, by: str = "time",
            commit_of: str | None = None) -> History:
    """Every case's value over the ordered runs, per device model, changes judged as in the module docstring."""
    check_threshold(threshold_pct)
    ordered = order_runs(runs, by, commit_of)
    parts = []
    latest: dict[str, dict[str, int]] = {}  # device -> case_id -> position of the run that last measured it
    frames: dict[tuple[int, str], pd.DataFrame] = {}  # (position, device) -> that run's rows on that device
    for position, (labelled, _) in enumerate(ordered):
        rows = labelled.run.frame
        devices = rows["device_name"].astype("string").fillna(labelled.facets.device)
        for device in devices.unique():
            mine = rows[devices == device]
            frames[(position, device)] = mine
            points = _points(mine, labelled.facets, position, metric).set_index("case_id", drop=False)
            seen = latest.setdefault(device, {})
            earlier = {case: seen[case] for case in points.index if case in seen}
            judged = []
            for before in sorted(set(earlier.values())):
                found = compare_runs(frames[(before, device)], mine, metric, threshold_pct).cases
                cases = [case for case, where in earlier.items() if where == before]
                judged.append(found.set_index("case_id").loc[cases, ["verdict", "reason", "ratio"]])
            if judged:
                points = points.join(pd.concat(judged))
            seen.update({case: position for case in points.index})
            parts.append(points.reset_index(drop=True))
    found = pd.concat(parts, ignore_index=True)
    for column in ("verdict", "reason"):
        found[column] = (found[column] if column in found else pd.Series(pd.NA, index=found.index)).astype("string")
    found["ratio"] = (found["ratio"] if "ratio" in found else pd.Series(pd.NA, index=found.index)).astype("Float64")
    return History([labelled.facets for labelled, _ in ordered], [label for _, label in ordered],
                   found.sort_values(["device", "name", "tokens", "position"], kind="stable").reset_index(drop=True),
                   metric, threshold_pct, by)
