"""The same cases in two runs, matched by case_id, with regressions told apart from noise.

A change counts only when it exceeds the relative threshold AND the two rows' 95 % intervals do not overlap
(latency_ms_ci_low/high, which hold the drift between passes; the p20–p80 bands where a row has none: older runs,
the memory metric), so a noisy case, or a machine that drifted between the runs, cannot fail a gate on its own. A
case flagged in either run (disturbed, unstable, throttled, implausible: see `flags`) gets the verdict "flagged",
never "regression". `run_differences` says what
else differs between the runs (device, torch, timer, rounds): numbers from different setups are not comparable.

A common shift. On a cloud VM the machine's level moves between runs minutes apart (two idle quick runs of the same
code, one minute apart: every case 11–57 % slower in the second, median 31 %), further than any interval from
within one run can hold. `common_shift` is the median log ratio B/A over the shared cases that are usable in both
(at least MIN_SHIFT_CASES). With `remove_shift` every B value and interval is divided by it before judging, so a
case counts only when it moved beyond what all cases moved together; the shift itself is reported either way.
Whether it is removed is the caller's choice (`rpbench compare --shift`: by default only when both runs measured
the same code in the same environment, where a common shift can only be the machine's).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..core.case import LEGACY_TIMING, Timing
from ..core.errors import AnalysisError
from .metrics import Metric
from .table import prepare

MIN_SHIFT_CASES = 8  # fewer shared usable cases say too little about what moved them all
VERDICTS = ("regression", "improvement", "flagged", "unchanged", "only in A", "only in B")
INTERVAL = "95 % intervals"
BAND = "p20–p80 spread"


@dataclass
class Comparison:
    """One row per case_id of either run, with its verdict and the reason for it."""

    cases: pd.DataFrame
    metric: Metric
    threshold_pct: float
    spread: str = BAND  # what a change had to clear beside the threshold
    shift: float | None = None  # the common shift, B / A over the shared usable cases (None: too few)
    shift_cases: int = 0
    shift_removed: bool = False  # B was divided by `shift` before judging

    def counts(self) -> dict[str, int]:
        found = self.cases["verdict"].value_counts()
        return {verdict: int(found.get(verdict, 0)) for verdict in VERDICTS}

    @property
    def shared(self) -> int:
        """Cases present in both runs."""
        counts = self.counts()
        return len(self.cases) - counts["only in A"] - counts["only in B"]

    def summary_line(self) -> str:
        counts = self.counts()
        if not self.shared:
            return (f"no shared cases: A and B have no case_id in common ({counts['only in A']} only in A, "
                    f"{counts['only in B']} only in B), so nothing was compared")
        regressions = counts["regression"]
        improvements = counts["improvement"]
        return (
            f"{regressions} regression{'s' * (regressions != 1)}, {improvements} improvement{'s' * (improvements != 1)}, "
            f"{counts['unchanged']} unchanged, {counts['flagged']} flagged (left out), {counts['only in A']} only in A, "
            f"{counts['only in B']} only in B ({self.metric.label}, threshold {self.threshold_pct:g} % beyond the "
            f"{self.spread})"
        )

    def shift_line(self) -> str | None:
        """What all shared cases did together, and whether the verdicts allow for it; None when too few cases."""
        if self.shift is None:
            return None
        change = 100 * (self.shift - 1)
        return (f"common shift: the {self.shift_cases} shared cases usable in both runs moved together by "
                f"{change:+.1f} % (median of B/A); "
                + ("verdicts are beyond it (the same code in the same environment: the machine's level moved)"
                   if self.shift_removed else "verdicts include it (--shift remove judges beyond it)"))

    def to_json(self) -> dict[str, Any]:
        cases = self.cases.astype(object).where(self.cases.notna(), None)
        return {"metric": self.metric.name, "threshold_pct": self.threshold_pct, "shared": self.shared,
                "counts": self.counts(), "shift": self.shift, "shift_cases": self.shift_cases,
                "shift_removed": self.shift_removed, "cases": cases.to_dict(orient="records")}


def _spread(prepared: pd.DataFrame, metric: Metric) -> tuple[pd.Series, pd.Series, pd.Series]:
    """(low, high, which) per row: its 95 % interval where it has one (latency, throughput), else p20–p80."""
    low, high, has = metric.interval(prepared)
    return low, high, pd.Series(BAND, index=prepared.index).where(~has, INTERVAL)


def _side(frame: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    prepared = prepare(frame)
    low, high, which = _spread(prepared, metric)
    side = pd.DataFrame(
        {
            "case_id": prepared["case_id"].astype(str),
            "series": prepared["line"],
            "tokens": prepared["tokens"],
            "status": prepared["status"].fillna("?").astype(str),
            "ok": prepared["ok"],
            "flags": prepared["flags"],
            "value": prepared[metric.column].astype("Float64"),
            "low": low.astype("Float64").fillna(prepared[metric.column].astype("Float64")),
            "high": high.astype("Float64").fillna(prepared[metric.column].astype("Float64")),
            "spread": which,
        }
    )
    return side.drop_duplicates("case_id", keep="last").set_index("case_id")


def _judge(a: pd.Series, b: pd.Series, metric: Metric, threshold_pct: float) -> tuple[str, str]:
    if a["status"] != b["status"] or not a["ok"]:  # ok → inaccurate is a regression too
        if a["status"] == "ok":
            return "regression", f"status ok → {b['status']}"
        if b["status"] == "ok":
            return "improvement", f"status {a['status']} → ok"
        return "unchanged", f"status {a['status']} → {b['status']}"
    flagged = [f"{side}: {row['flags']}" for side, row in (("A", a), ("B", b)) if pd.notna(row["flags"])]
    if flagged:
        return "flagged", "; ".join(flagged)
    if pd.isna(a["value"]) or pd.isna(b["value"]) or a["value"] <= 0:
        return "unchanged", f"no {metric.label} value"
    change = 100 * (b["value"] / a["value"] - 1)
    if abs(change) <= threshold_pct:
        return "unchanged", f"{change:+.1f} %, within threshold"
    went_up = change > 0
    if not (b["low"] > a["high"] if went_up else b["high"] < a["low"]):
        spreads = INTERVAL if a["spread"] == b["spread"] == INTERVAL else BAND
        return "unchanged", f"{change:+.1f} %, within {spreads}"
    return ("improvement" if went_up == metric.higher_is_better else "regression"), f"{change:+.1f} %"


MAX_THRESHOLD_PCT = 1e6


def check_threshold(threshold_pct: float) -> None:
    if not 0 <= threshold_pct <= MAX_THRESHOLD_PCT:  # NaN fails too
        raise AnalysisError(f"threshold must be between 0 and {MAX_THRESHOLD_PCT:g} %, got {threshold_pct:g}")


def common_shift(side_a: pd.DataFrame, side_b: pd.DataFrame) -> tuple[float | None, int]:
    """(median B/A, cases) over the shared cases ok and unflagged in both with a positive value; None below
    MIN_SHIFT_CASES."""
    shared = side_a.index.intersection(side_b.index)
    a, b = side_a.loc[shared], side_b.loc[shared]
    usable = (a["ok"].to_numpy() & b["ok"].to_numpy() & a["flags"].isna().to_numpy() & b["flags"].isna().to_numpy()
              & (a["value"].astype(float) > 0).to_numpy() & (b["value"].astype(float) > 0).to_numpy())
    if usable.sum() < MIN_SHIFT_CASES:
        return None, int(usable.sum())
    ratios = b["value"].astype(float).to_numpy()[usable] / a["value"].astype(float).to_numpy()[usable]
    return float(np.exp(np.median(np.log(ratios)))), int(usable.sum())


def compare_runs(frame_a: pd.DataFrame, frame_b: pd.DataFrame, metric: Metric, threshold_pct: float,
                 remove_shift: bool = False) -> Comparison:
    """Judge every case_id present in either run (`remove_shift`: beyond their common shift, see the module)."""
    check_threshold(threshold_pct)
    side_a, side_b = _side(frame_a, metric), _side(frame_b, metric)
    shift, shift_cases = common_shift(side_a, side_b)
    removed = remove_shift and shift is not None
    if removed:
        side_b = side_b.copy()
        for column in ("value", "low", "high"):
            side_b[column] = side_b[column] / shift
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
            "value_b": b["value"] * (shift if removed else 1.0) if b is not None else pd.NA,
        }
        if a is None or b is None:
            record["verdict"], record["reason"] = ("only in B", "") if a is None else ("only in A", "")
        else:
            record["verdict"], record["reason"] = _judge(a, b, metric, threshold_pct)
            if removed and record["reason"][:1] in "+-":
                record["reason"] += " beyond the common shift"
        records.append(record)
    cases = pd.DataFrame.from_records(records, columns=["case_id", "series", "tokens", "status_a", "status_b",
                                                        "value_a", "value_b", "verdict", "reason"])
    cases["value_a"] = cases["value_a"].astype("Float64")
    cases["value_b"] = cases["value_b"].astype("Float64")
    cases["ratio"] = cases["value_b"] / cases["value_a"]
    order = {verdict: rank for rank, verdict in enumerate(VERDICTS)}
    cases = cases.sort_values(["verdict", "series", "tokens"], key=lambda s: s.map(order) if s.name == "verdict" else s)
    used = set(side_a["spread"]) | set(side_b["spread"])
    spread = (INTERVAL if used == {INTERVAL} else BAND if INTERVAL not in used
              else f"{INTERVAL} ({BAND} where a row has none)")
    return Comparison(cases.reset_index(drop=True), metric, threshold_pct, spread, shift, shift_cases, removed)


def _timing_rounds(frame: pd.DataFrame) -> set[int]:
    found = set()
    for text in frame.get("timing", pd.Series(dtype="string")).dropna():
        try:  # same_json fills what older rows lack (one round)
            found.add(int(json.loads(Timing.same_json(text))["rounds"]))
        except (ValueError, TypeError, KeyError):
            continue
    return found or {LEGACY_TIMING["rounds"]}


def _described(values: set[Any]) -> str:
    return ", ".join(sorted(map(str, values))) or "not recorded"


def same_code(env_a: Mapping[str, Any], env_b: Mapping[str, Any]) -> bool:
    """Whether two runs measured the same code: the same recorded git commit, neither checkout dirty, the same
    torch (so that a shift common to every case can only be the machine's)."""
    commit_a, commit_b = env_a.get("git_commit"), env_b.get("git_commit")
    return (bool(commit_a) and commit_a == commit_b and not env_a.get("git_dirty") and not env_b.get("git_dirty")
            and env_a.get("torch") == env_b.get("torch"))


def run_differences(frame_a: pd.DataFrame, env_a: Mapping[str, Any], frame_b: pd.DataFrame,
                    env_b: Mapping[str, Any]) -> list[str]:
    """What differs between two runs that makes their numbers incomparable: device, torch version, timer, rounds."""
    facts = {
        "device": lambda frame, env: set(frame["device_name"].dropna().astype(str)),
        "torch": lambda frame, env: {str(env["torch"])} if env.get("torch") else set(),
        "timer": lambda frame, env: set(frame["timer"].dropna().astype(str)),
        "rounds": lambda frame, env: _timing_rounds(frame),
    }
    found = []
    for name, read in facts.items():
        a, b = read(frame_a, env_a), read(frame_b, env_b)
        if a and b and a != b:
            found.append(f"{name}: A {_described(a)}, B {_described(b)}")
    return found
