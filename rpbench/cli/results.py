"""Commands on finished runs: `rpbench report`, `rpbench export` and `rpbench compare`; given several runs they
hand over to `runs`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..core.errors import UsageError
from .app import command, console, err_console, layout_width
from .options import ExportFormat, ExportTable, MetricName, ShiftRule, plain, with_width
from .damage import warn_damage
from .runs import LABEL_HELP, RUNS_HELP, compare_many, export_runs, report_runs, several, single_run_only

METRIC_HELP = "latency (median ms), throughput (img/s) or memory (peak MiB)"

RUN_DIR_HELP = "Results dir written by `rpbench sweep` (or its results.csv)."


@command("report")
@with_width
def report_command(
    run_dir: list[Path] = typer.Argument(..., help=RUNS_HELP, metavar="RUN_DIR"),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Mechanism label to compare against. Default: dense, when the run has it."
    ),
    metric: MetricName = typer.Option("latency", "--metric", help=f"The metric of the grids, speedups and "
                                      f"crossovers: {METRIC_HELP}."),
    html: bool = typer.Option(False, "--html", help="Also write RUN_DIR/report.html with these settings (without "
                              "it, the report.html the sweep wrote stays as it is)."),
    figures: Optional[Path] = typer.Option(None, "--figures", help="Also write every figure as a static file into "
                                           "this directory (created): <figure>.svg and <figure>.pdf, for a paper."),
    png: bool = typer.Option(False, "--png", help="With --figures (or export --format figures): a 200 dpi PNG of "
                             "each figure too."),
    labels: list[str] = typer.Option([], "--label", help=LABEL_HELP, metavar="RUN=NAME"),
    out: Optional[Path] = typer.Option(None, "--out", help="With several runs and --html: the page to write (one "
                                       "offline file)."),
    cases: bool = typer.Option(False, "--cases", help="Also print the table of every case (median, p20–p80, img/s, "
                               "peak memory, FLOPs, TFLOP/s, speedup, status, flags) and every fitted exponent."),
) -> None:
    """Per setting, a grid of mechanisms × sizes of the metric (best per column marked, flagged cells marked, a
    legend below), then scaling exponents and crossovers, and one line per kind of flag; of several runs, every case
    across them (speedup over the first run) and each run's fits."""
    from ..analysis import analyse_run
    from ..results import store
    from ..views.html import render_html
    from ..views.terminal import terminal_report

    if png and figures is None:
        raise UsageError("--png needs --figures DIR (where to write the figures)")
    if figures is not None:
        from ..views.static import check_formats, figure_formats

        formats = figure_formats(png)
        check_formats(formats)
        store.make_dir(figures, "--figures")  # a bad DIR is said before the tables, not after them
    paths = several(run_dir)
    if len(paths) > 1:
        return report_runs(paths, labels, baseline, plain(metric), html, out, figures, formats if figures else ())
    single_run_only(labels, **{"--out": out})
    run = store.load_run(paths[0])
    analysed = analyse_run(run.frame, run.env, baseline, plain(metric), samples=run.samples)
    for part in terminal_report(analysed, layout_width(), cases, store.run_drift(run.directory)).parts():
        console.print(part)
    warn_damage(run, "report")
    if html:
        console.print(Text(f"report: {store.write_report(run.directory, render_html(analysed, run.directory))}"))
    if figures is not None:
        from ..views.figures import build_figures
        from ..views.static import write_figures

        written = write_figures(build_figures(analysed), figures, formats)
        console.print(Text(f"figures: {len(written)} files in {figures}"))


