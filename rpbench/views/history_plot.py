"""The history figures (plotly): per device model and curve, the value of every size over the ordered runs, with
its p20–p80 spread as error bars; changes beyond noise are big triangles (red a regression, green an improvement)
and flagged points hollow. plotly.js is inlined once, so the page works offline.
"""
from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

from ..analysis.history import History
from .figures import fmt_tick, log_ticks
from .interactive import as_text
from .palette import DASHES, OTHER_COLORS

CHANGE_LOOKS = {"regression": ("triangle-up", "#d62728"), "improvement": ("triangle-down", "#2ca02c")}
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#111111",
          *OTHER_COLORS)


def _figure(found: History, device: str, name: str, points) -> go.Figure:
    fig = go.Figure()
    ticks = [p for p in range(len(found.labels)) if p in set(points["position"])]
    values = []
    for index, (tokens, rows) in enumerate(points.groupby("tokens", sort=True, dropna=False)):
        rows = rows[rows["ok"] & rows["value"].notna()].sort_values("position")
        if rows.empty:
            continue
        color = COLORS[index % len(COLORS)]
        label = as_text(f"N={int(tokens):,}" if tokens == tokens else "N not recorded")
        flagged = rows["flags"].notna().to_numpy()
        x, y = rows["position"].astype(int).tolist(), rows["value"].astype(float).tolist()
        values += [*y, *rows["low"].dropna().astype(float), *rows["high"].dropna().astype(float)]
        hover = [as_text(f"{found.labels[p]}: {v:.4g} {found.metric.unit}" + (f"; {w}" if isinstance(w, str) else ""))
                 for p, v, w in zip(x, y, rows["reason"])]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=label, legendgroup=label, customdata=hover,
            line={"color": color, "dash": DASHES[index // len(COLORS) % len(DASHES)]},
            marker={"color": color, "size": 7, "symbol": ["circle-open" if f else "circle" for f in flagged]},
            error_y={"type": "data", "symmetric": False, "color": color, "thickness": 1,
                     "array": (rows["high"].astype(float) - rows["value"].astype(float)).fillna(0).tolist(),
                     "arrayminus": (rows["value"].astype(float) - rows["low"].astype(float)).fillna(0).tolist()},
            hovertemplate="%{customdata}<extra>" + label + "</extra>"))
        for verdict, (symbol, mark) in CHANGE_LOOKS.items():
            changed = rows[rows["verdict"] == verdict]
            if len(changed):
                fig.add_trace(go.Scatter(
                    x=changed["position"].astype(int).tolist(), y=changed["value"].astype(float).tolist(),
                    mode="markers", name=f"{label}: {verdict}", legendgroup=label, showlegend=False,
                    marker={"symbol": symbol, "size": 16, "color": mark, "line": {"width": 1, "color": "#222"}},
                    hovertemplate=f"{verdict}<extra>{label}</extra>"))
    positive = [v for v in values if v > 0]
    y_ticks = log_ticks(min(positive), max(positive)) if positive else ()
    fig.update_xaxes(tickvals=ticks, ticktext=[as_text(found.labels[p]) for p in ticks], title_text=f"run (by "
                     f"{found.by})")
    fig.update_yaxes(type="log", tickvals=list(y_ticks), ticktext=[fmt_tick(t) for t in y_ticks],
                     title_text=as_text(f"{found.metric.label} ({found.metric.unit})"))
    fig.update_layout(title=as_text(f"{name}: {device}"), height=420, margin={"t": 70, "b": 120},
                      legend={"orientation": "h", "x": 0, "y": -0.35, "yanchor": "top"})
    return fig


def history_figures(found: History) -> list[go.Figure]:
    """One figure per device model and curve."""
    return [_figure(found, device, name, points)
            for (device, name), points in found.points.groupby(["device", "name"], sort=True)]


def history_figures_html(found: History) -> tuple[int, str]:
    """(how many figures, their divs); the first one carries plotly.js inline."""
    figures = history_figures(found)
    config = {"displaylogo": False, "responsive": True}
    return len(figures), "\n".join(pio.to_html(fig, full_html=False, include_plotlyjs=i == 0, config=config)
                                   for i, fig in enumerate(figures))
