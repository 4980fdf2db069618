"""`rpbench list` and `rpbench suites`: what can be measured. The caller passes the specs (the registry and the
backbones live with torch); these tables only read their fields."""
from __future__ import annotations

from typing import Any, Iterable

from rich.table import Table
from rich.text import Text


def _texts(*values: Any) -> list[Text]:
    return [Text(str(value)) for value in values]


def mechanisms_table(specs: Iterable[Any], flop_convention: str) -> Table:
    """One line per attention spec (`attentions.AttentionSpec`): name (and the plugin it comes from), paper, cost
    (and "FLOPs counted" when it has no formula), knobs with defaults, compatibility."""
    table = Table("name", "paper", "cost in N", "knobs (defaults)", "state-dict compatible with",
                  title=Text(f"attention mechanisms (FLOPs: {flop_convention})"))
    for spec in specs:
        knobs = ", ".join(f"{k}={v.default!r}" for k, v in spec.knobs.items())
        knobs = knobs or ("any key=value" if spec.open_knobs else "-")
        name = spec.name if spec.origin == "built-in" else f"{spec.name} (plugin: {spec.origin})"  # one line a cell
        cost = f"{spec.complexity} ({spec.scaling})" + ("" if spec.flops_fn is not None else "; FLOPs counted (no formula)")
        table.add_row(*_texts(name, spec.paper or "-", cost, knobs, spec.state_dict_compat or "-"))
    return table


def knobs_table(specs: Iterable[Any]) -> Table:
    """What every knob does (suite keys, --m, --knob key=value)."""
    table = Table("mechanism", "knob", "default", "choices / range", "what it does", title="knobs")
    for spec in specs:
        for knob_name, knob in spec.knobs.items():
            if knob.choices:
                allowed = ", ".join(map(str, knob.choices))
            elif knob.low is not None or knob.high is not None:
                allowed = f"{'-inf' if knob.low is None else f'{knob.low:g}'} to {'inf' if knob.high is None else f'{knob.high:g}'}"
            else:
                allowed = "-"
            table.add_row(*_texts(spec.name, knob_name, repr(knob.default), allowed, knob.doc))
    return table


def backbones_table(specs: Iterable[Any]) -> Table:
    """One line per backbone spec (`rpbench.backbones.BackboneSpec`)."""
    table = Table("backbone", "paper", "stages", "widths", "depths", "own attention", "stride",
                  title="backbones (--backbone)")
    for spec in specs:
        table.add_row(*_texts(spec.name, spec.paper, spec.stages, "-".join(map(str, spec.widths)),
                              "-".join(map(str, spec.depths)), spec.own_attention, spec.total_stride))
    return table


def suites_table(entries: Iterable[tuple[str, int | None, str]]) -> Table:
    """(name, number of cases or None when the suite does not load, description or the error) per shipped suite."""
    table = Table("suite", "cases", "description", title="shipped suites (rpbench sweep NAME)")
    for name, count, text in entries:
        if count is None:
            table.add_row(Text(name), Text("-"), Text(text, style="red"))
        else:
            table.add_row(*_texts(name, count, text))
    return table
