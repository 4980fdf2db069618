"""Small rich renderings used by the core commands (the full reports live in report.py). No torch here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value != value:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def row_table(row: dict[str, Any]) -> Table:
    """One result row as a two-column table (non-empty fields only)."""
    table = Table("field", "value", title=f"{row.get('label') or row.get('attention')}: {row.get('status')}")
    for key, value in row.items():
        if value is None or value == "" or (isinstance(value, float) and value != value):
            continue
        table.add_row(key, _fmt(value, 4))
    return table


def summary_table(run_dir: Path) -> Table:
    """Median latency per mechanism (rows) and size (columns) of a run; failures shown by status."""
    import pandas as pd

    from .store import load

    frame = load(run_dir)
    size = frame["resolution"].astype("string").fillna(frame["height"].astype("string") + "x"
                                                         + frame["width"].astype("string"))
    frame = frame.assign(size=size)
    sizes = list(dict.fromkeys(frame.sort_values("tokens")["size"]))
    table = Table("mechanism", "dtype", "mode", *sizes, title=f"median latency, ms ({run_dir})")
    keys = ["backbone", "label", "dtype", "mode", "m"]
    for (backbone, label, dtype, mode, m), group in frame.groupby(keys, dropna=False, sort=True):
        cells = {}
        for _, r in group.iterrows():
            cells[r["size"]] = _fmt(r["latency_ms_median"]) if r["status"] == "ok" else f"[dim]{r['status']}[/]"
        name = label if pd.isna(backbone) else f"{backbone}/{label}"
        name = name if pd.isna(m) else f"{name} m={m}"
        table.add_row(str(name), dtype, mode, *(cells.get(s, "") for s in sizes))
    return table


def mechanisms_table() -> Table:
    import attentions

    table = Table("name", "complexity", "knobs (defaults)", "state-dict compatible with",
                  title=f"attention mechanisms (FLOPs: {attentions.FLOP_CONVENTION})")
    for name in attentions.available():
        spec = attentions.spec(name)
        knobs = ", ".join(f"{k}={v.default!r}" for k, v in spec.knobs.items()) or "-"
        table.add_row(name, spec.complexity, knobs, spec.state_dict_compat or "-")
    return table


def backbones_table() -> Table:
    from . import backbones

    table = Table("backbone", "stages", "widths", "depths", "own attention", "stride", title="backbones (--backbone)")
    for name in backbones.available():
        spec = backbones.spec(name)
        table.add_row(name, str(spec.stages), "-".join(map(str, spec.widths)), "-".join(map(str, spec.depths)),
                      spec.own_attention, str(spec.total_stride))
    return table
