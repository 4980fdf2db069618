"""The offline pages of several runs, each one self-contained file (plotly.js inlined once, no network):
the report of several runs (run legend, figures with one panel per device model and one curve per run, the case
matrix against the first run, each run's fits) and the history page (each case over ordered runs)."""
from __future__ import annotations

import html
import json
from typing import Sequence

import pandas as pd

from ..analysis import SCALING_QUANTITIES
from ..analysis.history import History
from ..analysis.matrix import RunMatrix
from ..analysis.runs import RunsAnalysis
from ..core.schema import MEASURED_STATUSES
from ..results.runs import RunFacets
from .format import MISSING, SPEEDUP_NOTE, curve_fits, fmt_exponent, fmt_int, fmt_number, fmt_speedup
from .html import STYLE, _esc, _figures, _table, page_head
from .runs_terminal import commit_text

EXTRA_STYLE = "td.regression { color: #b00; font-weight: bold; } td.improvement { color: #11772d; font-weight: bold; }"


def _page(title: str, figures: int, body: str) -> str:
    return f"{page_head(title, figures, STYLE + EXTRA_STYLE)}\n{body}\n</body>\n</html>\n"


def runs_legend_html(runs: Sequence[RunFacets], envs: Sequence[dict] | None = None) -> str:
    """The run legend: each run's name and facets, and (with `envs`) its whole env.json behind a fold."""
    header = ["#", "run", "device", "host", "torch", "commit", "timer", "date", "dir"]
    rows = [[(str(n), ""), *((_esc(v), "text") for v in (f.name, f.device, f.host, f.torch, commit_text(f), f.timer,
                                                           f.date, f.directory))] for n, f in enumerate(runs, 1)]
    folds = "".join(f"<details><summary>env.json of {_esc(f.name)}</summary><pre>"
                    f"{html.escape(json.dumps(env, indent=2, default=str, sort_keys=True))}</pre></details>"
                    for f, env in zip(runs, envs or ()))
    return _table(header, rows) + folds


def _value(row: pd.Series) -> tuple[str, str]:
    if row["status"] not in MEASURED_STATUSES:
        return _esc(row["status"]), "text"
    flagged = isinstance(row["flags"], str) and bool(row["flags"])
    return _esc(fmt_number(row["value"]) + ("*" if flagged else "")), "flag" if flagged else ""


def matrix_html(matrix: RunMatrix, verdicts: bool = False) -> str:
    first = matrix.names[0]
    header = ["case", "N", *(f"{n} {matrix.metric.unit}" for n in matrix.names),
              *(f"{n} × {first}" for n in matrix.names[1:])]
    rows, classes = [], []
    for (_, tokens), found in matrix.cases.groupby(["case_id", "tokens"], sort=False, dropna=False):
        by_run = {row["run"]: row for _, row in found.iterrows()}
        cells = [(_esc(found["name"].iloc[0]), "text"), (fmt_int(tokens), "")]
        cells += [_value(by_run[n]) if n in by_run else (MISSING, "") for n in matrix.names]
        for name in matrix.names[1:]:
            row = by_run.get(name)
            verdict = row["verdict"] if row is not None and isinstance(row["verdict"], str) else ""
            shown = verdicts and verdict in ("regression", "improvement", "flagged")
            text = MISSING if row is None else fmt_speedup(row) + (f" {verdict}" if shown else "")
            cells.append((_esc(text), verdict if shown else ""))
        rows.append(cells)
        classes.append("flagged" if found["flags"].notna().any() else "")
    words = f"× {first}: the speedup over {first} (> 1: better than {first}); * flagged, left out of speedups."
    note = f"<p>{_esc(words)} {_esc(SPEEDUP_NOTE)}</p>"
    return note + _table(header, rows, classes)


