"""Terminal report: rich tables of every case and of the fitted scaling laws. Builds renderables, prints nothing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
from rich.table import Table
from rich.text import Text

from . import analysis, store
from .analysis import Metric, fmt_exponent, fmt_flops, fmt_int, fmt_number

BEST_STYLE = "bold green"


@dataclass
class Report:
    """Everything the report command prints, kept apart from printing so tests and other views can reuse it."""

    cases: Table
    scaling: Table


def _cell(text: str, best: bool = False) -> Text:
    """Plain text (never rich markup: labels and knobs may contain brackets), green when best."""
    return Text(text, style=BEST_STYLE if best else "")


def _speedup_text(row: Mapping[str, Any]) -> str:
    if pd.isna(row["speedup"]):
        return "—"
    return f"{row['speedup']:.2f}× [{row['speedup_low']:.2f}–{row['speedup_high']:.2f}]"


def _percent(value: Any, missing: str = "—") -> str:
    return missing if pd.isna(value) else f"{value:.1f}%"


def _spread_text(row: Mapping[str, Any]) -> str:
    text = f"{fmt_number(row['latency_ms_p20'])}–{fmt_number(row['latency_ms_p80'])}"
    return text + " noisy" if pd.notna(row["noisy"]) and bool(row["noisy"]) else text


def cases_table(summary: pd.DataFrame, baseline: str | None, metric: Metric) -> Table:
    """One line per case; best value per column among cases of the same size in green, failed cases dimmed."""
    flags = analysis.best_flags(summary)
    show_context = bool((summary["context"] != "").any())
    show_resolution = bool(summary["resolution"].notna().any())
    show_peak = bool((summary["tflops_s"].notna() & (summary["device"] == "cuda")).any())  # no CPU peaks
    show_ceiling = bool(summary["pct_ceiling"].notna().any())
    table = Table(title="Cases", title_justify="left", header_style="bold")
    if show_context:
        table.add_column("setting")
    table.add_column("mechanism")
    table.add_column("N", justify="right")
    if show_resolution:
        table.add_column("res px", justify="right")
    table.add_column("median ms", justify="right")
    table.add_column("p20–p80 ms", justify="right")
    table.add_column("img/s", justify="right")
    table.add_column("peak MiB", justify="right")
    table.add_column("FLOPs", justify="right")
    table.add_column("TFLOP/s", justify="right")
    if show_peak:
        table.add_column("% of datasheet peak", justify="right")
    if show_ceiling:
        table.add_column("% of measured ceiling", justify="right")
    if baseline is not None:
        table.add_column(Text(f"{metric.label} vs {baseline} [p20/p80 bounds]"), justify="right")
    table.add_column("status")
    for column in table.columns:
        column.overflow = "fold"
    for index, row in summary.iterrows():
        best = flags.loc[index]
        cells: list[Any] = []
        if show_context:
            cells.append(_cell(row["context"]))
        cells += [_cell(row["series"]), _cell(fmt_int(row["tokens"]))]
        if show_resolution:
            cells.append(_cell(fmt_int(row["resolution"])))
        if row["ok"]:
            cells += [
                _cell(fmt_number(row["latency_ms_median"]), best["latency_ms_median"]),
                _cell(_spread_text(row)),
                _cell(fmt_number(row["throughput_img_s"]), best["throughput_img_s"]),
                _cell(fmt_number(row["peak_mem_mb"]), best["peak_mem_mb"]),
                _cell(fmt_flops(row["flops"]), best["flops"]),
                _cell(fmt_number(row["tflops_s"]), best["tflops_s"]),
            ]
            if show_peak:
                cells.append(_cell(_percent(row["pct_peak"], "unknown" if pd.notna(row["tflops_s"]) else "—")))
            if show_ceiling:
                cells.append(_cell(_percent(row["pct_ceiling"])))
            if baseline is not None:
                cells.append(_cell(_speedup_text(row), best["speedup"]))
            cells.append(_cell("ok"))
            table.add_row(*cells)
        else:
            cells += [_cell("—")] * (len(table.columns) - len(cells) - 1)
            note = "" if pd.isna(row["notes"]) else f": {row['notes']}"
            cells.append(_cell(f"{row['status']}{note}"))
            table.add_row(*cells, style="dim")
    return table


def scaling_table(exponents: pd.DataFrame, crossings: pd.DataFrame, baseline: str | None, metric: Metric) -> Table:
    """Fitted exponents (95 % CI, points, R²) per curve and where each curve overtakes the baseline."""
    table = Table(title="Scaling with N: y ∝ N^k, k [95 % CI]", title_justify="left", header_style="bold")
    table.add_column("curve")
    for quantity in analysis.SCALING_QUANTITIES:
        table.add_column(f"k {quantity}", justify="right")
    if baseline is not None:
        table.add_column(Text(f"crossover vs {baseline} ({metric.label})"))
    for column in table.columns:
        column.overflow = "fold"
    curves = exponents[["_context", "_variant", "line"]].drop_duplicates()
    if baseline is not None:
        curves = pd.concat([curves, crossings[["_context", "_variant", "line"]]]).drop_duplicates(["_context", "_variant"])
    for _, curve in curves.iterrows():
        fits = exponents[(exponents["_context"] == curve["_context"]) & (exponents["_variant"] == curve["_variant"])]
        cells = [_cell(curve["line"])]
        for quantity in analysis.SCALING_QUANTITIES:
            fit = fits[fits["quantity"] == quantity]
            if fit.empty:
                cells.append(_cell("—"))
            else:
                first = fit.iloc[0]
                cells.append(_cell(f"{fmt_exponent(first)} n={first['n_points']} R²={first['r2']:.3f}"))
        if baseline is not None:
            found = crossings[(crossings["_context"] == curve["_context"]) & (crossings["_variant"] == curve["_variant"])]
            described = [
                analysis.describe_crossover(c["status"], c["tokens"], c["resolution"], metric)
                for _, c in found.iterrows()
            ]
            cells.append(_cell("; ".join(described) or "—"))
        table.add_row(*cells)
    if not table.row_count:
        table.caption = "No curve has 3 or more measured sizes, so nothing was fitted."
    return table


def build_report(run_dir: str | Path, baseline: str | None = None, metric_name: str = "latency") -> Report:
    """Load a run and build both tables; raises ResultsError / AnalysisError with one-line messages."""
    metric = analysis.get_metric(metric_name)
    frame = analysis.prepare(store.load(run_dir))
    env = store.load_env(run_dir)
    chosen = analysis.resolve_baseline(frame, baseline)
    summary = analysis.case_summary(frame, env, chosen, metric)
    exponents = analysis.scaling_exponents(frame)
    crossings = analysis.crossovers(frame, chosen, metric) if chosen is not None else pd.DataFrame()
    return Report(
        cases=cases_table(summary, chosen, metric),
        scaling=scaling_table(exponents, crossings, chosen, metric),
    )
