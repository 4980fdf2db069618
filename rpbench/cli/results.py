"""Commands on finished runs: `rpbench report`, `rpbench export` and `rpbench compare`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..core.errors import UsageError
from .app import command, console, err_console
from .options import ExportFormat, ExportTable, MetricName, plain

METRIC_HELP = "latency (median ms), throughput (img/s) or memory (peak MiB)"
RUN_DIR_HELP = "Results dir written by `rpbench sweep` (or its results.csv)."


@command("report")
def report_command(
    run_dir: Path = typer.Argument(..., help=RUN_DIR_HELP),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Mechanism label to compare against. Default: dense, when the run has it."
    ),
    metric: MetricName = typer.Option("latency", "--metric", help=f"Headline metric for speedups and crossovers: "
                                      f"{METRIC_HELP}."),
    html: bool = typer.Option(False, "--html", help="Also write RUN_DIR/report.html with these settings (without "
                              "it, the report.html the sweep wrote stays as it is)."),
    figures: Optional[Path] = typer.Option(None, "--figures", help="Also write every figure as a static file into "
                                           "this directory (created): <figure>.svg and <figure>.pdf, for a paper."),
    png: bool = typer.Option(False, "--png", help="With --figures (or export --format figures): a 200 dpi PNG of "
                             "each figure too."),
) -> None:
    """Tables of every case (best per size highlighted), fitted scaling exponents and crossovers."""
    from ..analysis import analyse_run
    from ..results import store
    from ..views.html import render_html
    from ..views.terminal import drift_line, terminal_report

    if png and figures is None:
        raise UsageError("--png needs --figures DIR (where to write the figures)")
    if figures is not None:
        from ..views.static import check_formats, figure_formats

        formats = figure_formats(png)
        check_formats(formats)
        store.make_dir(figures, "--figures")  # a bad DIR is said before the tables, not after them
    run = store.load_run(run_dir)
    analysed = analyse_run(run.frame, run.env, baseline, plain(metric), samples=run.samples)
    built = terminal_report(analysed)
    console.print(drift_line(store.run_drift(run.directory)))
    console.print(built.cases)
    console.print(built.scaling)
    if html:
        console.print(Text(f"report: {store.write_report(run.directory, render_html(analysed, run.directory))}"))
    if figures is not None:
        from ..views.figures import build_figures
        from ..views.static import write_figures

        written = write_figures(build_figures(analysed), figures, formats)
        console.print(Text(f"figures: {len(written)} files in {figures}"))


@command("export")
def export_command(
    run_dir: Path = typer.Argument(..., help=RUN_DIR_HELP),
    format_: ExportFormat = typer.Option(
        "csv", "--format", help="csv, parquet or json (every column); html (the readable case table); md or latex "
        "(the paper table: mechanisms × sizes, best in bold, speedups with 95 % intervals; see --table); figures "
        "(every figure as SVG and PDF, into the directory --out, default RUN_DIR/figures)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write (a directory for figures). Default: "
                                       "RUN_DIR/export.<format> (export.tex for latex, figures/ for figures)."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Label the speedups of md/html/latex are against. Default: dense, when the run has it."
    ),
    metric: MetricName = typer.Option("latency", "--metric", help=f"Value of the paper table and of the speedups: "
                                      f"{METRIC_HELP}."),
    table: Optional[ExportTable] = typer.Option(
        None, "--table", help="For md and latex: paper (default: one table per setting, mechanism rows × size "
        "columns) or cases (the long table, one line per case)."
    ),
    png: bool = typer.Option(False, "--png", help="With --format figures: a 200 dpi PNG of each figure too."),
) -> None:
    """Write a run's results in another format."""
    from ..views.export import export

    if plain(format_) == "figures":
        from ..views.static import export_figures

        if table is not None:
            raise UsageError("--table is for md and latex")
        written = export_figures(run_dir, out, baseline, plain(metric), png=png)
        console.print(Text(f"wrote {len(written)} figure files into {written[0].parent}"))
        return
    if png:
        raise UsageError("--png is for --format figures")
    console.print(Text(f"wrote {export(run_dir, plain(format_), out, baseline, plain(metric), plain(table))}"))


@command("compare")
def compare_command(
    run_a: Path = typer.Argument(..., help="Reference results dir (A)."),
    run_b: Path = typer.Argument(..., help="Results dir to judge against A (B)."),
    threshold: float = typer.Option(
        5.0, "--threshold", help="Relative change (%, 0 to 1e6) a case must exceed, beyond both rows' 95 % intervals "
        "(their p20–p80 spread where a row has none), to count."
    ),
    metric: MetricName = typer.Option("latency", "--metric", help=f"What to compare: {METRIC_HELP}."),
    fail_on_regression: bool = typer.Option(
        False, "--fail-on-regression", help="Exit 1 when any case regressed, or when the runs share no case (for CI "
        "gates). Refused (exit 2) when the runs differ in device, torch, timer or rounds, unless --force."
    ),
    force: bool = typer.Option(False, "--force", help="Gate with --fail-on-regression even when the runs differ in "
                               "device, torch, timer or rounds (the differences are still printed)."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison (differences, counts, every case with "
                                 "its verdict) as JSON instead of a table."),
) -> None:
    """Match cases of two runs by case_id and flag regressions and improvements beyond noise; cases flagged in either
    run (disturbed, unstable, throttled, implausible) are left out."""
    from ..analysis import compare_runs, get_metric, run_differences
    from ..results import store
    from ..views.compare import comparison_table

    a, b = store.load_run(run_a), store.load_run(run_b)
    comparison = compare_runs(a.frame, b.frame, get_metric(plain(metric)), threshold)
    differences = run_differences(a.frame, a.env, b.frame, b.env)
    if as_json:
        typer.echo(json.dumps({"a": str(run_a), "b": str(run_b), "differences": differences,
                               **comparison.to_json()}, indent=2, default=str))
    else:
        for difference in differences:
            err_console.print(Text(f"warning: the runs differ in {difference}", style="yellow"))
        if comparison.shared:
            console.print(comparison_table(comparison, f"A={run_a}", f"B={run_b}"))
        console.print(comparison.summary_line(), highlight=False, markup=False)
    if not fail_on_regression:
        return
    if differences and not force:
        raise UsageError("--fail-on-regression refuses to judge runs that differ in " + "; ".join(differences)
                         + " (pass --force to gate anyway)")
    if not comparison.shared or comparison.counts()["regression"]:
        raise typer.Exit(1)
