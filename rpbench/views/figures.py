"""The scaling figures of report.html (plotly): one colour per curve across every figure, p20–p80 bands, facets per
dtype and mode. The page embeds them (`figures_html`); plotly.js is inlined once, so the page works offline."""
from __future__ import annotations

import html
import math
from typing import Any, Callable

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..analysis import METRICS

PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Dark24


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


def as_text(value: object) -> str:
    """User text (labels, settings) for plotly, which renders a subset of HTML in every string and fills `%{…}` in
    hover templates: entities instead of markup, so `<a href=…>` or `<span style=…>` shows as written."""
    return html.escape(str(value), quote=True).replace("%", "&#37;").replace("{", "&#123;").replace("}", "&#125;")


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
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[as_text(f) for f in facets] if facets != [""] else None)
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
                        legendgroup=as_text(name),
                    ),
                    row=row,
                    col=col,
                )
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=group[y].astype(float).tolist(),
                    mode="lines+markers",
                    name=as_text(name),
                    legendgroup=as_text(name),
                    showlegend=name not in shown,
                    line={"color": color},
                    hovertemplate=f"{as_text(name)}<br>{x_title}: %{{x:,}}<br>{y_title}: %{{y:.4g}}<extra></extra>",
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
    latency_band = METRICS["latency"].band
    throughput_band = METRICS["throughput"].band
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


def figures_html(figures: list[go.Figure]) -> str:
    """Figure divs; the first one carries plotly.js inline, the rest reuse it."""
    config = {"displaylogo": False, "responsive": True}
    return "\n".join(
        pio.to_html(fig, full_html=False, include_plotlyjs=index == 0, config=config)
        for index, fig in enumerate(figures)
    )
