"""The figures of a run as data: which panels, which series, their looks, ticks and intervals.

One description, two renderers: `interactive` draws it with plotly into report.html, `static` with matplotlib into
SVG/PDF/PNG files for a paper, so both show the same points in the same colours. Rules every figure follows:
- a mechanism has one colour and marker everywhere (`palette`); RPAttention is highlighted;
- x ticks sit at the measured sizes (no "2 3 4 … 1000 2 3" minor labels), y ticks on a 1-2-5 log grid;
- facets (dtype, mode) are panels sharing one y range, so heights compare across panels;
- flagged points (disturbed, unstable, throttled, implausible) are drawn hollow and not joined: they are left out of
  fits, crossovers and speedups, and the figure shows that rather than hiding them;
- the speedup figure draws each mechanism's speedup over the baseline with the interval of the report's tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..analysis import METRICS, RunAnalysis
from .format import CI_NAMES
from .palette import DASHES, HIGHLIGHT, looks_for

MAX_X_TICKS = 10


@dataclass(frozen=True)
class Series:
    name: str
    mechanism: str  # registry name: what the look is keyed by
    color: str
    marker: str
    dash: str
    highlight: bool
    x: tuple[float, ...]
    y: tuple[float, ...]
    low: tuple[float, ...] | None  # the band or error bar, point by point (None: no interval)
    high: tuple[float, ...] | None
    flagged: tuple[bool, ...]
    notes: tuple[str, ...]  # per point: why it is flagged ("" when it is not)

    def points(self, flagged: bool) -> list[int]:
        """Indices of the flagged points (drawn hollow, not joined) or of the others (the line)."""
        return [i for i, f in enumerate(self.flagged) if f == flagged]


@dataclass(frozen=True)
class Panel:
    title: str  # the facet ("" for a run with one)
    series: tuple[Series, ...]


@dataclass(frozen=True)
class Figure:
    key: str  # file stem of the static copies
    title: str
    x_title: str
    y_title: str
    panels: tuple[Panel, ...]
    x_ticks: tuple[float, ...]
    y_ticks: tuple[float, ...]
    interval: str  # "band" (shaded p20–p80), "bars" (error bars) or ""
    reference: float | None = None  # a horizontal line (speedup 1 = the baseline)
    reference_label: str = ""

    @property
    def has_flagged(self) -> bool:
        return any(any(s.flagged) for p in self.panels for s in p.series)

    @property
    def names(self) -> list[str]:
        """Legend entries in drawing order, each once."""
        return list(dict.fromkeys(s.name for p in self.panels for s in p.series))


def facet_grid(count: int) -> tuple[int, int]:
    """(rows, columns) of the panels: one column for one facet, else two."""
    cols = 1 if count == 1 else 2
    return math.ceil(count / cols), cols


def fmt_tick(value: float) -> str:
    """A tick label: 3,136 tokens as written, large values with an SI suffix (262k, 1.05M, 4G)."""
    if value >= 1e5 or (value >= 1e3 and value != int(value)):
        exponent = min(int(math.log10(value) // 3), 5)
        return f"{value / 1000 ** exponent:.3g}{' kMGTP'[exponent]}"
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def measured_ticks(values: list[float]) -> tuple[float, ...]:
    """The measured sizes, thinned evenly (both ends kept) when there are too many to label."""
    sizes = sorted(set(values))
    if len(sizes) <= MAX_X_TICKS:
        return tuple(sizes)
    step = (len(sizes) - 1) / (MAX_X_TICKS - 1)
    return tuple(sizes[round(i * step)] for i in range(MAX_X_TICKS))


def log_ticks(low: float, high: float) -> tuple[float, ...]:
    """Tick values on a log axis covering [low, high]: decades for wide ranges, 1-2-5 or 1..9 for narrow ones."""
    if not (low > 0 and high >= low):
        return ()
    decades = math.log10(high) - math.log10(low)
    steps = (1,) if decades > 3 else (1, 2, 5) if decades > 1.2 else (1, 2, 3, 4, 5, 6, 7, 8, 9)
    ticks = []
    for power in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        ticks += [float(f"{step}e{power}") for step in steps]  # exact decimals, not 0.6000000000000001
    inside = [t for t in ticks if low / 1.0001 <= t <= high * 1.0001]
    if len(inside) < 2:  # a range inside one step: the neighbouring ticks frame it
        below = [t for t in ticks if t < low]
        above = [t for t in ticks if t > high]
        inside = below[-1:] + inside + above[:1]
    return tuple(inside)


def _series(group: pd.DataFrame, name: str, mechanism: str, x: str, y: str, look, dash: str,
            interval: tuple[str, str] | None) -> Series:
    group = group.sort_values(x)
    def column(col: str) -> tuple[float, ...]:
        return tuple(float(v) for v in group[col].astype("Float64").fillna(float("nan")))
    flagged = tuple(bool(not usable) for usable in group["usable"])
    notes = tuple(str(f) if isinstance(f, str) and not u else "" for f, u in zip(group["flags"], group["usable"]))
    return Series(name, mechanism, look.color, look.marker, dash, mechanism == HIGHLIGHT, column(x), column(y),
                  column(interval[0]) if interval else None, column(interval[1]) if interval else None,
                  flagged, notes)


def _build(data: pd.DataFrame, *, key: str, x: str, y: str, line: str, title: str, x_title: str, y_title: str,
           interval: tuple[str, str] | None = None, kind: str = "", dashes: dict[str, str] | None = None,
           reference: float | None = None, reference_label: str = "") -> Figure | None:
    data = data[data[x].notna() & data[y].notna() & (data[y].astype("Float64") > 0)]
    if data.empty:
        return None
    looks = looks_for(sorted(set(data["_look"])))
    if dashes is None:
        dashes = variant_dashes(data, line)
    panels = []
    for facet in sorted(data["facet"].unique()):
        rows = data[data["facet"] == facet]
        series = [_series(group, str(name), str(group["_look"].iloc[0]), x, y, looks[group["_look"].iloc[0]],
                          dashes.get(str(name), "solid"), interval)
                  for name, group in rows.groupby(line, sort=True)]
        series.sort(key=lambda s: s.highlight)  # RPAttention last: drawn on top
        panels.append(Panel(str(facet), tuple(series)))
    values = [v for p in panels for s in p.series for v in (*s.y, *(s.low or ()), *(s.high or ())) if v > 0]
    if reference is not None:
        values.append(reference)
    return Figure(key, title, x_title, y_title, tuple(panels), measured_ticks(data[x].astype(float).tolist()),
                  log_ticks(min(values), max(values)), kind, reference, reference_label)


def variant_dashes(data: pd.DataFrame, line: str) -> dict[str, str]:
    """A dash per curve of one mechanism (rpattention m=16 solid, m=64 dashed, ...), the same in every figure."""
    dashes = {}
    for _, rows in data.groupby("_look"):
        for index, name in enumerate(sorted(rows[line].astype(str).unique())):
            dashes[name] = DASHES[index % len(DASHES)]
    return dashes


def build_figures(run: RunAnalysis) -> list[Figure]:
    """Every figure the run has data for (a figure with nothing to draw is left out)."""
    ok = run.frame[run.frame["ok"] & run.frame["tokens"].notna()].copy()
    ok["_look"] = ok["attention"].fillna(ok["mechanism"]).astype(str)
    dashes = variant_dashes(ok, "line")
    lat_band, thr_band = ("latency_ms_p20", "latency_ms_p80"), ("_thr_low", "_thr_high")
    ok["_thr_low"], ok["_thr_high"] = METRICS["throughput"].band(ok)
    candidates = [
        _build(ok, key="latency-vs-tokens", x="tokens", y="latency_ms_median", line="line", interval=lat_band,
               kind="band", dashes=dashes, title="Latency per call vs tokens (median; band p20–p80)",
               x_title="tokens N", y_title="latency (ms)"),
        _build(ok, key="memory-vs-tokens", x="tokens", y="peak_mem_mb", line="line", dashes=dashes,
               title="Peak memory per call vs tokens (above resident baseline)", x_title="tokens N",
               y_title="peak memory (MiB)"),
        _build(ok[ok["resolution"].notna()], key="throughput-vs-resolution", x="resolution", y="throughput_img_s",
               line="line", interval=thr_band, kind="band", dashes=dashes,
               title="Throughput vs image resolution (band from latency p20–p80)", x_title="image side (px)",
               y_title="throughput (img/s)"),
        _m_figure(ok),
        _build(ok, key="flops-vs-tokens", x="tokens", y="flops", line="line", dashes=dashes,
               title="FLOPs per call vs tokens (analytic, else counted; 1 MAC = 2 FLOPs)", x_title="tokens N",
               y_title="FLOPs per call"),
        _build(ok, key="tflops-vs-tokens", x="tokens", y="tflops_s", line="line", dashes=dashes,
               title="Achieved compute vs tokens", x_title="tokens N", y_title="achieved TFLOP/s"),
        *speedup_figures(run, dashes),
    ]
    return [figure for figure in candidates if figure is not None]


def _m_figure(ok: pd.DataFrame) -> Figure | None:
    with_m = ok[ok["m"].notna()].copy()
    if with_m.empty:
        return None
    with_m["m_line"] = [" · ".join(part for part in (mech, f"N={int(n):,}", setting) if part)
                        for mech, n, setting in zip(with_m["mechanism"], with_m["tokens"], with_m["setting"])]
    varies = with_m.groupby(["facet", "m_line"])["m"].transform("nunique") > 1
    return _build(with_m[varies], key="latency-vs-m", x="m", y="latency_ms_median", line="m_line",
                  interval=("latency_ms_p20", "latency_ms_p80"), kind="band",
                  title="Latency vs representatives M at fixed N (median; band p20–p80)",
                  x_title="representatives M", y_title="latency (ms)")


def speedup_figures(run: RunAnalysis, dashes: dict[str, str]) -> list[Figure | None]:
    """Speedup over the baseline per N and, for a resolution sweep, per image side: > 1 is better than the
    baseline, bars are the speedup column's interval; flagged cases have no speedup and are not drawn."""
    if run.baseline is None:
        return []
    summary = run.summary
    data = summary[summary["speedup"].notna() & (summary["mechanism"] != run.baseline)].copy()
    data["_look"] = data["attention"].fillna(data["mechanism"]).astype(str)
    better = "faster" if run.metric.name != "memory" else "smaller"
    methods = set(data["speedup_method"].dropna()) if "speedup_method" in data else set()
    bars = {frozenset({"paired-t"}): "bars: 95 % round-paired interval",
            frozenset({"p20-p80"}): "bars: p20–p80 ends paired least favourably"}.get(
        frozenset(methods), "bars: 95 % interval (" + ", ".join(CI_NAMES.get(m, m) for m in sorted(methods)) + ")")
    title = f"{run.metric.label.capitalize()} speedup over {run.baseline} (> 1: {better} than {run.baseline}; {bars})"
    common = dict(y="speedup", line="line", interval=("speedup_low", "speedup_high"), kind="bars", dashes=dashes,
                  title=title, y_title=f"× {run.baseline} ({run.metric.label})", reference=1.0,
                  reference_label=f"= {run.baseline}")
    return [
        _build(data, key="speedup-vs-tokens", x="tokens", x_title="tokens N", **common),
        _build(data[data["resolution"].notna()], key="speedup-vs-resolution", x="resolution",
               x_title="image side (px)", **common),
    ]
