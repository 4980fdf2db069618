"""Run dirs kept under tests/data as an older rpbench wrote them, on the machine they were measured on."""
from __future__ import annotations

import csv
from pathlib import Path

# Written by rpbench before the restructure: its header predates later columns, its rows an Intel Xeon's.
OLD_RUN = Path(__file__).parent / "data" / "run-before-restructure"


def measured_on(run_dir: Path) -> str:
    """The CPU model the cpu rows of a run dir were measured on (its results.csv `device_name`)."""
    with open(run_dir / "results.csv", newline="", encoding="utf-8") as rows:
        models = {row["device_name"] for row in csv.DictReader(rows) if row["device"] == "cpu"}
    assert len(models) == 1, models
    return models.pop()
