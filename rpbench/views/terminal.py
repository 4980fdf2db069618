"""Terminal tables (rich): the report of a run, one result row and the --max-batch search.

`rpbench report` leads with the metric grid (`terminal_grid`), then the scaling table and one line per kind of
flag; the long table of cases is there on request (`--cases`). Builds renderables and prints nothing; every table
is folded to the width it is given (`fold`) instead of wrapping its cells. Every cell is a `Text`, never rich
markup: labels, knobs, notes and paths may contain brackets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from ..analysis import SCALING_QUANTITIES, Metric, RunAnalysis, best_flags
from ..analysis.scaling import MIN_FIT_SIZES
from ..core.drift import Drift, drift_sentence
from .fold import Column, fold_tables
from .format import (MISSING, SPEEDUP_NOTE, curve_fits, fmt_exponent, fmt_int, fmt_number, fmt_status,
                     interval_methods, left_out_text, measured_cells)
from .terminal_grid import BEST_STYLE, FLAG_MARKS, FLAG_STYLE, flag_lines, grids_view


# ---- the machine's drift: one line at the top of `rpbench report` and at the end of `rpbench sweep` ----


def drift_line(drift: Drift | None) -> Text:
    """How far the machine itself drifted between rounds (its reference kernel), or that the run cannot say."""
    return Text(drift_sentence(drift), style="bold" if drift is not None else "yellow")


# ---- the report's tables ----


@dataclass
class TerminalReport:
    """Everything `rpbench report` prints, kept apart from printing so tests and other views can reuse it: the
    grids with their legend, the scaling table (the short one, or with --cases every quantity), the case table
    (only with --cases) and the flag lines."""

    grids: list[RenderableType]
    scaling: list[RenderableType]
    cases: list[RenderableType] = field(default_factory=list)
    flags: list[Text] = field(default_factory=list)
    header: list[RenderableType] = field(default_factory=list)  # lines above the grids (a run-wide note)

    def parts(self) -> list[RenderableType]:
        """In the order they are printed: the header lines, the grids, the case table (with --cases), scaling, the
        flag lines."""
        return [*self.header, *self.grids, *self.cases, *self.scaling, *self.flags]


def _cell(text: Any, best: bool = False) -> Text:
    """Plain text (never rich markup), green when best."""
    return Text(str(text), style=BEST_STYLE if best else "")


def cases_table(summary: pd.DataFrame, baseline: str | None, metric: Metric, width: int) -> list[RenderableType]:
    """One line per case (best value per column among cases of the same size in green, failed cases dimmed), folded
    to `width`, then the reasons of every flagged case, one line each."""
    flags = best_flags(summary)
    show_resolution = bool(summary["resolution"].notna().any())
    show_peak = bool((summary["tflops_s"].notna() & (summary["device"] == "cuda")).any())  # no CPU peaks
    show_ceiling = bool(summary["pct_ceiling"].notna().any() or summary["pct_ceiling_broken"].any())
    columns = ["latency_ms_median", "spread", "throughput_img_s", "peak_mem_mb", "flops", "tflops_s"]
    columns += ["pct_peak"] * show_peak + ["pct_ceiling"] * show_ceiling + ["speedup"] * (baseline is not None)
    headers = {"latency_ms_median": "median ms", "spread": "p20–p80 ms", "throughput_img_s": "img/s",
               "peak_mem_mb": "peak MiB", "flops": "FLOPs", "tflops_s": "TFLOP/s", "pct_peak": "% of datasheet peak",
               "pct_ceiling": "% of measured ceiling", "speedup": f"{metric.label} vs {baseline} [95 % CI]"}
    texts = {index: measured_cells(row) for index, row in summary.iterrows() if row["ok"]}
    keys = [Column("setting", [_cell(v) for v in summary["context"]])] if (summary["context"] != "").any() else []
    keys += [Column("mechanism", [_cell(v) for v in summary["series"]]),
             Column("N", [_cell(fmt_int(v)) for v in summary["tokens"]], justify="right")]
    if show_resolution:
        keys.append(Column("res px", [_cell(fmt_int(v)) for v in summary["resolution"]], justify="right"))
    rest = [Column(headers[column], [_cell(texts[i][column], bool(flags.at[i, column]) if column in flags else False)
                                     if i in texts else _cell(MISSING) for i in summary.index], justify="right")
            for column in columns]
    marks = ["".join(FLAG_MARKS[k] for k in str(kinds).split(",") if k) for kinds in summary["flag_kinds"]]
    if any(marks):
        rest.append(Column("flags", [Text(m, style=FLAG_STYLE) for m in marks]))
    rest.append(Column("status", [_cell(row["status"] if row["ok"] else fmt_status(row))
                                  for _, row in summary.iterrows()], wrap=True))
    styles = ["" if ok else "dim" for ok in summary["ok"]]
    tables: list[RenderableType] = fold_tables(keys, rest, width, title="Cases", row_styles=styles)
    for _, row in summary[summary["flagged"]].iterrows():
        tables.append(Text(f"  {row['series']} N={fmt_int(row['tokens'])}"
                           + (f" ({row['context']})" if row["context"] else "") + f": {row['flags']}",
                           style=FLAG_STYLE))
    if baseline is not None:
        tables.append(Text(SPEEDUP_NOTE, style="dim"))
    return tables


def scaling_table(exponents: pd.DataFrame, crossings: pd.DataFrame, baseline: str | None, metric: Metric,
                  width: int, full: bool = True) -> list[RenderableType]:
    """Fitted exponents (95 % CI, points, R²) per curve and where each curve overtakes the baseline. `full`: every
    quantity and the interval method; else only the metric's own exponent (latency for throughput), and none
    at all when no curve has the MIN_FIT_SIZES sizes a fit needs (a line says so instead)."""
    quantities = list(SCALING_QUANTITIES) if full else ["memory" if metric.name == "memory" else "latency"]
    curves = curve_fits(exponents, crossings, baseline, metric)
    if not curves:
        return [Text("Scaling with N: no curve has 2 or more measured sizes.", style="dim")]
    fitted = any(not pd.isna(fit["exponent"]) for curve in curves for fit in curve.fits.values())
    notes: list[RenderableType] = []
    if not full and not fitted:
        quantities = []
        most = max((int(fit["n_points"]) for curve in curves for fit in curve.fits.values()), default=0)
        notes.append(Text(f"No exponent: a curve needs {MIN_FIT_SIZES} measured sizes or more to fit one "
                          f"(here at most {most}).", style="dim"))
    rest = []
    for quantity in quantities:
        shown = []
        for curve in curves:
            fit = curve.fits.get(quantity)
            text = MISSING if fit is None else fmt_exponent(fit) if pd.isna(fit["exponent"]) else \
                f"{fmt_exponent(fit)} n={fit['n_points']}" + (f" R²={fit['r2']:.3f}" if full else "")
            shown.append(_cell(text + ("" if fit is None else left_out_text(fit))))
        rest.append(Column(f"k {quantity}", shown, justify="right"))
    if full:
        rest.append(Column("CI of k", [_cell(interval_methods(curve.fits)) for curve in curves]))
    if baseline is not None:
        rest.append(Column(f"crossover vs {baseline} ({metric.label})", [_cell(curve.crossover) for curve in curves],
                           wrap=True))
    title = "Scaling with N: y ∝ N^k, k [95 % CI]" if quantities else "Scaling with N"
    if not rest:
        return [Text(title, style="bold"), *notes]
    return [*fold_tables([Column("curve", [_cell(curve.line) for curve in curves])], rest, width, title=title),
            *notes]


def terminal_report(run: RunAnalysis, width: int = 100, cases: bool = False,
                    drift: Drift | None = None) -> TerminalReport:
    """What `rpbench report` prints for an analysed run, fitted to `width` columns; `cases`: the case table and
    every fitted quantity too; `drift`: the run's (see `drift_line`), its line heads the report."""
    return TerminalReport(
        header=[drift_line(drift), *run_notes(run.env)],
        grids=grids_view(run, width),
        scaling=scaling_table(run.exponents, run.crossings, run.baseline, run.metric, width, full=cases),
        cases=cases_table(run.summary, run.baseline, run.metric, width) if cases else [],
        flags=flag_lines(run.summary),
    )


# Set by rpbench's own tests (machine.interference.ASSUME_QUIET_ENV): other processes' load was never read.
ASSUME_QUIET_NOTE = ("measured with RPBENCH_ASSUME_QUIET set (rpbench's test setting): other processes' load was "
                     "not read, so no row of this run could be flagged disturbed")


def run_notes(env: Mapping[str, Any]) -> list[RenderableType]:
    """Run-wide lines above the grids, from env.json."""
    return [Text(f"note: {ASSUME_QUIET_NOTE}", style="yellow")] if env.get("assume_quiet") else []


def row_table(row: Mapping[str, Any]) -> Table:
    """One result row as a two-column table (non-empty fields only)."""
    table = Table("field", "value", title=Text(f"{row.get('label') or row.get('attention')}: {row.get('status')}"))
    for key, value in row.items():
        if value is None or value == "" or (isinstance(value, float) and value != value):
            continue
        table.add_row(_cell(key), _cell(fmt_number(value, 4) if isinstance(value, float) else value))
    return table


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
