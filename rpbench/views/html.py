"""report.html: one self-contained, offline page per run (plotly.js inlined once, no network needed to open it).

The page and its tables are built here; the figures in `figures`."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..analysis import SCALING_QUANTITIES, Metric, RunAnalysis, analyse_run, best_flags, flag_summary
from ..results import store
from .figures import build_figures
from .format import (MISSING, SPEEDUP_NOTE, curve_fits, flag_text, fmt_exponent, fmt_int, fmt_status,
                     interval_methods, left_out_text, measured_cells)

# Environment header: label -> env.json key (as environment.collect writes it). The device comes from the rows.
ENV_FIELDS = {
    "torch": "torch",
    "CUDA": "cuda",
    "threads": "threads",
    "rpbench": "rpbench",
    "git commit": "git_commit",
    "python": "python",
    "host": "hostname",
    "collected": "collected_at",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1400px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
th { background: #f3f3f3; } td.text { text-align: left; white-space: normal; }
tr.failed td { color: #999; } td.best { font-weight: bold; color: #11772d; }
tr.flagged td { background: #fff4d6; } td.flag { color: #8a5300; } p.flags { font-weight: bold; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; }
.env { display: grid; grid-template-columns: max-content auto; gap: .1rem 1rem; }
.env dt { font-weight: bold; } .env dd { margin: 0; }
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value))


def _table(header: list[str], rows: list[list[tuple[str, str]]], row_classes: list[str] | None = None) -> str:
    """rows hold (already escaped html, css class) cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for index, cells in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        tds = "".join(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>" for text, cls in cells)
        body.append(f"<tr{css}>{tds}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# ---------------------------------------------------------------- tables


def _env_html(env: Mapping[str, Any], frame: pd.DataFrame, run_dir: Path) -> str:
    devices = sorted(frame["device_name"].dropna().unique())
    items = [("run", str(run_dir)), ("device", ", ".join(devices) if devices else "not recorded")]
    for label, key in ENV_FIELDS.items():
        value = env.get(key)
        text = "not recorded" if value in (None, "") else str(value)
        if key == "cuda" and value is None and "cuda_available" in env and not env.get("cuda_available"):
            text = "none (this torch has no CUDA)" if "+cpu" in str(env.get("torch", "")) else "no GPU seen"
        if key == "git_commit" and env.get("git_dirty"):
            text += " (uncommitted changes)"
        items.append((label, text))
    if env.get("assume_quiet"):
        from .terminal import ASSUME_QUIET_NOTE

        items.append(("note", ASSUME_QUIET_NOTE))
    statuses = frame["status"].fillna("?").value_counts()
    items.append(("cases", f"{len(frame)}: " + ", ".join(f"{count} {status}" for status, count in statuses.items())))
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    full = html.escape(json.dumps(dict(env), indent=2, default=str, sort_keys=True))
    return f'<dl class="env">{rows}</dl><details><summary>all of env.json</summary><pre>{full}</pre></details>'


def _scaling_html(exponents: pd.DataFrame, crossings: pd.DataFrame, baseline: str | None, metric: Metric) -> str:
    header = ["curve"] + [f"k {q} [95 % CI]" for q in SCALING_QUANTITIES] + ["CI of k", "points", "R² (latency)"]
    if baseline is not None:
        header.append(f"crossover vs {baseline} ({metric.label})")
    rows = []
    for curve in curve_fits(exponents, crossings, baseline, metric):
        cells = [(_esc(curve.line), "text")]
        cells += [(_esc(fmt_exponent(curve.fits[q]) + left_out_text(curve.fits[q])) if q in curve.fits else MISSING, "")
                  for q in SCALING_QUANTITIES]
        cells.append((_esc(interval_methods(curve.fits)), "text"))
        points = max((int(fit["n_points"]) for fit in curve.fits.values()), default=None)
        latency = curve.fits.get("latency")
        cells.append((MISSING if points is None else str(points), ""))
        cells.append((MISSING if latency is None or pd.isna(latency["r2"]) else f"{latency['r2']:.3f}", ""))
        if curve.crossover is not None:
            cells.append((_esc(curve.crossover), "text"))
        rows.append(cells)
    if not rows:
        return "<p>No curve has 2 or more measured sizes.</p>"
    return _table(header, rows)


def _cases_html(summary: pd.DataFrame, baseline: str | None, metric: Metric) -> str:
    flags = best_flags(summary)
    settings = [" · ".join(p for p in (f, s) if p) for f, s in zip(summary["facet"], summary["setting"])]
    show_setting = any(settings)
    show_peak = bool((summary["tflops_s"].notna() & (summary["device"] == "cuda")).any())  # the table has no CPUs
    # Columns every row would leave empty are not shown (a token suite has no resolutions).
    show_resolution = bool(summary["resolution"].notna().any())
    show_ceiling = bool(summary["pct_ceiling"].notna().any() or summary["pct_ceiling_broken"].any())
    columns = ["latency_ms_median", "spread", "throughput_img_s", "peak_mem_mb", "flops", "tflops_s"]
    columns += ["pct_peak"] * show_peak + ["pct_ceiling"] * show_ceiling + ["speedup"] * (baseline is not None)
    header = ["setting"] if show_setting else []
    header += ["mechanism", "N"] + ["res px"] * show_resolution
    header += ["median ms", "p20–p80 ms", "img/s", "peak MiB", "FLOPs", "TFLOP/s"]
    header += ["% datasheet peak"] if show_peak else []
    header += ["% measured ceiling"] if show_ceiling else []
    if baseline is not None:
        header.append(f"{metric.label} vs {baseline}")
    header.append("status")
    show_flags = bool(summary["flagged"].any() or summary["noisy"].fillna(False).astype(bool).any()
                      or summary["launch_bound"].fillna(False).astype(bool).any())
    header += ["flags"] * show_flags
    rows, classes = [], []
    for (index, row), setting in zip(summary.iterrows(), settings):
        cells = [(_esc(setting), "text")] if show_setting else []
        cells += [(_esc(row["series"]), "text"), (fmt_int(row["tokens"]), "")]
        cells += [(fmt_int(row["resolution"]), "")] * show_resolution
        if row["ok"]:
            best, texts = flags.loc[index], measured_cells(row)
            cells += [(_esc(texts[key]), "best" if key in best.index and best[key] else "") for key in columns]
            cells.append((_esc(row["status"]), "text"))
        else:
            cells += [(MISSING, "")] * len(columns)
            cells.append((_esc(fmt_status(row)), "text"))
        if show_flags:
            cells.append((_esc(flag_text(row)), "text flag"))
        rows.append(cells)
        classes.append("failed" if not row["ok"] else "flagged" if row["flagged"] else "")
    note = f"<p>{_esc(SPEEDUP_NOTE)}</p>" if baseline is not None else ""
    return f"<p class=\"flags\">{_esc(flag_summary(summary))}</p>" + note + _table(header, rows, classes)


_RUN_DIR_LINK = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def run_dir_link(value: object) -> str:
    """A trace path as a link only when it is a plain relative path inside the run dir (no scheme such as
    `javascript:`, no `..`, not absolute); anything else is shown as text."""
    text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
    inside = _RUN_DIR_LINK.fullmatch(text) is not None and ".." not in text.split("/")
    if not inside:
        return _esc(text)
    return f'<a href="{html.escape(text, quote=True)}">{_esc(text)}</a>'


def _traces_html(summary: pd.DataFrame) -> str:
    traced = summary[summary["trace"].notna() & (summary["trace"].astype("string").str.strip() != "")]
    if traced.empty:
        return ""
    rows = [
        [(_esc(row["case_id"]), "text"), (_esc(row["line"]), "text"), (_esc(fmt_int(row["tokens"])), ""),
         (run_dir_link(row["trace"]), "text")]
        for _, row in traced.iterrows()
    ]
    note = "<p>Open a trace in Perfetto (ui.perfetto.dev) or chrome://tracing; paths are relative to the run dir.</p>"
    return "<h2>Profiler traces</h2>" + note + _table(["case", "mechanism", "N", "trace"], rows)


# ---------------------------------------------------------------- the page


def _figures(run: RunAnalysis) -> tuple[int, str]:
    """(how many figures, their html). Without plotly (the offline GPU images lack it) the page keeps every
    table and says why it has no figures."""
    try:
        from .interactive import figures_html
    except ImportError as err:
        return 0, (f"<p>No figures: plotly is not importable here ({_esc(err)}); every table below is complete. "
                   f"<code>pip install plotly</code> and run <code>rpbench report</code> again for them.</p>")
    figures = build_figures(run)
    return len(figures), figures_html(figures) if figures else "<p>No successful case to plot.</p>"


def page_head(title: str, figures: int, style: str = STYLE) -> str:
    """An offline page's head and its title line, with the figure count the browser tests read."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="rpbench-figures" content="{figures}">
<title>{_esc(title)}</title>
<style>{style}</style>
</head>
<body>
<h1>{_esc(title)}</h1>"""


def render_html(run: RunAnalysis, run_dir: Path) -> str:
    """The whole page of an analysed run."""
    env, metric, baseline = run.env, run.metric, run.baseline
    count, figures = _figures(run)
    command = env.get("command")
    reproduce = f"<pre><code>{_esc(command)}</code></pre>" if command else "<p>Not recorded in env.json.</p>"
    title = f"rpbench report: {run_dir.resolve().name}"
    baseline_note = f"baseline: {_esc(baseline)}" if baseline is not None else "no baseline in this run"
    return f"""{page_head(title, count)}
<p>Headline metric: {_esc(metric.label)} ({_esc(metric.unit)}); {baseline_note}.
Latencies are per call; FLOPs count 1 multiply-accumulate as 2 FLOPs.</p>
<h2>Environment</h2>
{_env_html(env, run.frame, run_dir)}
<h2>Reproduce</h2>
{reproduce}
<h2>Scaling exponents and crossovers</h2>
<p>Least-squares fit of log y = a + k·log N per curve with 4 or more sizes (fewer: "n/a"); dense attention should show k ≈ 2,
linear mechanisms k ≈ 1. Crossovers interpolate both curves in log-log space between measured sizes. Intervals are
95 %: latency exponents and crossovers from draws of every case's latency (t over its pass medians, so the drift
between passes is inside; within its one pass for a single-pass case), the fit or crossover redone per draw;
memory and FLOP exponents from the fit's t-interval; "CI of k" says which.</p>
{_scaling_html(run.exponents, run.crossings, baseline, metric)}
<h2>Figures</h2>
{figures}
<h2>Cases</h2>
<p>Bold green: best among the unflagged cases of the same size and setting. Grey rows did not produce a
measurement. Amber rows are flagged (disturbed, unstable, throttled or implausible: the flags column says why) and
are left out of fits, crossovers and speedups; "noisy" in the spread marks an IQR above 10 % of the median.</p>
{_cases_html(run.summary, baseline, metric)}
{_traces_html(run.summary)}
</body>
</html>
"""


def write_html(run_dir: str | Path, baseline: str | None = None, metric: str = "latency") -> Path:
    """Write (or refresh) report.html inside the run dir and return its path.

    Raises ResultsError / AnalysisError with one-line messages for unusable input.
    """
    run = store.load_run(run_dir)
    analysed = analyse_run(run.frame, run.env, baseline, metric, samples=run.samples)
    return store.write_report(run.directory, render_html(analysed, run.directory))
