"""How numbers and verdicts read, the same in the terminal, in report.html and in exports. Plain strings only."""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from ..analysis.bootstrap import AGREEMENT
from ..analysis.metrics import Metric

MISSING = "—"
# Marks a speedup whose interval is the p20–p80 pairing, not one from the samples (the case or its baseline has none).
BAND_MARK = "†"
SPEEDUP_NOTE = (f"Speedups are round-paired: case over baseline per round of the sweep (both timed in that round), "
                f"combined across rounds with a 95 % t interval; where a pair of rounds is missing, the ratio of "
                f"medians with a 95 % interval from both cases' passes (t over the pass medians; a case with a "
                f"single pass: its samples, widened by the machine's measured drift where the run has one); {BAND_MARK} the p20–p80 ends paired least "
                f"favourably (no samples). The interval column names the method.")
# How each interval method reads in tables (the `interval` and `CI of k` columns): short, the columns are narrow.
CI_NAMES = {"paired-t": "paired", "pass-t": "passes", "pass-drift": "one pass+drift", "within-pass": "one pass",
            "t": "t", "p20-p80": "p20–p80", "bootstrap": "bootstrap"}


def fmt_number(value: Any, digits: int = 3) -> str:
    """Three significant digits, thousands separators, "—" for missing."""
    if value is None or pd.isna(value):
        return MISSING
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def fmt_int(value: Any) -> str:
    return MISSING if value is None or pd.isna(value) else f"{int(value):,}"


def fmt_flops(value: Any) -> str:
    """FLOPs with an SI prefix (G, T, P): counts span many decades across a sweep."""
    if value is None or pd.isna(value):
        return MISSING
    value = float(value)
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{fmt_number(value / scale)} {prefix}"
    return fmt_number(value)


def fmt_exponent(row: Mapping[str, Any]) -> str:
    """`2.00 [1.98, 2.02]`, or `n/a (3 sizes)` for a curve measured at too few sizes to fit."""
    if pd.isna(row["exponent"]):
        return f"n/a ({int(row['n_points'])} sizes)"
    return f"{row['exponent']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def fmt_speedup(row: Mapping[str, Any]) -> str:
    """`2.00× [1.90–2.10]`: the speedup over the baseline and its 95 % interval, marked BAND_MARK when the interval
    is the p20–p80 pairing; `2.00×` alone when the interval is a point (peak memory has no spread)."""
    if pd.isna(row["speedup"]):
        return MISSING
    low, high = row["speedup_low"], row["speedup_high"]
    if pd.isna(low) or pd.isna(high) or f"{low:.2f}" == f"{high:.2f}" == f"{row['speedup']:.2f}":
        return f"{row['speedup']:.2f}×"
    mark = BAND_MARK if row.get("speedup_method") == "p20-p80" else ""
    return f"{row['speedup']:.2f}× [{low:.2f}–{high:.2f}]{mark}"


def interval_methods(fits: Mapping[str, Mapping[str, Any]]) -> str:
    """Which interval each fitted quantity of a curve has, e.g. `latency: bootstrap; memory, flops: t`."""
    by_method: dict[str, list[str]] = {}
    for quantity, fit in fits.items():
        method = fit.get("ci_method")
        if isinstance(method, str):
            by_method.setdefault(CI_NAMES.get(method, method), []).append(quantity)
    return "; ".join(f"{', '.join(names)}: {method}" for method, names in by_method.items()) or MISSING


