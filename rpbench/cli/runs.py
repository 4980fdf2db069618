"""Commands on several runs: `rpbench history`, and what `report`, `export` and `compare` do when given more than
one run dir (or a glob matching several); `results` hands over to the functions here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import typer
from rich.text import Text

from ..core.errors import UsageError
from .app import command, console, err_console
from .damage import warn_damage
from .options import HistoryOrder, MetricName, plain, with_width

LABEL_HELP = ("Name a run in tables, legends and the run column: RUN=NAME, RUN as given on the command line "
              "(repeatable). Default: the run dir's name. For several runs only.")
RUNS_HELP = ("Results dirs written by `rpbench sweep` (or their results.csv), or globs such as 'results/tokens-*' (quoted); several runs "
             "are matched case by case (case_id) and told apart by device, host, torch, commit and date.")


def output_file(path: Path, flag: str) -> Path:
    from ..results.csvfile import output_file as check

    return check(path, flag)


def several(run_dirs: Sequence[Path]) -> list[Path]:
    """The run dirs the arguments name (globs expanded, each dir once)."""
    from ..results.runs import run_paths

    return run_paths(run_dirs)


def single_run_only(labels: Sequence[str], **given: object) -> None:
    """Options of several runs refused, with one line, for a single run."""
    if labels:
        raise UsageError("--label names runs when several are given; one run is named by its dir")
    for flag, value in given.items():
        if value is not None:
            raise UsageError(f"{flag} is for several runs (one run writes into its own dir)")


def _loaded(paths: Sequence[Path], labels: Sequence[str]):
    from ..results.runs import load_runs, parse_labels

    return load_runs(paths, parse_labels(labels))


def _say_damage(loaded, command: str) -> None:
    """Once every run is read (samples.csv included): one warning line per damaged side file of each run."""
    for labelled in loaded:
        warn_damage(labelled.run, command)


def report_runs(paths: Sequence[Path], labels: Sequence[str], baseline: Optional[str], metric: str, html: bool,
                out: Optional[Path], figures: Optional[Path], formats: tuple[str, ...]) -> None:
    """`rpbench report RUN RUN ...`: the run legend, every case across the runs, each run's fits."""
    from ..analysis import flag_summary
    from ..analysis.matrix import run_matrix
    from ..analysis.runs import analyse_runs
    from ..views.runs_terminal import matrix_table, runs_scaling_table, runs_table

    if html and out is None:
        raise UsageError("--html with several runs needs --out FILE (the page: several runs have no dir of their own)")
    if out is not None and not html:
        raise UsageError("--out is where --html writes the page of several runs; add --html")
    if out is not None:
        output_file(out, "--out")
    loaded = _loaded(paths, labels)
    analysed = analyse_runs(loaded, baseline, metric)
    console.print(runs_table([run.facets for run in analysed.runs]))
    for run in analysed.runs:
        console.print(Text(f"{run.facets.name}: {flag_summary(run.analysis.summary)}"))
    console.print(matrix_table(run_matrix(analysed.runs, analysed.metric)))
    console.print(runs_scaling_table(analysed))
    if html:
        from ..results.store import write_file
        from ..views.runs_html import render_runs_html

        page = render_runs_html(analysed, run_matrix(analysed.runs, analysed.metric))
        console.print(Text(f"report: {write_file(out, page)}"))
    if figures is not None:
        from ..views.figures import build_figures
        from ..views.static import write_figures

        written = write_figures(build_figures(analysed.combined), figures, formats)
        console.print(Text(f"figures: {len(written)} files in {figures}"))
    _say_damage(loaded, "report")


def export_runs(paths: Sequence[Path], labels: Sequence[str], fmt: str, out: Optional[Path], baseline: Optional[str],
                metric: str, table: Optional[str], png: bool) -> None:
    """`rpbench export RUN RUN ...`: one file (a directory of figures) for several runs."""
    from ..views.export import check_format
    from ..views.runs_export import export_runs as write, export_runs_figures

    if fmt == "figures":
        if table is not None:
            raise UsageError("--table is for md and latex")
        loaded = _loaded(paths, labels)
        written = export_runs_figures(loaded, out, None, baseline, metric, png=png)
        console.print(Text(f"wrote {len(written)} figure files into {written[0].parent}"))
    else:
        if png:
            raise UsageError("--png is for --format figures")
        check_format(fmt, table)  # before reading the runs: a wrong format is the first thing to say
        loaded = _loaded(paths, labels)
        console.print(Text(f"wrote {write(loaded, fmt, out, None, baseline, metric, table)}"))
    _say_damage(loaded, "export")


