"""report.html: one self-contained, offline page per run (plotly.js inlined once, no network needed to open it)."""
from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from . import analysis, store
from .analysis import Metric, fmt_exponent, fmt_flops, fmt_int, fmt_number

REPORT_NAME = "report.html"
PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Dark24

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


# ---------------------------------------------------------------- figures


def _rgba(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    red, green, blue = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({red},{green},{blue},{alpha})"


class _Colors:
    """One colour per line name across every figure, so a mechanism looks the same everywhere."""

    def __init__(self) -> None:
        self._assigned: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._assigned:
            self._assigned[name] = PALETTE[len(self._assigned) % len(PALETTE)]
        return self._assigned[name]


def _facet_grid(facets: list[str]) -> tuple[int, int]:
    cols = 1 if len(facets) == 1 else 2
    return math.ceil(len(facets) / cols), cols


def _curve_figure(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    line: str,
    title: str,
    x_title: str,
    y_title: str,
    colors: _Colors,
    band: Callable[[pd.DataFrame], tuple[pd.Series, pd.Series]] | None = None,
) -> go.Figure:
    """Log-log lines (median with markers) per `line` value, optionally with a shaded p20–p80 band, per facet."""
    facets = sorted(data["facet"].unique())
    rows, cols = _facet_grid(facets)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=facets if facets != [""] else None)
    shown: set[str] = set()
    for index, facet in enumerate(facets):
        row, col = index // cols + 1, index % cols + 1
        for name, group in data[data["facet"] == facet].groupby(line, sort=True):
            group = group.sort_values(x)
            xs = group[x].astype(float).tolist()
            color = colors(name)
            if band is not None:
                low, high = (s.astype(float).tolist() for s in band(group))
                fig.add_trace(
                    go.Scatter(
                        x=xs + xs[::-1],
                        y=high + low[::-1],
                        mode="lines",
                        fill="toself",
                        fillcolor=_rgba(color, 0.18),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=name,
                    ),
                    row=row,
                    col=col,
                )
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=group[y].astype(float).tolist(),
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=name not in shown,
                    line={"color": color},
                    hovertemplate=f"{html.escape(name)}<br>{x_title}: %{{x:,}}<br>{y_title}: %{{y:.4g}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
            shown.add(name)
    fig.update_xaxes(type="log", title_text=x_title, exponentformat="SI")
    fig.update_yaxes(type="log", title_text=y_title, exponentformat="SI")
    fig.update_layout(title=title, height=90 + 380 * rows, margin={"t": 90}, legend={"title": {"text": "mechanism"}})
    return fig


def build_figures(frame: pd.DataFrame) -> list[go.Figure]:
    """Every scaling figure the run has data for (a figure with nothing to draw is left out)."""
    ok = frame[frame["ok"] & frame["tokens"].notna()]
    colors = _Colors()
    latency_band = analysis.METRICS["latency"].band
    throughput_band = analysis.METRICS["throughput"].band
    figures = []

    def add(data: pd.DataFrame, column: str, **kwargs: Any) -> None:
        data = data[data[column].notna() & (data[column].astype("Float64") > 0)]
        if not data.empty:
            figures.append(_curve_figure(data, y=column, colors=colors, **kwargs))

    add(ok, "latency_ms_median", x="tokens", line="line", band=latency_band,
        title="Latency per call vs tokens (median; band p20–p80)", x_title="tokens N", y_title="latency (ms)")
    add(ok, "peak_mem_mb", x="tokens", line="line",
        title="Peak memory per call vs tokens (above resident baseline)", x_title="tokens N", y_title="peak memory (MiB)")
    add(ok[ok["resolution"].notna()], "throughput_img_s", x="resolution", line="line", band=throughput_band,
        title="Throughput vs image resolution (band from latency p20–p80)", x_title="image side (px)",
        y_title="throughput (img/s)")
    with_m = ok[ok["m"].notna()].copy()
    if not with_m.empty:
        with_m["m_line"] = [
            " · ".join(part for part in (mech, f"N={int(n):,}", setting) if part)
            for mech, n, setting in zip(with_m["mechanism"], with_m["tokens"], with_m["setting"])
        ]
        varies = with_m.groupby(["facet", "m_line"])["m"].transform("nunique") > 1
        add(with_m[varies], "latency_ms_median", x="m", line="m_line", band=latency_band,
            title="Latency vs representatives M at fixed N (median; band p20–p80)", x_title="representatives M",
            y_title="latency (ms)")
    add(ok, "flops", x="tokens", line="line",
        title="FLOPs per call vs tokens (counted, else analytic; 1 MAC = 2 FLOPs)", x_title="tokens N",
        y_title="FLOPs per call")
    add(ok, "tflops_s", x="tokens", line="line",
        title="Achieved compute vs tokens", x_title="tokens N", y_title="achieved TFLOP/s")
    return figures


