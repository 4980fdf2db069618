"""The figures of report.html, drawn with plotly from `figures.Figure`: zoomable, with hover text. plotly.js is
inlined once, so the page works offline.

The legend sits below the panels in rows (it grows with the number of curves instead of scrolling and hiding some);
panels share their y axis; flagged points are hollow markers with their reason on hover.
"""
from __future__ import annotations

import html
import math

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .figures import Figure, Series, facet_grid, fmt_tick
from .palette import rgba

PANEL_HEIGHT = 380
LEGEND_ROW = 22  # px per legend row below the plot
LEGEND_PER_ROW = 3


def as_text(value: object) -> str:
    """User text (labels, settings) for plotly, which renders a subset of HTML in every string and fills `%{…}` in
    hover templates: entities instead of markup, so `<a href=…>` or `<span style=…>` shows as written."""
    return html.escape(str(value), quote=True).replace("%", "&#37;").replace("{", "&#123;").replace("}", "&#125;")


def _traces(figure: Figure, series: Series, shown: set[str]) -> list[go.Scatter]:
    name = as_text(series.name)
    keep = series.points(False)
    xs, ys = [series.x[i] for i in keep], [series.y[i] for i in keep]
    traces = []
    if figure.interval == "band" and series.low is not None and keep:
        low, high = [series.low[i] for i in keep], [series.high[i] for i in keep]
        traces.append(go.Scatter(x=xs + xs[::-1], y=high + low[::-1], mode="lines", fill="toself",
                                 fillcolor=rgba(series.color, 0.16), line={"width": 0}, hoverinfo="skip",
                                 showlegend=False, legendgroup=name))
    error = None
    if figure.interval == "bars" and series.low is not None:
        error = {"type": "data", "symmetric": False, "color": series.color, "thickness": 1.2,
                 "array": [series.high[i] - series.y[i] for i in keep],
                 "arrayminus": [series.y[i] - series.low[i] for i in keep]}
    hover = f"{name}<br>{as_text(figure.x_title)}: %{{x:,}}<br>{as_text(figure.y_title)}: %{{y:.4g}}<extra></extra>"
    traces.append(go.Scatter(
        x=xs, y=ys, mode="lines+markers", name=name, legendgroup=name, showlegend=series.name not in shown,
        line={"color": series.color, "width": 3.2 if series.highlight else 1.8, "dash": series.dash},
        marker={"symbol": series.marker, "size": 9 if series.highlight else 7, "color": series.color},
        error_y=error, hovertemplate=hover))
    out = series.points(True)
    if out:
        notes = [as_text(series.notes[i]) for i in out]
        traces.append(go.Scatter(
            x=[series.x[i] for i in out], y=[series.y[i] for i in out], mode="markers", name=f"{name} (flagged)",
            legendgroup=name, showlegend=False, customdata=notes,
            marker={"symbol": f"{series.marker}-open", "size": 11, "color": series.color, "line": {"width": 2}},
            hovertemplate=f"{name}<br>flagged, left out of fits: %{{customdata}}<br>%{{x:,}}: %{{y:.4g}}<extra></extra>"))
    return traces


def to_plotly(figure: Figure) -> go.Figure:
    rows, cols = facet_grid(len(figure.panels))
    titles = [as_text(p.title) for p in figure.panels] if any(p.title for p in figure.panels) else None
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes="all", horizontal_spacing=0.06)
    shown: set[str] = set()
    for index, panel in enumerate(figure.panels):
        row, col = index // cols + 1, index % cols + 1
        for series in panel.series:
            for trace in _traces(figure, series, shown):
                fig.add_trace(trace, row=row, col=col)
            shown.add(series.name)
        if figure.reference is not None:
            fig.add_hline(y=figure.reference, line={"color": "#555", "dash": "dot", "width": 1}, row=row, col=col,
                          annotation_text=as_text(figure.reference_label), annotation_position="bottom right")
    if figure.has_flagged:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="flagged: hollow, left out of fits",
                                 marker={"symbol": "circle-open", "size": 10, "color": "#555"}), row=1, col=1)
    fig.update_xaxes(type="log", title_text=as_text(figure.x_title), tickvals=list(figure.x_ticks),
                     ticktext=[fmt_tick(t) for t in figure.x_ticks], minor={"showgrid": False})
    fig.update_yaxes(type="log", tickvals=list(figure.y_ticks), ticktext=[fmt_tick(t) for t in figure.y_ticks])
    for index in range(len(figure.panels)):
        if index % cols == 0:
            fig.update_yaxes(title_text=as_text(figure.y_title), row=index // cols + 1, col=1)
    legend_rows = math.ceil((len(figure.names) + 1) / LEGEND_PER_ROW)
    bottom = 70 + LEGEND_ROW * legend_rows
    fig.update_layout(
        title=as_text(figure.title), height=90 + PANEL_HEIGHT * rows + bottom, margin={"t": 90, "b": bottom},
        legend={"orientation": "h", "x": 0, "xanchor": "left", "y": -70 / (PANEL_HEIGHT * rows), "yanchor": "top",
                "entrywidth": 1 / LEGEND_PER_ROW, "entrywidthmode": "fraction"},
    )
    return fig


def figures_html(figures: list[Figure]) -> str:
    """Figure divs; the first one carries plotly.js inline, the rest reuse it."""
    config = {"displaylogo": False, "responsive": True}
    return "\n".join(
        pio.to_html(to_plotly(fig), full_html=False, include_plotlyjs=index == 0, config=config)
        for index, fig in enumerate(figures)
    )
