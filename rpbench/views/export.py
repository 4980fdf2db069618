"""rpbench export: a run's results in another format.

csv, parquet and json carry every results column (parquet and json keep nulls as nulls); md and html carry the
readable summary (one line per case with the figures the report shows), for pasting into a PR or a wiki.
"""
from __future__ import annotations

import html
import io
import re
from pathlib import Path

import pandas as pd

from ..analysis import RunAnalysis, analyse_run
from ..core.errors import ExportError
from ..core.schema import EXPORT_FORMATS
from ..results import store
from .format import flag_text, fmt_flops, fmt_int, fmt_number, fmt_speedup, fmt_status, is_set

FORMATS = EXPORT_FORMATS


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
    table["status"] = [fmt_status(row) for _, row in summary.iterrows()]
    table["flags"] = [flag_text(row) or ("noisy" if is_set(row, "noisy") else "") for _, row in summary.iterrows()]
    if not (table["setting"] != "").any():
        table = table.drop(columns="setting")
    return table


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (pandas' own needs the optional tabulate package)."""

    def cell(value: object) -> str:
        # Text only: HTML as entities, markdown's link/emphasis/code characters escaped, one line per cell.
        text = html.escape(" ".join(str(value).split()), quote=False)
        return re.sub(r"([\\`*_|]|(?<=\])\()", r"\\\1", text)  # `](` escaped: never a link

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_html_document(table: pd.DataFrame, title: str) -> str:
    body = table.to_html(index=False, escape=True, border=0)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def render(run: store.Run, fmt: str, baseline: str | None = None) -> str | bytes:
    """The run in `fmt`; speedups in md/html are on latency against `baseline` (default dense when present)."""
    _check_format(fmt)
    analysed = analyse_run(run.frame, run.env, baseline, samples=run.samples)  # a bad --baseline fails in any format
    if fmt == "csv":
        return run.frame.to_csv(index=False)
    if fmt == "parquet":
        buffer = io.BytesIO()
        run.frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    if fmt == "json":
        return run.frame.to_json(orient="records", indent=2) + "\n"
    if fmt == "md":
        return to_markdown(display_table(analysed))
    title = f"rpbench results: {run.directory.resolve().name}"
    return to_html_document(display_table(analysed), title)


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None, baseline: str | None = None) -> Path:
    """Write the run in `fmt` to `out` (default RUN_DIR/export.<ext>) and return the path written."""
    _check_format(fmt)  # before reading the run: a wrong format is the first thing to say
    run = store.load_run(run_dir)
    content = render(run, fmt, baseline)
    path = Path(out) if out is not None else run.directory / f"export.{fmt}"
    if path.is_dir():
        raise ExportError(f"{path} is a directory; give a file path to --out")
    if not path.parent.is_dir():
        raise ExportError(f"{path.parent}: no such directory")
    return store.write_file(path, content)
