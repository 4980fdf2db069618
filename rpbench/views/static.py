"""Static copies of the figures for a paper: SVG and PDF (PNG on request), drawn with matplotlib from the same
`figures.Figure` as report.html.

Why matplotlib and not plotly's image export: plotly needs kaleido and a Chrome it drives, which the offline GPU
images and a bare CI do not have; matplotlib renders everywhere, needs no display (the Agg canvas, no pyplot, so a
user's own backend is left alone) and writes PDF with embedded TrueType fonts, as publishers ask. The files are
reproducible: the same run gives the same bytes (fixed SVG ids, no creation dates).

In the SVG every series is one group `<g id="series:NAME">` (flagged points `flagged:NAME`), so a figure can be
checked or restyled by name.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np

from ..core.errors import ExportError
from ..results import store
from .figures import Figure, Series, facet_grid, fmt_tick

FORMATS = ("svg", "pdf", "png")
DEFAULT_FORMATS = ("svg", "pdf")


def figure_formats(png: bool) -> tuple[str, ...]:
    """What `--figures` / `--format figures` write: SVG and PDF, and PNG with `--png`."""
    return (*DEFAULT_FORMATS, "png") if png else DEFAULT_FORMATS
MARKERS = {"circle": "o", "square": "s", "diamond": "D", "triangle-up": "^", "triangle-down": "v",
           "triangle-left": "<", "triangle-right": ">", "pentagon": "p", "hexagon": "h", "hexagon2": "H",
           "star": "*", "cross": "P", "x": "X", "octagon": "8", "diamond-tall": "d"}
DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-.", "longdash": (0, (8, 3))}
STYLE = {"svg.hashsalt": "rpbench", "svg.fonttype": "none", "pdf.fonttype": 42, "font.size": 8.5,
         "axes.titlesize": 9, "legend.fontsize": 7.5, "axes.grid": True, "grid.alpha": 0.3}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def _draw(ax, figure: Figure, series: Series) -> list:
    keep = series.points(False)
    xs, ys = np.array([series.x[i] for i in keep]), np.array([series.y[i] for i in keep])
    width, size = (2.6, 6) if series.highlight else (1.4, 4.5)
    z = 3 if series.highlight else 2
    style = dict(color=series.color, linestyle=DASHES.get(series.dash, "-"), linewidth=width,
                 marker=MARKERS.get(series.marker, "o"), markersize=size, zorder=z, label=series.name)
    if figure.interval == "bars" and series.low is not None:
        low, high = np.array([series.low[i] for i in keep]), np.array([series.high[i] for i in keep])
        container = ax.errorbar(xs, ys, yerr=[ys - low, high - ys], capsize=2, elinewidth=0.9, **style)
        handle = container.lines[0]
        handle.set_gid(f"series:{_slug(series.name)}")
        for artist in container.get_children()[1:]:
            artist.set_gid(f"bars:{_slug(series.name)}")
    else:
        if figure.interval == "band" and series.low is not None and len(keep):
            band = ax.fill_between(xs, [series.low[i] for i in keep], [series.high[i] for i in keep],
                                   color=series.color, alpha=0.15, linewidth=0, zorder=1)
            band.set_gid(f"band:{_slug(series.name)}")
        (handle,) = ax.plot(xs, ys, **style)
        handle.set_gid(f"series:{_slug(series.name)}")
    out = series.points(True)
    if out:
        (hollow,) = ax.plot([series.x[i] for i in out], [series.y[i] for i in out], linestyle="none",
                            marker=MARKERS.get(series.marker, "o"), markersize=size + 3, markerfacecolor="none",
                            markeredgecolor=series.color, markeredgewidth=1.4, zorder=z)
        hollow.set_gid(f"flagged:{_slug(series.name)}")
    return [handle]


def render(figure: Figure, fmt: str) -> bytes:
    """One figure as SVG, PDF or PNG bytes."""
    import matplotlib
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import NullLocator

    rows, cols = facet_grid(len(figure.panels))
    names = figure.names
    width = max(5.4, 3.9 * cols + 0.6)  # inches; a legend column takes about 2.6 (labels like "rpattention (m=64)")
    entries = len(names) + 1 + (figure.reference is not None)
    legend_cols = max(1, min(entries, int(width // 2.6)))
    legend_rows = math.ceil(entries / legend_cols)
    title = "\n".join(textwrap.wrap(figure.title, width=int(width * 13)))
    with matplotlib.rc_context(STYLE):
        fig = MplFigure(figsize=(width, 2.9 * rows + 0.6 + 0.2 * legend_rows + 0.15 * title.count("\n")),
                        layout="constrained")
        axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
        handles: dict[str, object] = {}
        for index, panel in enumerate(figure.panels):
            ax = axes[index // cols][index % cols]
            for series in panel.series:
                for handle in _draw(ax, figure, series):
                    handles.setdefault(series.name, handle)
            if figure.reference is not None:
                ax.axhline(figure.reference, color="#555555", linestyle=":", linewidth=1, zorder=1)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(list(figure.x_ticks), [fmt_tick(t) for t in figure.x_ticks])
            ax.set_yticks(list(figure.y_ticks), [fmt_tick(t) for t in figure.y_ticks])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.yaxis.set_minor_locator(NullLocator())
            ax.tick_params(axis="x", labelrotation=30 if len(figure.x_ticks) > 5 else 0)
            if panel.title:
                ax.set_title(panel.title)
            ax.set_xlabel(figure.x_title)
            if index % cols == 0:
                ax.set_ylabel(figure.y_title)
        for index in range(len(figure.panels), rows * cols):
            axes[index // cols][index % cols].set_visible(False)
        labels = [n for n in names if n in handles]
        legend_handles = [handles[n] for n in labels]
        if figure.has_flagged:
            legend_handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                                         markeredgecolor="#555555"))
            labels.append("flagged (hollow): left out of fits")
        if figure.reference is not None:
            legend_handles.append(Line2D([], [], color="#555555", linestyle=":"))
            labels.append(figure.reference_label)
        fig.suptitle(title, fontsize=9)
        fig.legend(legend_handles, labels, loc="outside lower center", ncols=legend_cols, frameon=False)
        buffer = io.BytesIO()
        metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}, "png": {}}[fmt]
        fig.savefig(buffer, format=fmt, dpi=200, metadata=metadata)
    return buffer.getvalue()


def check_formats(formats: tuple[str, ...]) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown figure format {unknown[0]!r}; choose from: {', '.join(FORMATS)}")
    need_matplotlib("static figures")


def need_matplotlib(purpose: str) -> None:
    """One error line, before any work, where matplotlib is missing (the offline GPU images lack it)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise ExportError(f"{purpose} need matplotlib, which is not importable here ({err}); "
                          f"pip install matplotlib") from None