@command("export")
def export_command(
    run_dir: list[Path] = typer.Argument(..., help=RUNS_HELP, metavar="RUN_DIR"),
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
    labels: list[str] = typer.Option([], "--label", help=LABEL_HELP, metavar="RUN=NAME"),
) -> None:
    """Write a run's results in another format; several runs into one file (--out), the run columns first."""
    from ..results import store
    from ..views.export import check_format, export

    paths = several(run_dir)
    if len(paths) > 1:
        return export_runs(paths, labels, plain(format_), out, baseline, plain(metric), plain(table), png)
    single_run_only(labels)
    run_dir = paths[0]

    if plain(format_) == "figures":
        from ..views.static import check_formats, export_figures, figure_formats

        if table is not None:
            raise UsageError("--table is for md and latex")
        check_formats(figure_formats(png))  # a missing matplotlib is said before the run is read
        run = store.load_run(run_dir)
        written = export_figures(run, out, baseline, plain(metric), png=png)
        console.print(Text(f"wrote {len(written)} figure files into {written[0].parent}"))
        warn_damage(run, "export")
        return
    if png:
        raise UsageError("--png is for --format figures")
    check_format(plain(format_), plain(table))
    run = store.load_run(run_dir)
    console.print(Text(f"wrote {export(run, plain(format_), out, baseline, plain(metric), plain(table))}"))
    warn_damage(run, "export")


@command("compare")
@with_width
def compare_command(
    runs: list[Path] = typer.Argument(..., help="Reference results dir (A), then the dir(s) to judge against it (B, "
                                      "...; globs too). Three runs or more: every case's speedup over A in each.",
                                      metavar="RUN"),
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
    labels: list[str] = typer.Option([], "--label", help=LABEL_HELP.replace("several runs", "three runs or more"),
                                      metavar="RUN=NAME"),
    shift: ShiftRule = typer.Option("auto", "--shift", help="The common shift (the median B/A of the shared cases, "
                                    "always printed): remove: judge each case beyond it; keep: judge cases as "
                                    "measured; auto: remove it when both runs measured the same code (git commit, "
                                    "clean checkout, torch) on the same device and timer, where it can only be the "
                                    "machine's level moving between the runs. Two runs only."),
) -> None:
    """Match cases of two runs by case_id and flag regressions and improvements beyond noise; cases flagged in either
    run (disturbed, unstable, throttled, implausible) are left out. Of three runs or more: a matrix of every case's
    speedup over the first run, with intervals and the same verdicts (--fail-on-regression: any run regressed)."""
    from ..analysis import compare_runs, get_metric, run_differences
    from ..analysis.compare import same_code
    from ..results import store
    from ..views.compare import comparison_table

    paths = several(runs)
    if len(paths) > 2:
        if plain(shift) != "auto":
            raise UsageError("--shift judges two runs; of three or more, each run's speedup over the first is shown "
                             "as measured")
        return compare_many(paths, labels, threshold, plain(metric), fail_on_regression, force, as_json)
    if len(paths) < 2:
        raise UsageError("compare needs two runs or more (the reference first)")
    single_run_only(labels)
    run_a, run_b = paths
    a, b = store.load_run(run_a), store.load_run(run_b)
    for run in (a, b):
        warn_damage(run, "compare")
    differences = run_differences(a.frame, a.env, b.frame, b.env)
    remove = plain(shift) == "remove" or (plain(shift) == "auto" and not differences and same_code(a.env, b.env))
    comparison = compare_runs(a.frame, b.frame, get_metric(plain(metric)), threshold, remove_shift=remove)
    if as_json:
        typer.echo(json.dumps({"a": str(run_a), "b": str(run_b), "differences": differences,
                               **comparison.to_json()}, indent=2, default=str))
    else:
        for difference in differences:
            err_console.print(Text(f"warning: the runs differ in {difference}", style="yellow"))
        if comparison.shared:
            console.print(comparison_table(comparison, f"A={run_a}", f"B={run_b}"))
        if comparison.shift_line():
            console.print(comparison.shift_line(), highlight=False, markup=False)
        console.print(comparison.summary_line(), highlight=False, markup=False)
    if not fail_on_regression:
        return
    if differences and not force:
        raise UsageError("--fail-on-regression refuses to judge runs that differ in " + "; ".join(differences)
                         + " (pass --force to gate anyway)")
    if not comparison.shared or comparison.counts()["regression"]:
        raise typer.Exit(1)