def compare_many(paths: Sequence[Path], labels: Sequence[str], threshold: float, metric: str,
                 fail_on_regression: bool, force: bool, as_json: bool) -> None:
    """`rpbench compare A B C ...`: every case's speedup over A in each later run, judged as `compare A B`."""
    from ..analysis import run_differences
    from ..analysis.matrix import run_matrix
    from ..analysis.runs import analyse_runs
    from ..views.runs_terminal import matrix_table, runs_table

    loaded = _loaded(paths, labels)
    analysed = analyse_runs(loaded, None, metric)
    matrix = run_matrix(analysed.runs, analysed.metric, threshold)
    first = analysed.runs[0]
    differences = {run.facets.name: run_differences(first.rows, first.analysis.env, run.rows, run.analysis.env)
                   for run in analysed.runs[1:]}
    if as_json:
        cases = matrix.cases.astype(object).where(matrix.cases.notna(), None)
        typer.echo(json.dumps({"runs": [run.facets.as_columns() for run in analysed.runs], "differences": differences,
                               "metric": matrix.metric.name, "threshold_pct": threshold,
                               "counts": {name: found.counts() for name, found in matrix.comparisons.items()},
                               "cases": cases.to_dict(orient="records")}, indent=2, default=str))
    else:
        for name, found in differences.items():
            for difference in found:
                err_console.print(Text(f"warning: {name} differs from {first.facets.name} in {difference}",
                                       style="yellow"))
        console.print(runs_table([run.facets for run in analysed.runs]))
        console.print(matrix_table(matrix, verdicts=True))
        for line in matrix.summary_lines():
            console.print(line, highlight=False, markup=False)
    _say_damage(loaded, "compare")
    if not fail_on_regression:
        return
    differing = [f"{name}: " + "; ".join(found) for name, found in differences.items() if found]
    if differing and not force:
        raise UsageError("--fail-on-regression refuses to judge runs that differ from the first in "
                         + " | ".join(differing) + " (pass --force to gate anyway)")
    if matrix.regressed():
        raise typer.Exit(1)


@command("history")
@with_width
def history_command(
    run_dir: list[Path] = typer.Argument(..., help=RUNS_HELP, metavar="RUN_DIR"),
    by: HistoryOrder = typer.Option("time", "--by", help="time (the run's date, env.json collected_at) or commit "
                                    "(the committer date of the commit the run recorded; see --commit-of)."),
    commit_of: Optional[str] = typer.Option(None, "--commit-of", help="With --by commit: order by the commit of "
                                            "this package (rpbench or a plugin distribution, as env.json `code` "
                                            "records it) instead of the checkout the sweep ran in."),
    metric: MetricName = typer.Option("latency", "--metric", help="What to follow: latency (median ms), throughput "
                                      "(img/s) or memory (peak MiB)."),
    threshold: float = typer.Option(5.0, "--threshold", help="Relative change (%, 0 to 1e6) a case must exceed, "
                                    "beyond both runs' p20–p80 spread, to be marked."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the history as one offline page (plotly "
                                        "figures per device model and curve) to this file."),
    labels: list[str] = typer.Option([], "--label", help=LABEL_HELP, metavar="RUN=NAME"),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit 1 when the last run marks a "
                                            "regression of any case (for CI)."),
) -> None:
    """Each case's value over runs ordered by time or commit, per device model, with changes beyond noise marked
    (against the previous run that measured the case on the same device model, by the rules of `compare`)."""
    from ..analysis import get_metric
    from ..analysis.history import history
    from ..views.runs_terminal import history_tables, runs_table

    if commit_of is not None and plain(by) != "commit":
        raise UsageError("--commit-of is for --by commit")
    if html is not None:
        output_file(html, "--html")
    loaded = _loaded(several(run_dir), labels)
    found = history(loaded, get_metric(plain(metric)), threshold, plain(by), commit_of)
    console.print(runs_table(found.runs, title=f"Runs in order of {found.by}"))
    for table in history_tables(found):
        console.print(table)
    console.print(found.summary_line(), highlight=False, markup=False)
    if html is not None:
        from ..results.store import write_file
        from ..views.runs_html import render_history_html

        console.print(Text(f"history: {write_file(html, render_history_html(found))}"))
    _say_damage(loaded, "history")
    last = len(found.runs) - 1
    changes = found.changes()
    if fail_on_regression and ((changes["position"] == last) & (changes["verdict"] == "regression")).any():
        raise typer.Exit(1)