def _figures_html(figures: list[go.Figure]) -> str:
    """Figure divs; the first one carries plotly.js inline, the rest reuse it."""
    config = {"displaylogo": False, "responsive": True}
    return "\n".join(
        pio.to_html(fig, full_html=False, include_plotlyjs=index == 0, config=config)
        for index, fig in enumerate(figures)
    )


# ---------------------------------------------------------------- tables


def _env_html(env: Mapping[str, Any], frame: pd.DataFrame, run_dir: Path) -> str:
    devices = sorted(frame["device_name"].dropna().unique())
    items = [("run", str(run_dir)), ("device", ", ".join(devices) if devices else "not recorded")]
    for label, key in ENV_FIELDS.items():
        value = env.get(key)
        text = "not recorded" if value in (None, "") else str(value)
        if key == "git_commit" and env.get("git_dirty"):
            text += " (uncommitted changes)"
        items.append((label, text))
    statuses = frame["status"].fillna("?").value_counts()
    items.append(("cases", f"{len(frame)}: " + ", ".join(f"{count} {status}" for status, count in statuses.items())))
    rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items)
    full = html.escape(json.dumps(dict(env), indent=2, default=str, sort_keys=True))
    return f'<dl class="env">{rows}</dl><details><summary>all of env.json</summary><pre>{full}</pre></details>'


def _scaling_html(exponents: pd.DataFrame, crossings: pd.DataFrame, baseline: str | None, metric: Metric) -> str:
    header = ["curve"] + [f"k {q} [95 % CI]" for q in analysis.SCALING_QUANTITIES] + ["points", "R² (latency)"]
    if baseline is not None:
        header.append(f"crossover vs {baseline} ({metric.label})")
    curves = pd.concat([exponents[["_context", "_variant", "line"]], crossings.reindex(columns=["_context", "_variant", "line"])])
    rows = []
    for _, curve in curves.drop_duplicates(["_context", "_variant"]).iterrows():
        same = (exponents["_context"] == curve["_context"]) & (exponents["_variant"] == curve["_variant"])
        fits = exponents[same].set_index("quantity")
        cells = [(_esc(curve["line"]), "text")]
        cells += [(_esc(fmt_exponent(fits.loc[q])) if q in fits.index else "—", "") for q in analysis.SCALING_QUANTITIES]
        latency = fits.loc["latency"] if "latency" in fits.index else None
        cells.append((str(int(fits["n_points"].max())) if not fits.empty else "—", ""))
        cells.append((f"{latency['r2']:.3f}" if latency is not None else "—", ""))
        if baseline is not None:
            found = crossings[(crossings["_context"] == curve["_context"]) & (crossings["_variant"] == curve["_variant"])]
            text = "; ".join(
                analysis.describe_crossover(c["status"], c["tokens"], c["resolution"], metric) for _, c in found.iterrows()
            )
            cells.append((_esc(text or "—"), "text"))
        rows.append(cells)
    if not rows:
        return "<p>No curve has 3 or more measured sizes, so no exponent was fitted.</p>"
    return _table(header, rows)


def _cases_html(summary: pd.DataFrame, baseline: str | None, metric: Metric) -> str:
    flags = analysis.best_flags(summary)
    settings = [" · ".join(p for p in (f, s) if p) for f, s in zip(summary["facet"], summary["setting"])]
    show_setting = any(settings)
    show_peak = bool((summary["tflops_s"].notna() & (summary["device"] == "cuda")).any())  # the table has no CPUs
    header = ["setting"] if show_setting else []
    header += ["mechanism", "N", "res px", "median ms", "p20–p80 ms", "img/s", "peak MiB", "FLOPs", "TFLOP/s"]
    header += ["% datasheet peak"] if show_peak else []
    header += ["% measured ceiling"]
    if baseline is not None:
        header.append(f"{metric.label} vs {baseline}")
    header.append("status")
    rows, classes = [], []
    for (index, row), setting in zip(summary.iterrows(), settings):
        best = flags.loc[index]
        cells = [(_esc(setting), "text")] if show_setting else []
        cells += [(_esc(row["series"]), "text"), (fmt_int(row["tokens"]), ""), (fmt_int(row["resolution"]), "")]
        if row["ok"]:
            measured = {
                "latency_ms_median": fmt_number(row["latency_ms_median"]),
                "spread": f"{fmt_number(row['latency_ms_p20'])}–{fmt_number(row['latency_ms_p80'])}",
                "throughput_img_s": fmt_number(row["throughput_img_s"]),
                "peak_mem_mb": fmt_number(row["peak_mem_mb"]),
                "flops": fmt_flops(row["flops"]),
                "tflops_s": fmt_number(row["tflops_s"]),
            }
            if show_peak:
                measured["pct_peak"] = "—" if pd.isna(row["tflops_s"]) else (
                    "unknown" if pd.isna(row["pct_peak"]) else f"{row['pct_peak']:.1f}%"
                )
            measured["pct_ceiling"] = "—" if pd.isna(row["pct_ceiling"]) else f"{row['pct_ceiling']:.1f}%"
            if baseline is not None:
                measured["speedup"] = "—" if pd.isna(row["speedup"]) else (
                    f"{row['speedup']:.2f}× [{row['speedup_low']:.2f}–{row['speedup_high']:.2f}]"
                )
            cells += [(_esc(text), "best" if key in best.index and best[key] else "") for key, text in measured.items()]
            cells.append(("ok", "text"))
        else:
            cells += [("—", "")] * (len(header) - len(cells) - 1)
            note = "" if pd.isna(row["notes"]) else f": {row['notes']}"
            cells.append((_esc(f"{row['status']}{note}"), "text"))
        rows.append(cells)
        classes.append("" if row["ok"] else "failed")
    return _table(header, rows, classes)


