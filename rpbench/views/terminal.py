"""Terminal tables (rich): the report of a run, one result row, the end-of-sweep grid and the --max-batch search.

Builds renderables and prints nothing. Every cell is a `Text`, never rich markup: labels, knobs, notes and paths
may contain brackets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd
from rich.table import Table
from rich.text import Text

from ..analysis import SCALING_QUANTITIES, Metric, RunAnalysis, best_flags, flag_summary
from ..core.drift import Drift, drift_sentence
from .format import (MISSING, SPEEDUP_NOTE, curve_fits, flag_text, fmt_exponent, fmt_int, fmt_number, fmt_status,
                     interval_methods, left_out_text, measured_cells)

BEST_STYLE = "bold green"
FLAG_STYLE = "bold yellow"


# ---- the machine's drift: one line at the top of `rpbench report` and at the end of `rpbench sweep` ----


def drift_line(drift: Drift | None) -> Text:
    """How far the machine itself drifted between rounds (its reference kernel), or that the run cannot say."""
    return Text(drift_sentence(drift), style="bold" if drift is not None else "yellow")


# ---- the report's tables ----


@dataclass
class TerminalReport:
    """Everything `rpbench report` prints, kept apart from printing so tests and other views can reuse it."""

    cases: Table
    scaling: Table


def _cell(text: Any, best: bool = False) -> Text:
    """Plain text (never rich markup), green when best."""
    return Text(str(text), style=BEST_STYLE if best else "")


def cases_table(summary: pd.DataFrame, baseline: str | None, metric: Metric) -> Table:
    """One line per case; best value per column among cases of the same size in green, failed cases dimmed."""
    flags = best_flags(summary)
    show_context = bool((summary["context"] != "").any())
    show_resolution = bool(summary["resolution"].notna().any())
    show_peak = bool((summary["tflops_s"].notna() & (summary["device"] == "cuda")).any())  # no CPU peaks
    show_ceiling = bool(summary["pct_ceiling"].notna().any() or summary["pct_ceiling_broken"].any())
    columns = ["latency_ms_median", "spread", "throughput_img_s", "peak_mem_mb", "flops", "tflops_s"]
    columns += ["pct_peak"] * show_peak + ["pct_ceiling"] * show_ceiling + ["speedup"] * (baseline is not None)
    table = Table(title="Cases", title_justify="left", header_style="bold")
    if show_context:
        table.add_column("setting")
    table.add_column("mechanism")
    table.add_column("N", justify="right")
    if show_resolution:
        table.add_column("res px", justify="right")
    headers = {"latency_ms_median": "median ms", "spread": "p20–p80 ms", "throughput_img_s": "img/s",
               "peak_mem_mb": "peak MiB", "flops": "FLOPs", "tflops_s": "TFLOP/s", "pct_peak": "% of datasheet peak",
               "pct_ceiling": "% of measured ceiling", "speedup": f"{metric.label} vs {baseline} [95 % CI]"}
    for column in columns:
        table.add_column(Text(headers[column]), justify="right")
    table.add_column("status")
    show_flags = bool(summary["flagged"].any() or summary["launch_bound"].fillna(False).astype(bool).any())
    if show_flags:
        table.add_column("flags (left out of fits, crossovers, speedups)")
    for column in table.columns:
        column.overflow = "fold"
    for index, row in summary.iterrows():
        cells: list[Any] = [_cell(row["context"])] if show_context else []
        cells += [_cell(row["series"]), _cell(fmt_int(row["tokens"]))]
        if show_resolution:
            cells.append(_cell(fmt_int(row["resolution"])))
        if row["ok"]:
            best, texts = flags.loc[index], measured_cells(row)
            cells += [_cell(texts[column], column in best.index and best[column])
                      for column in columns]
            cells.append(_cell(row["status"]))
            if show_flags:
                cells.append(Text(flag_text(row), style=FLAG_STYLE))
            table.add_row(*cells)
        else:
            cells += [_cell(MISSING)] * len(columns) + [_cell(fmt_status(row))] + [_cell("")] * show_flags
            table.add_row(*cells, style="dim")
    table.caption = flag_summary(summary) + (f"\n{SPEEDUP_NOTE}" if baseline is not None else "")
    return table


def scaling_table(exponents: pd.DataFrame, crossings: pd.DataFrame, baseline: str | None, metric: Metric) -> Table:
    """Fitted exponents (95 % CI, points, R²) per curve and where each curve overtakes the baseline."""
    table = Table(title="Scaling with N: y ∝ N^k, k [95 % CI]", title_justify="left", header_style="bold")
    table.add_column("curve")
    for quantity in SCALING_QUANTITIES:
        table.add_column(f"k {quantity}", justify="right")
    table.add_column("CI of k")
    if baseline is not None:
        table.add_column(Text(f"crossover vs {baseline} ({metric.label})"))
    for column in table.columns:
        column.overflow = "fold"
    for curve in curve_fits(exponents, crossings, baseline, metric):
        cells = [_cell(curve.line)]
        for quantity in SCALING_QUANTITIES:
            fit = curve.fits.get(quantity)
            shown = MISSING if fit is None else fmt_exponent(fit) if pd.isna(fit["exponent"]) else \
                f"{fmt_exponent(fit)} n={fit['n_points']} R²={fit['r2']:.3f}"
            cells.append(_cell(shown + ("" if fit is None else left_out_text(fit))))
        cells.append(_cell(interval_methods(curve.fits)))
        if curve.crossover is not None:
            cells.append(_cell(curve.crossover))
        table.add_row(*cells)
    if not table.row_count:
        table.caption = "No curve has 2 or more measured sizes."
    return table


def terminal_report(run: RunAnalysis) -> TerminalReport:
    """Both tables of `rpbench report` for an analysed run."""
    return TerminalReport(
        cases=cases_table(run.summary, run.baseline, run.metric),
        scaling=scaling_table(run.exponents, run.crossings, run.baseline, run.metric),
    )


def row_table(row: Mapping[str, Any]) -> Table:
    """One result row as a two-column table (non-empty fields only)."""
    table = Table("field", "value", title=Text(f"{row.get('label') or row.get('attention')}: {row.get('status')}"))
    for key, value in row.items():
        if value is None or value == "" or (isinstance(value, float) and value != value):
            continue
        table.add_row(_cell(key), _cell(fmt_number(value, 4) if isinstance(value, float) else value))
    return table


def latency_grid(frame: pd.DataFrame, title: str) -> Table:
    """Median latency per curve (rows, named as the reports name them) and size (columns); failures by status.

    `frame` is a prepared results table (`analysis.prepare`).
    """
    frame = frame.copy()
    grid = frame["height"].astype("string") + "x" + frame["width"].astype("string")
    frame["size"] = frame["resolution"].astype("string").fillna(grid)
    sizes = list(dict.fromkeys(frame.sort_values("tokens")["size"]))
    table = Table("curve", *sizes, title=Text(title))
    for (facet, line), rows in frame.groupby(["facet", "line"], sort=True):
        cells = {r["size"]: _grid_cell(r) for _, r in rows.iterrows()}
        table.add_row(_cell(f"{line} · {facet}" if facet else line), *(cells.get(size, "") for size in sizes))
    if frame["flagged"].any():
        table.caption = "* flagged (see the flags in `rpbench report`): not to be believed"
    return table


def _grid_cell(row: Mapping[str, Any]) -> Text:
    if not row["ok"]:
        return Text(row["status"], style="dim")
    if row["flagged"]:
        return Text(fmt_number(row["latency_ms_median"]) + "*", style=FLAG_STYLE)
    return _cell(fmt_number(row["latency_ms_median"]))


def max_batch_table(rows: list[Mapping[str, Any]], title: str) -> Table:
    """One line per batch tried by --max-batch."""
    table = Table("batch", "status", "median ms", "img/s", "peak MiB", title=Text(title))
    for row in rows:
        ok = row["status"] == "ok"
        table.add_row(_cell(row["batch"]), _cell(row["status"]),
                      _cell(f"{row['latency_ms_median']:.4g}" if ok else "-"),
                      _cell(f"{row['throughput_img_s']:.4g}" if ok else "-"),
                      _cell(f"{row['peak_mem_mb']:.4g}" if ok and row.get("peak_mem_mb") else "-"))
    return table
