"""The metric grid every view of a run leads with: per setting (context), mechanism rows × size columns of one
metric, the best usable value of each column, each cell's spread and flags.

Built from an analysed run (`analysis.RunAnalysis`), so the terminal report, the paper tables (LaTeX, markdown)
and a multi-run view (one call per run, or per run facet) print the same cells. Plain data: no rendering here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pandas as pd

from ..analysis import RunAnalysis
from .format import MISSING, fmt_int, fmt_number, fmt_speedup, is_set

QUANTITY = {"latency": "Median latency per call (ms)", "throughput": "Throughput (img/s)",
            "memory": "Peak memory of one call (MiB)"}


@dataclass
class Cell:
    """One mechanism at one size: the value as displayed (or the status of a case that was not measured), bold
    when best, its flags (kinds, in `analysis.FLAG_KINDS` order), its ± figure and its speedup."""

    value: str = MISSING
    best: bool = False
    flags: tuple[str, ...] = ()
    speedup: str = ""
    spread_pct: float | None = None  # half its 95 % interval (else of its p20–p80 spread), % of the value
    interval: bool = False  # spread_pct is half the 95 % interval (False: half the p20–p80 spread)
    noisy: bool = False
    launch_bound: bool = False
    measured: bool = False  # False: not in the suite (MISSING) or a status such as oom

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


@dataclass
class MetricGrid:
    """One setting of a run: `columns` are size headers ("N = 196" or "224 px"), `rows` (label, one cell per
    column), `setting` says what the cells were measured on and with (device, dtype, mode, batch, C, torch, timer)."""

    setting: str
    columns: list[str]
    metric: str  # the metric's name: latency, throughput or memory
    label: str = ""  # the metric as speedups name it: latency, throughput, peak memory
    unit: str = ""
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    baseline: str | None = None
    speedup_methods: list[str] = field(default_factory=list)  # how its speedups' intervals were had (not p20–p80)

    @property
    def quantity(self) -> str:
        return QUANTITY[self.metric]

    def cells(self) -> list[Cell]:
        return [cell for _, cells in self.rows for cell in cells]


def _first(rows: pd.DataFrame, column: str) -> Any:
    values = rows[column].dropna() if column in rows else pd.Series(dtype=object)
    return values.iloc[0] if len(values) else None


def _device(rows: pd.DataFrame, env: Mapping[str, Any]) -> str:
    """The rows' GPU or CPU model, else env.json's."""
    name = _first(rows, "device_name")
    if name:
        return str(name)
    gpus = env.get("gpus") or []
    if gpus and isinstance(gpus[0], Mapping) and gpus[0].get("name"):
        return str(gpus[0]["name"])
    cpu = env.get("cpu") if isinstance(env.get("cpu"), Mapping) else {}
    return str(cpu.get("model") or "device not recorded")


def _setting(rows: pd.DataFrame, env: Mapping[str, Any]) -> str:
    """What the grid was measured on and with."""
    parts = [_device(rows, env)]
    labels = (("dtype", "{}"), ("mode", "{}"), ("batch", "batch {}"), ("backbone", "{}"))
    parts += [form.format(_first(rows, col)) for col, form in labels if _first(rows, col) is not None]
    dim, heads = _first(rows, "dim"), _first(rows, "heads")
    if dim is not None and _first(rows, "scope") != "backbone":
        parts.append(f"C = {dim}" + (f", {heads} heads" if heads is not None else ""))
    parts.append(f"torch {env.get('torch') or 'not recorded'}")
    parts.append(f"timer {_first(rows, 'timer') or 'not recorded'}")
    return "; ".join(parts)


def _sizes(rows: pd.DataFrame) -> tuple[str, list[Any], list[str]]:
    """The size axis: image side when every row of the setting has one (a resolution sweep), else tokens N."""
    if rows["resolution"].notna().all() and rows["resolution"].nunique() > 1:
        sizes = sorted(rows["resolution"].dropna().unique())
        return "resolution", sizes, [f"{fmt_int(s)} px" for s in sizes]
    sizes = sorted(rows["tokens"].dropna().unique())
    return "tokens", sizes, [f"N = {fmt_int(s)}" for s in sizes]


def _best(rows: pd.DataFrame, axis: str, column: str, higher_is_better: bool) -> set[Any]:
    """Index of the rows with the best value of their column (same size), among the usable ones; none where a
    column has fewer than two distinct values (nothing was beaten)."""
    usable = rows[rows["usable"] & rows[column].notna()]
    found: set[Any] = set()
    for _, same in usable.groupby(axis):
        values = same[column].astype(float)
        if values.nunique() > 1:
            found |= set(values.index[values == (values.max() if higher_is_better else values.min())])
    return found


def _spread_pct(value: Any, low: Any, high: Any) -> float | None:
    if any(v is None or pd.isna(v) for v in (value, low, high)) or not value or low == high:
        return None
    return float((high - low) / 2 / abs(value) * 100)


def _cell(row: pd.Series, best: bool, metric_column: str, baseline: str | None, low: Any, high: Any,
          interval: bool) -> Cell:
    if not row["ok"]:
        return Cell(value=str(row["status"]))
    speedup = ""
    if baseline is not None:
        speedup = "1.00×" if row["mechanism"] == baseline and not row["flagged"] else fmt_speedup(row)
    kinds = row.get("flag_kinds")
    flags = tuple(str(kinds).split(",")) if isinstance(kinds, str) and kinds else ()
    return Cell(value=fmt_number(row[metric_column]), best=best, flags=flags, speedup=speedup,
                spread_pct=_spread_pct(row[metric_column], low, high), interval=interval, noisy=is_set(row, "noisy"),
                launch_bound=is_set(row, "launch_bound"), measured=True)


def metric_grids(run: RunAnalysis) -> list[MetricGrid]:
    """One grid per setting (context) of the run, in the order the case table lists them; in each, the baseline
    first, then the other curves by name (rpattention (m=16) before (m=64)), as a paper lists them."""
    summary, metric = run.summary, run.metric
    low, high, has = metric.interval(summary)
    grids = []
    for _, rows in summary.groupby("_context", sort=False):
        axis, sizes, headers = _sizes(rows)
        best = _best(rows, axis, metric.column, metric.higher_is_better)
        baseline = run.baseline if run.baseline in set(rows["mechanism"]) else None
        grid = MetricGrid(setting=_setting(rows, run.env), columns=headers, metric=metric.name, label=metric.label,
                          unit=metric.unit, baseline=baseline,
                          speedup_methods=sorted({str(m) for m in rows.get("speedup_method", pd.Series()).dropna()
                                                  if m != "p20-p80"}))
        curves = sorted(rows.groupby("_variant", sort=False),
                        key=lambda item: (item[1]["mechanism"].iloc[0] != baseline, str(item[1]["series"].iloc[0])))
        for _, curve in curves:
            by_size = {value: index for value, index in zip(curve[axis], curve.index)}
            cells = [_cell(summary.loc[by_size[s]], by_size[s] in best, metric.column, baseline,
                           low[by_size[s]], high[by_size[s]], bool(has[by_size[s]])) if s in by_size else Cell()
                     for s in sizes]
            grid.rows.append((str(curve["series"].iloc[0]), cells))
        grids.append(grid)
    return grids