def write_figures(figures: list[Figure], directory: str | Path, formats: tuple[str, ...] = DEFAULT_FORMATS,
                  flag: str = "--figures") -> list[Path]:
    """Every figure in every format into `directory` (created), as <key>.<format>; returns the paths written."""
    check_formats(formats)
    folder = store.make_dir(directory, flag)
    written = []
    for figure in figures:
        for fmt in formats:
            written.append(store.write_file(folder / f"{figure.key}.{fmt}", render(figure, fmt)))
    return written


def export_figures(run_dir: str | Path | store.Run, out: str | Path | None = None, baseline: str | None = None,
                   metric: str = "latency", png: bool = False, flag: str = "--out") -> list[Path]:
    """`rpbench export --format figures`: every figure of a run (a run dir, or one read already) into `out`
    (default RUN_DIR/figures/)."""
    from ..analysis import analyse_run
    from .figures import build_figures

    formats = figure_formats(png)
    check_formats(formats)  # before reading the run: a missing matplotlib is the first thing to say
    run = run_dir if isinstance(run_dir, store.Run) else store.load_run(run_dir)
    figures = build_figures(analyse_run(run.frame, run.env, baseline, metric, samples=run.samples))
    if not figures:
        raise ExportError(f"{run.directory}: no successful case to draw")
    return write_figures(figures, out if out is not None else run.directory / "figures", formats, flag)
