"""`rpbench export RUN RUN ...`: several runs in one file.

csv, parquet and json: one table of every results column of every run, the run columns first (run, run_dir,
run_device, run_host, run_torch, run_timer, run_date, run_commit, run_commit_time, run_dirty), readable by pandas,
pyarrow, duckdb or polars without rpbench. md and latex: each run's paper tables, the caption starting with the
run's name (or, with `--table cases`, one case table with a run column); html: that case table; figures: the
figures of several runs (one panel per device model, one curve per mechanism and run).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from ..analysis.runs import RunsAnalysis, analyse_runs
from ..core.errors import ExportError
from ..results import store
from ..results.csvfile import output_file
from ..results.runs import LabelledRun, combined_rows, load_runs
from .export import check_format, cases_latex, display_table, to_html_document, to_markdown
from .format import SPEEDUP_NOTE, md_cell
from .paper import paper_tables, to_latex, to_paper_markdown

COLUMNAR = ("csv", "parquet", "json")


def columnar(runs: Sequence[LabelledRun], fmt: str) -> str | bytes:
    """The table of several runs (see the module docstring) as csv, parquet or json."""
    table = combined_rows(runs)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return table.to_json(orient="records", indent=2) + "\n"


def readable(runs: RunsAnalysis, fmt: str, table: str | None = None) -> str:
    """md, latex or html of several runs: each run's paper tables, or the case table with a run column."""
    if fmt in ("md", "latex") and table != "cases":
        tables = []
        for run in runs.runs:
            for found in paper_tables(run.analysis):
                found.caption = f"Run {run.facets.name}: {found.caption}"
                tables.append(found)
        return to_paper_markdown(tables) if fmt == "md" else to_latex(tables)
    cases = pd.concat([display_table(run.analysis).assign(run=run.facets.name) for run in runs.runs],
                      ignore_index=True).fillna("")
    cases = cases[["run", *(c for c in cases.columns if c != "run")]]
    title = f"rpbench results: {', '.join(runs.names)}"
    if fmt == "md":
        return to_markdown(cases) + (f"\n{md_cell(SPEEDUP_NOTE)}\n" if runs.baseline is not None else "")
    if fmt == "latex":
        return cases_latex(cases, title + (f". {SPEEDUP_NOTE}" if runs.baseline is not None else ""))
    return to_html_document(cases, title)


def _runs(given: Sequence[str | Path] | Sequence[LabelledRun], labels: Mapping[str, str] | None) -> list[LabelledRun]:
    """The runs `given` names (paths, globs), or the runs given already read."""
    if given and all(isinstance(one, LabelledRun) for one in given):
        return list(given)
    return load_runs(given, labels)


def export_runs(given: Sequence[str | Path] | Sequence[LabelledRun], fmt: str, out: str | Path | None, labels: Mapping[str, str] | None = None,
                baseline: str | None = None, metric: str = "latency", table: str | None = None) -> Path:
    """Write several runs in `fmt` to the file `out` (required: several runs have no dir of their own)."""
    check_format(fmt, table)
    if out is None:
        raise ExportError("several runs need --out FILE: they have no run dir of their own to write into")
    path = output_file(out, "--out")
    runs = _runs(given, labels)
    analysed = analyse_runs(runs, baseline, metric)  # bad input (a missing baseline) fails in any format
    content = columnar(runs, fmt) if fmt in COLUMNAR else readable(analysed, fmt, table)
    return store.write_file(path, content)


def export_runs_figures(given: Sequence[str | Path] | Sequence[LabelledRun], out: str | Path | None, labels: Mapping[str, str] | None = None,
                        baseline: str | None = None, metric: str = "latency", png: bool = False,
                        flag: str = "--out") -> list[Path]:
    """`export RUN RUN ... --format figures`: the figures of several runs into the directory `out` (required)."""
    from .figures import build_figures
    from .static import check_formats, figure_formats, write_figures

    formats = figure_formats(png)
    check_formats(formats)
    if out is None:
        raise ExportError("several runs need --out DIR for their figures: they have no run dir of their own")
    figures = build_figures(analyse_runs(_runs(given, labels), baseline, metric).combined)
    if not figures:
        raise ExportError("no successful case to draw in these runs")
    return write_figures(figures, out, formats, flag)