def _traces_html(summary: pd.DataFrame) -> str:
    traced = summary[summary["trace"].notna() & (summary["trace"].astype("string").str.strip() != "")]
    if traced.empty:
        return ""
    rows = [
        [(_esc(row["case_id"]), "text"), (_esc(row["line"]), "text"), (_esc(fmt_int(row["tokens"])), ""),
         (f'<a href="{html.escape(str(row["trace"]), quote=True)}">{_esc(row["trace"])}</a>', "text")]
        for _, row in traced.iterrows()
    ]
    note = "<p>Open a trace in Perfetto (ui.perfetto.dev) or chrome://tracing; paths are relative to the run dir.</p>"
    return "<h2>Profiler traces</h2>" + note + _table(["case", "mechanism", "N", "trace"], rows)


# ---------------------------------------------------------------- the page


def render_html(frame: pd.DataFrame, env: Mapping[str, Any], run_dir: Path, baseline: str | None, metric: Metric) -> str:
    """The whole page for a prepared frame; baseline must already be resolved (or None)."""
    summary = analysis.case_summary(frame, env, baseline, metric)
    exponents = analysis.scaling_exponents(frame)
    crossings = analysis.crossovers(frame, baseline, metric) if baseline is not None else pd.DataFrame()
    figures = build_figures(frame)
    command = env.get("command")
    reproduce = f"<pre><code>{_esc(command)}</code></pre>" if command else "<p>Not recorded in env.json.</p>"
    title = f"rpbench report: {run_dir.resolve().name}"
    baseline_note = f"baseline: {_esc(baseline)}" if baseline is not None else "no baseline in this run"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="rpbench-figures" content="{len(figures)}">
<title>{_esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{_esc(title)}</h1>
<p>Headline metric: {_esc(metric.label)} ({_esc(metric.unit)}); {baseline_note}.
Latencies are per call; FLOPs count 1 multiply-accumulate as 2 FLOPs.</p>
<h2>Environment</h2>
{_env_html(env, frame, run_dir)}
<h2>Reproduce</h2>
{reproduce}
<h2>Scaling exponents and crossovers</h2>
<p>Least-squares fit of log y = a + k·log N per curve with 3 or more sizes; dense attention should show k ≈ 2,
linear mechanisms k ≈ 1. Crossovers interpolate both curves in log-log space between measured sizes.</p>
{_scaling_html(exponents, crossings, baseline, metric)}
<h2>Figures</h2>
{_figures_html(figures) if figures else "<p>No successful case to plot.</p>"}
<h2>Cases</h2>
<p>Bold green: best among cases of the same size and setting. Grey rows did not produce a measurement.</p>
{_cases_html(summary, baseline, metric)}
{_traces_html(summary)}
</body>
</html>
"""


def write_html(run_dir: str | Path, baseline: str | None = None, metric: str = "latency") -> Path:
    """Write (or refresh) report.html inside the run dir and return its path.

    Raises store.ResultsError / analysis.AnalysisError with one-line messages for unusable input.
    """
    chosen_metric = analysis.get_metric(metric)
    directory = store.results_path(run_dir).parent
    frame = analysis.prepare(store.load(directory))
    chosen = analysis.resolve_baseline(frame, baseline)
    page = render_html(frame, store.load_env(directory), directory, chosen, chosen_metric)
    path = directory / REPORT_NAME
    path.write_text(page, encoding="utf-8")
    return path
