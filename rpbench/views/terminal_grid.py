"""The metric grid in the terminal, as torch.utils.benchmark's Compare prints one: rows = mechanisms, columns =
sizes, one number a cell (the median and a ± figure), the best of each column in colour and marked, flagged cells
marked with one character, a legend of the marks below; then one line per kind of flag naming its cells.

A size axis wider than the width given folds into several grids (see `fold`), never into wrapped cells. The marks
are characters, not only colours, so a grid piped into a file or a CI log says the same.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import pandas as pd
from rich.console import RenderableType
from rich.text import Text

from ..analysis import FLAG_KINDS, RunAnalysis, flag_summary
from ..analysis.flags import IMPLAUSIBLE_DROP
from ..core.drift import LEGACY_UNSTABLE_PCT, UNSTABLE_FLOOR_PCT
from ..core.measurement import NOISY_IQR_PCT
from .fold import Column, fold_tables
from .format import MISSING, fmt_int, is_set
from .grid import Cell, MetricGrid, metric_grids

BEST_STYLE = "bold green"
FLAG_STYLE = "yellow"
BEST_MARK = "◆"
FLAG_MARKS = {"inaccurate": "x", "disturbed": "d", "unstable": "u", "throttled": "t", "implausible": "i"}
NOISY_MARK = "~"
LAUNCH_MARK = "l"
assert set(FLAG_MARKS) == set(FLAG_KINDS)
FLAG_MEANINGS = {
    "inaccurate": "output further from float32 than the dtype's tolerance",
    "disturbed": "other processes were busy in every pass",
    "unstable": f"its passes apart beyond the machine's drift (and by more than {UNSTABLE_FLOOR_PCT:.0f} %; "
                f"{LEGACY_UNSTABLE_PCT:.0f} % in runs without a reference kernel)",
    "throttled": "GPU clocks pulled down in every pass",
    "implausible": f"a larger case of its curve more than {IMPLAUSIBLE_DROP:g}× faster",
}
NOISY_MEANING = f"IQR above {NOISY_IQR_PCT:.0f} % of the median (marked, kept)"
LAUNCH_MEANING = "launch-bound: eager CUDA timing of launch overhead (marked, kept)"
SHOWN = 8  # cells named per kind of flag before "and n more"


def _spread(cell: Cell) -> str:
    if cell.spread_pct is None:
        return ""
    return " ±<1%" if cell.spread_pct < 0.5 else f" ±{cell.spread_pct:.0f}%"


def cell_marks(cell: Cell) -> str:
    """At most two characters: the best mark, then the first flag's mark (or noisy, or launch-bound)."""
    second = (FLAG_MARKS[cell.flags[0]] if cell.flags else NOISY_MARK if cell.noisy
              else LAUNCH_MARK if cell.launch_bound else "")
    return (BEST_MARK if cell.best else "") + second


def _column(header: str, cells: list[Cell]) -> Column:
    """One size: values right-aligned, marks in a slot of their own so the numbers line up."""
    values = [cell.value + _spread(cell) if cell.measured else cell.value for cell in cells]
    marks = [cell_marks(cell) if cell.measured else "" for cell in cells]
    value_width = max(len(v) for v in values)
    mark_width = max(len(m) for m in marks)
    texts = []
    for cell, value, mark in zip(cells, values, marks):
        style = ("dim" if not cell.measured else FLAG_STYLE if cell.flagged else BEST_STYLE if cell.best else "")
        text = Text(value.rjust(value_width), style=style)
        if mark_width:
            text.append(" " + mark.ljust(mark_width), style=style)
        texts.append(text)
    return Column(header, texts, justify="right")


def grid_view(grid: MetricGrid, width: int) -> list[RenderableType]:
    """The title line of a grid (what it shows, on what) and its table, folded to `width`."""
    keys = [Column("mechanism", [Text(label) for label, _ in grid.rows])]
    sizes = [_column(header, [cells[i] for _, cells in grid.rows]) for i, header in enumerate(grid.columns)]
    return [Text(f"{grid.quantity}: {grid.setting}", style="bold"), *fold_tables(keys, sizes, width)]


