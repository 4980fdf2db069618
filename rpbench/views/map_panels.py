"""The panels of a routing-map page, drawn with matplotlib's Agg/SVG renderers (no display, no browser, no network).

Each panel is one small figure over the R×R image: the image itself, the hard assignment as a colour per
representative with white lines where it changes, and for each query point the map through the representatives and
dense attention's map, as a heat overlay on the greyed image. Token maps are drawn cell by cell over their patches
(nearest, never smoothed), so a patch's colour is its token's value.
"""
from __future__ import annotations

import io
from typing import Callable

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure

from ..core.maps import RoutingMaps

PANEL_INCHES = 3.4
DPI = 110
# 60 distinct colours (tab20, tab20b, tab20c); representative r gets colour r mod 60.
REP_COLOURS = ListedColormap([colour for name in ("tab20", "tab20b", "tab20c") for colour in colormaps[name].colors])


def _grey(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0


def _axes(title: str, colorbar: bool = False) -> tuple[Figure, object]:
    fig = Figure(figsize=(PANEL_INCHES * (1.22 if colorbar else 1.0), PANEL_INCHES), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig, ax


def _boundaries(assignment: np.ndarray, patch: int) -> LineCollection:
    """Segments along patch edges between tokens assigned to different representatives; thinner on fine grids,
    where full-width lines would cover the cells they separate."""
    segments = []
    rows, cols = assignment.shape
    for i, j in zip(*np.nonzero(assignment[:, 1:] != assignment[:, :-1])):
        x = (j + 1) * patch
        segments.append([(x, i * patch), (x, (i + 1) * patch)])
    for i, j in zip(*np.nonzero(assignment[1:, :] != assignment[:-1, :])):
        y = (i + 1) * patch
        segments.append([(j * patch, y), ((j + 1) * patch, y)])
    cell_points = 0.9 * PANEL_INCHES * 72 / max(rows, cols)
    return LineCollection(segments, colors="white", linewidths=min(1.2, max(0.3, 0.25 * cell_points)))


def image_panel(maps: RoutingMaps) -> Figure:
    fig, ax = _axes(f"input, {maps.resolution}×{maps.resolution} px")
    ax.imshow(maps.image, extent=(0, maps.resolution, maps.resolution, 0), interpolation="nearest")
    _mark_points(ax, maps, range(len(maps.points)))
    return fig


def assignment_panel(maps: RoutingMaps) -> Figure:
    used = len(np.unique(maps.assignment))
    fig, ax = _axes(f"hard assignment: {used} of M={maps.reps} {maps.rep_word}s used")
    side = maps.resolution
    ax.imshow(maps.image, extent=(0, side, side, 0), interpolation="nearest")
    ax.imshow(maps.assignment % REP_COLOURS.N, cmap=REP_COLOURS, vmin=0, vmax=REP_COLOURS.N - 1, alpha=0.6,
              extent=(0, side, side, 0), interpolation="nearest")
    ax.add_collection(_boundaries(maps.assignment, maps.patch))
    ax.set_xlim(0, side)
    ax.set_ylim(side, 0)
    return fig


def _mark_points(ax, maps: RoutingMaps, indices) -> None:
    for index in indices:
        x, y = maps.points[index]
        ax.plot([x + 0.5], [y + 0.5], marker="o", markersize=7, markerfacecolor="none", markeredgecolor="cyan",
                markeredgewidth=1.8)
        ax.annotate(str(index + 1), (x + 0.5, y + 0.5), xytext=(5, 5), textcoords="offset points", color="cyan",
                    fontsize=8, fontweight="bold")


def heat_panel(maps: RoutingMaps, values: np.ndarray, index: int, title: str) -> Figure:
    """A token map over the greyed image: sequential from its smallest to its largest value when no value is
    negative (an untrained layer's maps are nearly uniform, and from 0 they would look flat; the colour bar gives the
    values), diverging around 0 otherwise."""
    fig, ax = _axes(title, colorbar=True)
    side = maps.resolution
    ax.imshow(_grey(maps.image), cmap="gray", vmin=0, vmax=1, extent=(0, side, side, 0), interpolation="nearest")
    low, high = float(values.min()), float(values.max())
    if low < 0:
        bound = max(-low, high, 1e-300)
        shown = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -bound, bound), alpha=0.75,
                          extent=(0, side, side, 0), interpolation="nearest")
    else:
        shown = ax.imshow(values, cmap="inferno", vmin=low, vmax=high if high > low else low + 1.0, alpha=0.75,
                          extent=(0, side, side, 0), interpolation="nearest")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    _mark_points(ax, maps, [index])
    return fig


def panels(maps: RoutingMaps) -> dict[str, Callable[[], Figure]]:
    """Panel name -> a function drawing it (drawn one at a time, so only one figure is alive)."""
    drawn: dict[str, Callable[[], Figure]] = {
        "image": lambda: image_panel(maps),
        "assignment": lambda: assignment_panel(maps),
    }
    for index in range(len(maps.points)):
        drawn[f"point{index + 1}-path"] = lambda i=index: heat_panel(
            maps, maps.path[i], i, f"point {i + 1}: through the {maps.rep_word}s")
        drawn[f"point{index + 1}-dense"] = lambda i=index: heat_panel(
            maps, maps.dense[i], i, f"point {i + 1}: dense softmax(q·kᵀ·s)")
    return drawn


def render(figure: Figure, fmt: str) -> bytes:
    """The figure as PNG or SVG bytes (the SVG without a date and with fixed element ids, so equal maps give equal
    files)."""
    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else None
    with rc_context({"svg.hashsalt": "rpbench-maps"}):
        figure.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()
