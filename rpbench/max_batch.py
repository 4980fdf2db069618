"""The largest power-of-two batch that fits, and the peak throughput up to it (OOM is the answer, not a failure)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from .cases import Case

RunOne = Callable[[Case], dict[str, Any]]


@dataclass
class BatchSearch:
    rows: list[dict[str, Any]] = field(default_factory=list)
    max_batch: int | None = None  # largest batch measured ok
    oom_at: int | None = None  # first batch that ran out of memory
    stopped: str | None = None  # why the search ended other than OOM

    @property
    def best(self) -> dict[str, Any] | None:
        ok = [r for r in self.rows if r["status"] == "ok" and r.get("throughput_img_s")]
        return max(ok, key=lambda r: r["throughput_img_s"]) if ok else None


def search_max_batch(case: Case, run_one: RunOne, limit: int = 4096) -> BatchSearch:
    """Double the batch from 1 until a case runs out of memory, fails, or passes `limit`."""
    search = BatchSearch()
    batch = 1
    while batch <= limit:
        row = run_one(dataclasses.replace(case, batch=batch))
        search.rows.append(row)
        if row["status"] == "oom":
            search.oom_at = batch
            return search
        if row["status"] != "ok":
            search.stopped = f"batch {batch}: {row['status']} ({row.get('notes') or 'no detail'})"
            return search
        search.max_batch = batch
        batch *= 2
    search.stopped = f"reached the limit of batch {limit} without running out of memory"
    return search
