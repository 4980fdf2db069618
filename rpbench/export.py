"""rpbench export: a run's results in another format.

csv, parquet and json carry every results column (parquet and json keep nulls as nulls); md and html carry the
readable summary (one line per case with the figures the report shows), for pasting into a PR or a wiki.
"""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from . import analysis, store

FORMATS = ("csv", "parquet", "json", "md", "html")


class ExportError(Exception):
    """Bad export request; the message is one line for the user."""


def summary_table(run_dir: str | Path, baseline: str | None = None) -> pd.DataFrame:
    """The case table as display strings, the same figures the terminal report shows (speedups on latency)."""
    metric = analysis.METRICS["latency"]
    frame = analysis.prepare(store.load(run_dir))
    chosen = analysis.resolve_baseline(frame, baseline)
    summary = analysis.case_summary(frame, store.load_env(run_dir), chosen, metric)
    table = pd.DataFrame(
        {
            "setting": [" · ".join(p for p in (f, s) if p) for f, s in zip(summary["facet"], summary["setting"])],
            "mechanism": summary["series"],
            "N": summary["tokens"].map(analysis.fmt_int),
            "res px": summary["resolution"].map(analysis.fmt_int),
            "median ms": summary["latency_ms_median"].map(analysis.fmt_number),
            "p20 ms": summary["latency_ms_p20"].map(analysis.fmt_number),
            "p80 ms": summary["latency_ms_p80"].map(analysis.fmt_number),
            "img/s": summary["throughput_img_s"].map(analysis.fmt_number),
            "peak MiB": summary["peak_mem_mb"].map(analysis.fmt_number),
            "FLOPs": summary["flops"].map(analysis.fmt_flops),
            "TFLOP/s": summary["tflops_s"].map(analysis.fmt_number),
        }
    )
    if chosen is not None:
        table[f"{metric.label} vs {chosen}"] = [
            "—" if pd.isna(v) else f"{v:.2f}× [{lo:.2f}–{hi:.2f}]"
            for v, lo, hi in zip(summary["speedup"], summary["speedup_low"], summary["speedup_high"])
        ]
    table["status"] = [
        status if pd.isna(note) else f"{status}: {note}" for status, note in zip(summary["status"], summary["notes"])
    ]
    if not (table["setting"] != "").any():
        table = table.drop(columns="setting")
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (pandas' own needs the optional tabulate package)."""

    def cell(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_html_document(table: pd.DataFrame, title: str) -> str:
    body = table.to_html(index=False, escape=True, border=0)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None, baseline: str | None = None) -> Path:
    """Write the run in `fmt` to `out` (default RUN_DIR/export.<ext>) and return the path written."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    directory = store.results_path(run_dir).parent
    frame = store.load(directory)
    analysis.resolve_baseline(analysis.prepare(frame), baseline)  # a misspelt --baseline fails for every format
    path = Path(out) if out is not None else directory / f"export.{fmt}"
    if path.is_dir():
        raise ExportError(f"{path} is a directory; give a file path to --out")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such directory")
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "json":
        path.write_text(frame.to_json(orient="records", indent=2) + "\n", encoding="utf-8")
    elif fmt == "md":
        path.write_text(to_markdown(summary_table(directory, baseline)), encoding="utf-8")
    else:
        title = f"rpbench results: {directory.resolve().name}"
        path.write_text(to_html_document(summary_table(directory, baseline), title), encoding="utf-8")
    return path
