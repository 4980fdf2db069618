"""rpbench export: a run's results in another format.

csv, parquet and json carry every results column (parquet and json keep nulls as nulls); html carries the readable
case table (one line per case with the figures the report shows); md and latex carry the paper table (`paper`:
mechanisms × sizes of one metric) or, with `--table cases`, the case table, for a paper, a PR or a wiki.
"""
from __future__ import annotations

import html
import io
from pathlib import Path

import pandas as pd

from ..analysis import RunAnalysis, analyse_run
from ..core.errors import ExportError
from ..core.schema import EXPORT_FORMATS, EXPORT_TABLES
from ..results import store
from .format import (CI_NAMES, SPEEDUP_NOTE, flag_text, fmt_flops, fmt_int, fmt_number, fmt_speedup, fmt_status, is_set,
                     md_cell)
from .paper import latex_escape, paper_tables, to_latex, to_paper_markdown

FORMATS = EXPORT_FORMATS
EXTENSIONS = {"latex": "tex"}


def display_table(run: RunAnalysis) -> pd.DataFrame:
    """The case table as display strings, the same figures the terminal report shows."""
    summary = run.summary
    table = pd.DataFrame(
        {
            "setting": [" · ".join(p for p in (f, s) if p) for f, s in zip(summary["facet"], summary["setting"])],
            "mechanism": summary["series"],
            "N": summary["tokens"].map(fmt_int),
            "res px": summary["resolution"].map(fmt_int),
            "median ms": summary["latency_ms_median"].map(fmt_number),
            "p20 ms": summary["latency_ms_p20"].map(fmt_number),
            "p80 ms": summary["latency_ms_p80"].map(fmt_number),
            "img/s": summary["throughput_img_s"].map(fmt_number),
            "peak MiB": summary["peak_mem_mb"].map(fmt_number),
            "FLOPs": summary["flops"].map(fmt_flops),
            "TFLOP/s": summary["tflops_s"].map(fmt_number),
        }
    )
    if run.baseline is not None:
        table[f"{run.metric.label} vs {run.baseline}"] = [fmt_speedup(row) for _, row in summary.iterrows()]
        table["interval"] = summary["speedup_method"].fillna("").astype(str).map(lambda m: CI_NAMES.get(m, m))
    table["status"] = [fmt_status(row) for _, row in summary.iterrows()]
    table["flags"] = [flag_text(row) or ("noisy" if is_set(row, "noisy") else "") for _, row in summary.iterrows()]
    if not (table["setting"] != "").any():
        table = table.drop(columns="setting")
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (pandas' own needs the optional tabulate package)."""
    lines = ["| " + " | ".join(md_cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def cases_latex(table: pd.DataFrame, caption: str) -> str:
    """The case table as one booktabs tabular in a `table` float (long: meant for an appendix)."""
    spec = "".join("l" if column in ("setting", "mechanism", "status", "flags", "interval") else "r"
                   for column in table.columns)
    rows = [" & ".join(latex_escape(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
                      rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
                      " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule", *rows,
                      r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def to_html_document(table: pd.DataFrame, title: str) -> str:
    body = table.to_html(index=False, escape=True, border=0)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def check_format(fmt: str, table: str | None = None) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if table is not None and table not in EXPORT_TABLES:
        raise ExportError(f"unknown table {table!r}; choose one of: {', '.join(EXPORT_TABLES)}")
    if table is not None and fmt not in ("md", "latex"):
        raise ExportError(f"--table is for md and latex; {fmt} always writes "
                          + ("the case table" if fmt == "html" else "every column"))


def render(run: store.Run, fmt: str, baseline: str | None = None, metric: str = "latency",
           table: str | None = None) -> str | bytes:
    """The run in `fmt`; speedups are on `metric` against `baseline` (default dense when present); md and latex
    write the paper table unless `table` is "cases"."""
    check_format(fmt, table)
    analysed = analyse_run(run.frame, run.env, baseline, metric, samples=run.samples)  # bad input fails in any format
    if fmt == "csv":
        return run.frame.to_csv(index=False)
    if fmt == "parquet":
        buffer = io.BytesIO()
        run.frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "json":
        return run.frame.to_json(orient="records", indent=2) + "\n"
    title = f"rpbench results: {run.directory.resolve().name}"
    if fmt in ("md", "latex") and table != "cases":
        tables = paper_tables(analysed)
        return to_paper_markdown(tables) if fmt == "md" else to_latex(tables)
    cases = display_table(analysed)
    if fmt == "md":
        return to_markdown(cases) + (f"\n{md_cell(SPEEDUP_NOTE)}\n" if analysed.baseline is not None else "")
    if fmt == "latex":
        return cases_latex(cases, title + (f". {SPEEDUP_NOTE}" if analysed.baseline is not None else ""))
    return to_html_document(cases, title)


def export(run_dir: str | Path | store.Run, fmt: str, out: str | Path | None = None, baseline: str | None = None,
           metric: str = "latency", table: str | None = None) -> Path:
    """Write the run (a run dir, or one read already) in `fmt` to `out` (default RUN_DIR/export.<ext>) and return
    the path written."""
    check_format(fmt, table)  # before reading the run: a wrong format is the first thing to say
    run = run_dir if isinstance(run_dir, store.Run) else store.load_run(run_dir)
    content = render(run, fmt, baseline, metric, table)
    path = Path(out) if out is not None else run.directory / f"export.{EXTENSIONS.get(fmt, fmt)}"
    if path.is_dir():
        raise ExportError(f"{path} is a directory; give a file path to --out")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such directory")
    return store.write_file(path, content)
