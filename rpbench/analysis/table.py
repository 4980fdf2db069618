"""A results table made ready for analysis: the curve keys (context, variant, size), display names and facets,
and the baseline to compare against."""
from __future__ import annotations

import pandas as pd

from ..core.errors import AnalysisError
from ..core.schema import MEASURED_STATUSES
from .flags import flag_rows

DEFAULT_BASELINE = "dense"

# Columns that place a case on a size axis; never part of a curve's identity.
SIZE_KEYS = ("tokens", "height", "width", "resolution", "patch")
# Settings shared by the curves that may be compared with each other (a mechanism vs its baseline).
CONTEXT_KEYS = ("scope", "backbone", "dtype", "mode", "dim", "heads", "batch", "device", "device_name", "threads")
# What distinguishes one curve from another inside a context.
VARIANT_KEYS = ("mechanism", "attention", "layout", "knobs", "m")
# Context settings that get their own facet in plots instead of a longer line name.
FACET_KEYS = ("dtype", "mode")


def _key(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    parts = [frame[col].astype("string").fillna("") for col in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined.astype(str)


def _varying(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [col for col in columns if frame[col].astype("string").fillna("").nunique() > 1]


def _describe(row: pd.Series, columns: list[str]) -> str:
    return " · ".join(f"{col}={'' if pd.isna(row[col]) else row[col]}" for col in columns)


def _series_names(frame: pd.DataFrame) -> pd.Series:
    """The mechanism label, plus whichever variant fields differ between rows sharing that label."""
    names = frame["mechanism"].astype(str).copy()
    for mechanism, rows in frame.groupby("mechanism", sort=False):
        extra = _varying(rows, ("attention", "layout", "m"))
        # Knobs are named only when they tell apart rows the other fields do not (m usually is a knob).
        groups = [same for _, same in rows.groupby(_key(rows, tuple(extra)))] if extra else [rows]
        if any(_varying(same, ("knobs",)) for same in groups):
            extra.append("knobs")
        if extra:
            names.loc[rows.index] = [f"{mechanism} ({_describe(row, extra)})" for _, row in rows.iterrows()]
    return names


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns every view relies on: mechanism, series, context, flops, ok, the curve keys, the
    flags (`analysis.flags`) and `usable` (ok and not flagged: what fits, crossovers and speedups use)."""
    out = frame.copy()
    out["mechanism"] = out["label"].fillna(out["attention"]).fillna("?").astype(str)
    # The analytic figure where there is one (fwd+bwd: 3 x forward); the count only stands in without a formula
    # (FlopCounterMode counts a grouped convolution's weight gradient as a dense one's: fwdbwd counts of agent,
    # focused and litemla run several times too high).
    out["flops"] = out["flops_analytic"].fillna(out["flops_counted"]).astype("Float64")
    out["ok"] = out["status"].isin(MEASURED_STATUSES).fillna(False).astype(bool)  # timed: the numbers exist
    out["_context"] = _key(out, CONTEXT_KEYS)
    out["_variant"] = _key(out, VARIANT_KEYS)
    out["_size"] = _key(out, SIZE_KEYS)
    out["series"] = _series_names(out)
    varying = _varying(out, CONTEXT_KEYS)
    out["context"] = [_describe(row, varying) for _, row in out.iterrows()] if varying else ""
    facets = [col for col in varying if col in FACET_KEYS]
    others = [col for col in varying if col not in FACET_KEYS]
    out["facet"] = [_describe(row, facets) for _, row in out.iterrows()] if facets else ""
    out["setting"] = [_describe(row, others) for _, row in out.iterrows()] if others else ""
    out["line"] = [f"{s} · {o}" if o else s for s, o in zip(out["series"], out["setting"])]
    out = pd.concat([out, flag_rows(out)], axis=1)
    out["usable"] = out["ok"] & ~out["flagged"]
    return out


def resolve_baseline(frame: pd.DataFrame, requested: str | None) -> str | None:
    """The baseline label to compare against: the requested one (which must exist), else dense when present."""
    labels = sorted(set(frame["mechanism"]))
    if requested is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in labels else None
    if requested not in labels:
        raise AnalysisError(f"baseline {requested!r} is not in this run; its mechanisms are: {', '.join(labels)}")
    return requested
