"""`rpbench compare` as a table: regressions first, unchanged cases dimmed."""
from __future__ import annotations

import pandas as pd
from rich.table import Table
from rich.text import Text

from ..analysis.compare import Comparison
from ..core.schema import MEASURED_STATUSES
from .format import fmt_int, fmt_number

VERDICT_STYLES = {"regression": "bold red", "improvement": "bold green", "unchanged": "dim"}


def comparison_table(comparison: Comparison, label_a: str, label_b: str) -> Table:
    """One line per case of either run, with its verdict and the reason for it."""
    metric = comparison.metric
    table = Table(title=Text(f"{label_b} vs {label_a}: {metric.label}"), title_justify="left", header_style="bold")
    for header, justify in (("mechanism", "left"), ("N", "right"), (f"A {metric.unit}", "right"),
                            (f"B {metric.unit}", "right"), ("B / A", "right"), ("verdict", "left"), ("why", "left")):
        table.add_column(Text(header), justify=justify, overflow="fold")
    for _, row in comparison.cases.iterrows():
        value_a = fmt_number(row["value_a"]) if row["status_a"] in (*MEASURED_STATUSES, "") else row["status_a"]
        value_b = fmt_number(row["value_b"]) if row["status_b"] in (*MEASURED_STATUSES, "") else row["status_b"]
        ratio = "—" if pd.isna(row["ratio"]) else f"{row['ratio']:.3f}×"
        cells = [row["series"], fmt_int(row["tokens"]), value_a or "—", value_b or "—", ratio, row["verdict"], row["reason"]]
        table.add_row(*(Text(str(c)) for c in cells), style=VERDICT_STYLES.get(row["verdict"], ""))
    return table
