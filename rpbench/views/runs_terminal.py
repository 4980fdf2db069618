"""Terminal tables of several runs: the run legend, the case matrix (each run's value and its speedup over the
first run), each run's scaling fits, and the history of every case over ordered runs.

Builds renderables and prints nothing; every cell is a `Text` (labels and paths may hold brackets).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from rich.table import Table
from rich.text import Text

from ..analysis import SCALING_QUANTITIES
from ..analysis.history import History
from ..analysis.matrix import RunMatrix
from ..analysis.runs import RunsAnalysis
from ..core.schema import MEASURED_STATUSES
from ..results.runs import RunFacets
from .format import MISSING, SPEEDUP_NOTE, curve_fits, fmt_exponent, fmt_int, fmt_number, fmt_speedup

VERDICT_STYLES = {"regression": "bold red", "improvement": "bold green", "flagged": "yellow"}
FLAG_MARK = "*"


def _text(value: object, style: str = "") -> Text:
    return Text("" if value is None else str(value), style=style)


def commit_text(facets: RunFacets) -> str:
    if not facets.commit:
        return "not recorded"
    return facets.commit[:12] + (" (uncommitted changes)" if facets.dirty else "")


def runs_table(runs: Sequence[RunFacets], title: str = "Runs") -> Table:
    """One line per run: its name and what tells it apart (device, host, torch, commit, timer, date, dir)."""
    table = Table(title=Text(title), title_justify="left", header_style="bold")
    for header in ("#", "run", "device", "host", "torch", "commit", "timer", "date", "dir"):
        table.add_column(Text(header), overflow="fold")
    for number, facets in enumerate(runs, 1):
        table.add_row(*(_text(v) for v in (number, facets.name, facets.device, facets.host, facets.torch,
                                           commit_text(facets), facets.timer, facets.date, facets.directory)))
    return table


def _value_cell(row: pd.Series) -> Text:
    if row["status"] not in MEASURED_STATUSES:
        return _text(row["status"], "dim")
    flagged = isinstance(row["flags"], str) and bool(row["flags"])
    return _text(fmt_number(row["value"]) + (FLAG_MARK if flagged else ""), "yellow" if flagged else "")


def _speedup_cell(row: pd.Series, verdicts: bool) -> Text:
    text = fmt_speedup(row)
    verdict = row.get("verdict")
    verdict = verdict if isinstance(verdict, str) else ""
    if verdicts and verdict in VERDICT_STYLES:
        return _text(f"{text} {verdict}", VERDICT_STYLES[verdict])
    return _text(text)


def matrix_table(matrix: RunMatrix, verdicts: bool = False) -> Table:
    """One line per case; a value column per run, then each later run's speedup over the first (> 1: better)."""
    first, metric = matrix.names[0], matrix.metric
    table = Table(title=Text(f"{metric.label.capitalize()} of every case, and speedup over {first} [95 % CI]"),
                  title_justify="left", header_style="bold")
    table.add_column("case")
    table.add_column("N", justify="right")
    for name in matrix.names:
        table.add_column(Text(f"{name} {metric.unit}"), justify="right")
    for name in matrix.names[1:]:
        table.add_column(Text(f"{name} × {first}"), justify="right")
    for column in table.columns:
        column.overflow = "fold"
    for (_, tokens), rows in matrix.cases.groupby(["case_id", "tokens"], sort=False, dropna=False):
        by_run = {row["run"]: row for _, row in rows.iterrows()}
        cells = [_text(rows["name"].iloc[0]), _text(fmt_int(tokens))]
        cells += [_value_cell(by_run[n]) if n in by_run else _text(MISSING, "dim") for n in matrix.names]
        cells += [_speedup_cell(by_run[n], verdicts) if n in by_run else _text(MISSING, "dim")
                  for n in matrix.names[1:]]
        table.add_row(*cells)
    better = "faster" if metric.name == "latency" else "higher" if metric.higher_is_better else "smaller"
    table.caption_justify = "left"
    table.caption = (f"× {first}: the run's {metric.label} speedup over {first} (> 1: {better} than {first}); "
                     f"{FLAG_MARK} flagged (left out of speedups). {SPEEDUP_NOTE}")
    return table


def runs_scaling_table(runs: RunsAnalysis) -> Table:
    """Each run's fitted exponents and crossovers, curve by curve (one line per curve and run)."""
    table = Table(title="Scaling with N per run: y ∝ N^k, k [95 % CI]", title_justify="left", header_style="bold")
    table.add_column("curve")
    table.add_column("run")
    for quantity in SCALING_QUANTITIES:
        table.add_column(f"k {quantity}", justify="right")
    if runs.baseline is not None:
        table.add_column(Text(f"crossover vs {runs.baseline} ({runs.metric.label})"))
    for column in table.columns:
        column.overflow = "fold"
    rows = []
    for run in runs.runs:
        analysis = run.analysis
        for curve in curve_fits(analysis.exponents, analysis.crossings, analysis.baseline, analysis.metric):
            cells = [_text(curve.line), _text(run.facets.name)]
            cells += [_text(fmt_exponent(curve.fits[q]) if q in curve.fits else MISSING) for q in SCALING_QUANTITIES]
            if runs.baseline is not None:
                cells.append(_text(curve.crossover or MISSING))
            rows.append((curve.line, cells))
    for _, cells in sorted(rows, key=lambda item: item[0]):  # stable: runs in their order within a curve
        table.add_row(*cells)
    if not table.row_count:
        table.caption = "No curve has 2 or more measured sizes."
    return table


def _history_cell(row: pd.Series) -> Text:
    if row["status"] not in MEASURED_STATUSES:
        return _text(row["status"], "dim")
    value = fmt_number(row["value"])
    verdict = row["verdict"] if isinstance(row["verdict"], str) else ""
    if verdict in ("regression", "improvement") and pd.notna(row["ratio"]):
        arrow = "▲" if row["ratio"] > 1 else "▼"
        return _text(f"{arrow} {value} ({100 * (row['ratio'] - 1):+.0f} %)", VERDICT_STYLES[verdict])
    if isinstance(row["flags"], str) and row["flags"]:
        return _text(value + FLAG_MARK, "yellow")
    return _text(value)


def history_tables(found: History) -> list[Table]:
    """One table per device model: a line per case, a column per run in order; changes beyond noise marked."""
    tables = []
    for device, points in found.points.groupby("device", sort=True):
        table = Table(title=Text(f"{found.metric.label.capitalize()} ({found.metric.unit}) over runs by "
                                 f"{found.by}: {device}"), title_justify="left", header_style="bold")
        table.add_column("case")
        table.add_column("N", justify="right")
        present = sorted(points["position"].unique())
        for position in present:
            table.add_column(Text(found.labels[position]), justify="right", overflow="fold")
        for (_, tokens), rows in points.groupby(["case_id", "tokens"], sort=False, dropna=False):
            at = {row["position"]: row for _, row in rows.iterrows()}
            table.add_row(_text(rows["name"].iloc[-1]), _text(fmt_int(tokens)),
                          *(_history_cell(at[p]) if p in at else _text("") for p in present))
        table.caption_justify = "left"
        table.caption = ("▲/▼: a change beyond noise against the previous run that measured the case on this device "
                         f"(the rules of `rpbench compare`); {FLAG_MARK} flagged, not judged")
        tables.append(table)
    return tables