def packed(items: list[str], width: int, lead: str = "") -> list[str]:
    """Items joined by " · " into as few lines as fit `width` (an item longer than a line gets one of its own)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 3 + len(item) <= width:
            lines[-1] += " · " + item
        else:
            lines.append((lead if not lines else " " * len(lead)) + item)
    return lines


def grid_legend(grids: Iterable[MetricGrid], width: int) -> Text | None:
    """What the marks of these grids mean (only those that occur), packed into lines of `width`."""
    cells = [cell for grid in grids for cell in grid.cells()]
    parts = []
    if any(cell.best for cell in cells):
        parts.append(f"{BEST_MARK} best of its column")
    spread = [cell.interval for cell in cells if cell.spread_pct is not None]
    if spread:
        parts.append("± half the 95 % interval (drift between passes included), % of the value" if all(spread)
                     else "± half the p20–p80 spread, % of the value" if not any(spread)
                     else "± half the 95 % interval (drift between passes included), else of the p20–p80 spread "
                          "where a row has no interval, % of the value")
    kinds = {cell.flags[0] for cell in cells if cell.flags}  # the kind a cell's mark shows
    parts += [f"{FLAG_MARKS[kind]} {kind}: {FLAG_MEANINGS[kind]}" for kind in FLAG_KINDS if kind in kinds]
    if kinds:
        parts.append("flagged cells are left out of best, fits, crossovers and speedups")
    if any(cell.noisy and not cell.flags for cell in cells):
        parts.append(f"{NOISY_MARK} noisy: {NOISY_MEANING}")
    if any(cell.launch_bound and not cell.flags and not cell.noisy for cell in cells):
        parts.append(f"{LAUNCH_MARK} {LAUNCH_MEANING}")
    statuses = sorted({cell.value for cell in cells if not cell.measured and cell.value != MISSING})
    if statuses:
        parts.append(f"{', '.join(statuses)}: not measured (the reason: rpbench report --cases)")
    if any(cell.value == MISSING for cell in cells):
        parts.append(f"{MISSING} not in this setting")
    return Text("\n".join(packed(parts, width, "marks: ")), style="dim") if parts else None


def grids_view(run: RunAnalysis, width: int) -> list[RenderableType]:
    """Every setting's grid of an analysed run, then the legend of their marks, fitted to `width`."""
    grids = metric_grids(run)
    legend = grid_legend(grids, width)
    return [part for grid in grids for part in grid_view(grid, width)] + ([legend] if legend is not None else [])


def _where(row: Mapping[str, Any]) -> str:
    """A case named for a line of text: `dense N=3,136`, with its setting when the run has several."""
    setting = " · ".join(part for part in (row.get("facet"), row.get("setting")) if isinstance(part, str) and part)
    return f"{row['series']} N={fmt_int(row['tokens'])}" + (f" ({setting})" if setting else "")


def _reason(row: Mapping[str, Any], kind: str) -> str:
    """The part of a row's flags text that its `kind` wrote, without the kind: `passes 31 % apart`."""
    for part in str(row.get("flags") or "").split("; "):
        if part.startswith(f"{kind}: "):
            return part[len(kind) + 2:]
    return ""


def _named(rows: pd.DataFrame, detail: Any = None) -> str:
    names = [_where(row) + (f" ({detail(row)})" if detail and detail(row) else "") for _, row in rows.iterrows()]
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _unstable_detail(row: Mapping[str, Any]) -> str:
    found = re.search(r"passes (\d+ %) apart", _reason(row, "unstable"))
    return found.group(1) if found else ""


def _disturbed_detail(row: Mapping[str, Any]) -> str:
    found = re.search(r"kept ([\d.]+) cores", _reason(row, "disturbed"))
    return f"others: {found.group(1)} cores" if found else _reason(row, "disturbed")


def flag_lines(summary: pd.DataFrame) -> list[Text]:
    """How many measured rows are flagged and why (the sweep's last line), then one line per kind of flag (and
    for noisy and launch-bound rows) naming its cells."""
    flagged = bool(summary["flagged"].any())
    lines = [Text(flag_summary(summary), style="bold yellow" if flagged else "")]
    measured = summary[summary["ok"]]
    kinds = measured["flag_kinds"].fillna("").astype(str).str.split(",")
    details = {"unstable": _unstable_detail, "inaccurate": lambda row: _reason(row, "inaccurate"),
               "disturbed": _disturbed_detail}
    for kind in FLAG_KINDS:
        rows = measured[kinds.map(lambda found: kind in found)]
        if len(rows):
            lines.append(Text(f"  {FLAG_MARKS[kind]} {kind} ({len(rows)}): {FLAG_MEANINGS[kind]}: "
                              f"{_named(rows, details.get(kind))}", style=FLAG_STYLE))
    noisy = measured[[is_set(row, "noisy") for _, row in measured.iterrows()]]
    if len(noisy):
        lines.append(Text(f"  {NOISY_MARK} noisy ({len(noisy)}): {NOISY_MEANING}: {_named(noisy)}"))
    bound = measured[[is_set(row, "launch_bound") for _, row in measured.iterrows()]]
    if len(bound):
        lines.append(Text(f"  {LAUNCH_MARK} {LAUNCH_MEANING}; try timer = \"cudagraph\" ({len(bound)}): "
                          f"{_named(bound)}"))
    return lines
