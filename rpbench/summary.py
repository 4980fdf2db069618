"""Small rich renderings used by the core commands (the full reports live in report.py). No torch here."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from .analysis import fmt_number


def row_table(row: dict[str, Any]) -> Table:
    """One result row as a two-column table (non-empty fields only)."""
    table = Table("field", "value", title=f"{row.get('label') or row.get('attention')}: {row.get('status')}")
    for key, value in row.items():
        if value is None or value == "" or (isinstance(value, float) and value != value):
            continue
        table.add_row(key, fmt_number(value, 4) if isinstance(value, float) else str(value))
    return table


def summary_table(run_dir: Path) -> Table:
    """Median latency per curve (rows, named as the reports name them) and size (columns); failures by status."""
    from .analysis import prepare
    from .store import load

    frame = prepare(load(run_dir))
    grid = frame["height"].astype("string") + "x" + frame["width"].astype("string")
    frame["size"] = frame["resolution"].astype("string").fillna(grid)
    sizes = list(dict.fromkeys(frame.sort_values("tokens")["size"]))
    table = Table("curve", *sizes, title=f"median latency, ms ({run_dir})")
    for (facet, line), rows in frame.groupby(["facet", "line"], sort=True):
        cells = {r["size"]: fmt_number(r["latency_ms_median"]) if r["ok"] else f"[dim]{r['status']}[/]"
                 for _, r in rows.iterrows()}
        table.add_row(f"{line} · {facet}" if facet else line, *(cells.get(size, "") for size in sizes))
    return table


def mechanisms_table() -> Table:
    import attentions

    table = Table("name", "paper", "cost in N", "knobs (defaults)", "state-dict compatible with",
                  title=f"attention mechanisms (FLOPs: {attentions.FLOP_CONVENTION})")
    for name in attentions.available():
        spec = attentions.spec(name)
        knobs = ", ".join(f"{k}={v.default!r}" for k, v in spec.knobs.items()) or "-"
        table.add_row(name, spec.paper, f"{spec.complexity} ({spec.scaling})", knobs, spec.state_dict_compat or "-")
    return table


def knobs_table() -> Table:
    """What every knob does (suite keys, --m, --knob key=value)."""
    import attentions

    table = Table("mechanism", "knob", "default", "choices", "what it does", title="knobs")
    for name in attentions.available():
        for knob_name, knob in attentions.spec(name).knobs.items():
            choices = ", ".join(map(str, knob.choices)) if knob.choices else "-"
            table.add_row(name, knob_name, repr(knob.default), choices, knob.doc)
    return table


def backbones_table() -> Table:
    from . import backbones

    table = Table("backbone", "paper", "stages", "widths", "depths", "own attention", "stride",
                  title="backbones (--backbone)")
    for name in backbones.available():
        spec = backbones.spec(name)
        table.add_row(name, spec.paper, str(spec.stages), "-".join(map(str, spec.widths)),
                      "-".join(map(str, spec.depths)), spec.own_attention, str(spec.total_stride))
    return table