def md_cell(value: object) -> str:
    """Text for a markdown table cell: HTML as entities, markdown's link/emphasis/code characters and the cell
    separator escaped, one line."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`*_|]|(?<=\])\()", r"\\\1", text)  # `](` escaped: never a link


def fmt_percent(value: Any, missing: str = MISSING) -> str:
    return missing if value is None or pd.isna(value) else f"{value:.1f}%"


def fmt_status(row: Mapping[str, Any]) -> str:
    """`status` or `status: notes` of a case that did not produce a measurement."""
    note = "" if pd.isna(row["notes"]) else f": {row['notes']}"
    return f"{row['status']}{note}"


def describe_crossover(status: str, tokens: float | None, resolution: float | None, metric: Metric,
                       resampled: Mapping[str, Any] | None = None) -> str:
    """Human wording of a crossover row; with `resampled` (the row's tokens_low/high, agree, other) the 95 %
    interval of N, or, when the bootstrap resamples disagree on the status, that they do (no interval then: a
    tight interval over the resamples that happen to cross would overstate what is known)."""
    verb = {"latency": "faster", "throughput": "higher throughput", "memory": "less memory"}[metric.name]
    words = {
        "always": f"always {verb} in range",
        "never": f"never {verb} in range",
        "mixed": f"{verb} only at some N, not at the largest",
        "insufficient": "too few shared sizes",
    }
    extra = {} if resampled is None else resampled
    if status == "crossover" and tokens is not None:
        where = f"N ≈ {tokens:,.0f}"
        low, high = extra.get("tokens_low"), extra.get("tokens_high")
        if low is not None and high is not None and not pd.isna(low) and not pd.isna(high):
            where += f" [{low:,.0f}–{high:,.0f}]"
        if resolution is not None and not pd.isna(resolution):
            where += f" (≈ {resolution:,.0f} px)"
        text = f"{verb} from {where}"
    else:
        text = words[status]
    agree, other = extra.get("agree"), extra.get("other")
    if agree is not None and not pd.isna(agree) and agree < AGREEMENT:
        rest = "a crossover" if other == "crossover" else words.get(str(other), str(other))
        text += f"; resamples disagree: {agree:.0%} agree, the rest mostly {rest}"
    return text


# What a share above 100 % shows instead of a number (see analysis.peaks.efficiency).
BROKEN_CEILING = "broken ceiling (> 100 %)"
BROKEN_PEAK = "above datasheet peak: check the FLOPs"


def flag_text(row: Mapping[str, Any]) -> str:
    """The flags of a row for a table cell: its reasons and a launch-bound mark, else "" (noisy is marked in the
    spread instead)."""
    flags = row.get("flags")
    parts = [] if flags is None or (not isinstance(flags, str) and pd.isna(flags)) else [str(flags)]
    if is_set(row, "launch_bound"):
        parts.append("launch-bound (eager timing)")
    return "; ".join(parts)


def left_out_text(fit: Mapping[str, Any]) -> str:
    """' (2 flagged left out)' for a fit or crossover that left rows out, else ''."""
    count = fit.get("left_out")
    return f" ({int(count)} flagged left out)" if count is not None and not pd.isna(count) and count else ""


def is_set(row: Mapping[str, Any], key: str) -> bool:
    """A boolean column of a row that is present and True (missing and NA count as False)."""
    value = row.get(key)
    return value is not None and not pd.isna(value) and bool(value)


def measured_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """The display text of an ok case's measured columns, keyed by the column `analysis.best_flags` knows them by
    (plus `spread`, `pct_peak`, `pct_ceiling`). Every table of cases shows a subset of these."""
    spread = f"{fmt_number(row['latency_ms_p20'])}–{fmt_number(row['latency_ms_p80'])}"
    if is_set(row, "noisy"):
        spread += " noisy"
    return {
        "latency_ms_median": fmt_number(row["latency_ms_median"]),
        "spread": spread,
        "throughput_img_s": fmt_number(row["throughput_img_s"]),
        "peak_mem_mb": fmt_number(row["peak_mem_mb"]),
        "flops": fmt_flops(row["flops"]),
        "tflops_s": fmt_number(row["tflops_s"]),
        "pct_peak": BROKEN_PEAK if is_set(row, "pct_peak_broken") else
        fmt_percent(row["pct_peak"], "unknown" if pd.notna(row["tflops_s"]) else MISSING),
        "pct_ceiling": BROKEN_CEILING if is_set(row, "pct_ceiling_broken") else fmt_percent(row["pct_ceiling"]),
        "speedup": fmt_speedup(row),
    }


@dataclass(frozen=True)
class CurveFits:
    """One curve of the scaling table: its fits per quantity (rows of `analysis.scaling_exponents`) and how it
    crosses the baseline, in words (None without a baseline)."""

    line: str
    fits: dict[str, Mapping[str, Any]]
    crossover: str | None


def curve_fits(exponents: pd.DataFrame, crossings: pd.DataFrame, baseline: str | None, metric: Metric) -> list[CurveFits]:
    """Every curve with a fit or a crossover, in the order the analysis found them."""
    curves = exponents[["_context", "_variant", "line"]]
    if baseline is not None:
        curves = pd.concat([curves, crossings.reindex(columns=["_context", "_variant", "line"])])
    found = []
    for _, curve in curves.drop_duplicates(["_context", "_variant"]).iterrows():
        key = (curve["_context"], curve["_variant"])
        mine = exponents[(exponents["_context"] == key[0]) & (exponents["_variant"] == key[1])]
        fits = {quantity: rows.iloc[0] for quantity, rows in mine.groupby("quantity", sort=False)}
        crossover = None
        if baseline is not None:
            crossed = crossings[(crossings["_context"] == key[0]) & (crossings["_variant"] == key[1])]
            crossover = "; ".join(describe_crossover(c["status"], c["tokens"], c["resolution"], metric, c)
                                  + left_out_text(c) for _, c in crossed.iterrows()) or MISSING
        found.append(CurveFits(curve["line"], fits, crossover))
    return found