def _scaling_html(runs: RunsAnalysis) -> str:
    header = ["curve", "run", *(f"k {q} [95 % CI]" for q in SCALING_QUANTITIES)]
    if runs.baseline is not None:
        header.append(f"crossover vs {runs.baseline} ({runs.metric.label})")
    rows = []
    for run in runs.runs:
        analysis = run.analysis
        for curve in curve_fits(analysis.exponents, analysis.crossings, analysis.baseline, analysis.metric):
            cells = [(_esc(curve.line), "text"), (_esc(run.facets.name), "text")]
            cells += [(_esc(fmt_exponent(curve.fits[q])) if q in curve.fits else MISSING, "") for q in SCALING_QUANTITIES]
            if runs.baseline is not None:
                cells.append((_esc(curve.crossover or MISSING), "text"))
            rows.append((curve.line, cells))
    if not rows:
        return "<p>No curve has 2 or more measured sizes.</p>"
    return _table(header, [cells for _, cells in sorted(rows, key=lambda item: item[0])])


def render_runs_html(runs: RunsAnalysis, matrix: RunMatrix) -> str:
    """The page of several runs."""
    count, figures = _figures(runs.combined)
    baseline = f"baseline: {_esc(runs.baseline)}" if runs.baseline else "no baseline in these runs"
    varying = ", ".join(runs.varying()) or "nothing recorded"
    body = f"""<p>{len(runs.runs)} runs; headline metric: {_esc(runs.metric.label)} ({_esc(runs.metric.unit)});
{baseline} (each run's speedups against its own {_esc(runs.baseline or "baseline")} rows). The runs differ in: {_esc(varying)}.
Cases are matched across runs by case_id (mechanism, label, knobs, size, batch, dim, heads, dtype, mode, ...).</p>
<h2>Runs</h2>
{runs_legend_html([r.facets for r in runs.runs], [dict(r.analysis.env) for r in runs.runs])}
<h2>Figures</h2>
<p>One panel per device model (titled with its run when one run measured it) and per dtype and mode; where runs
share a device model, each curve's name ends in its run's name (the mechanism keeps its colour, the runs differ by
dash). A curve never joins points of two runs, two device models or two timers; flagged points are hollow.</p>
{figures}
<h2>Cases across runs</h2>
{matrix_html(matrix)}
<h2>Scaling exponents and crossovers per run</h2>
{_scaling_html(runs)}"""
    return _page(f"rpbench report: {len(runs.runs)} runs", count, body)


def _history_table(found: History) -> str:
    parts = []
    for device, points in found.points.groupby("device", sort=True):
        present = sorted(points["position"].unique())
        header = ["case", "N", *(found.labels[p] for p in present)]
        rows = []
        for (_, tokens), found_rows in points.groupby(["case_id", "tokens"], sort=False, dropna=False):
            at = {row["position"]: row for _, row in found_rows.iterrows()}
            cells = [(_esc(found_rows["name"].iloc[-1]), "text"), (fmt_int(tokens), "")]
            for position in present:
                row = at.get(position)
                if row is None:
                    cells.append(("", ""))
                    continue
                text, css = _value(row)
                verdict = row["verdict"] if isinstance(row["verdict"], str) else ""
                if verdict in ("regression", "improvement") and pd.notna(row["ratio"]):
                    text, css = f"{text} ({100 * (row['ratio'] - 1):+.0f} %)", verdict
                cells.append((text, css))
            rows.append(cells)
        parts.append(f"<h3>{_esc(device)}</h3>" + _table(header, rows))
    return "".join(parts)


def render_history_html(found: History) -> str:
    """The history page: run legend, one figure per device model and curve, and the table of values."""
    try:
        from .history_plot import history_figures_html
        count, figures = history_figures_html(found)
    except ImportError as err:
        count, figures = 0, f"<p>No figures: plotly is not importable here ({_esc(err)}); the table below is complete.</p>"
    body = f"""<p>{_esc(found.summary_line())}.</p>
<p>Each point is one run's median {_esc(found.metric.label)} of the case (bars: p20–p80), the runs ordered by
{_esc(found.by)}. A big red triangle marks a regression, a green one an improvement: a change beyond the threshold
and beyond both p20–p80 spreads against the previous run that measured the case on the same device model (the
rules of <code>rpbench compare</code>); hollow points are flagged and not judged. Device models never share a line.</p>
<h2>Runs</h2>
{runs_legend_html(found.runs)}
<h2>Figures</h2>
{figures}
<h2>Values</h2>
{_history_table(found)}"""
    return _page(f"rpbench history: {len(found.runs)} runs", count, body)
