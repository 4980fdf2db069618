"""The largest power-of-two batch that fits, and the peak throughput up to it (OOM is the answer, not a failure)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from ..core.case import Case
from ..core.measurement import Measurement

RunOne = Callable[[Case], Measurement]


@dataclass
class BatchSearch:
    measurements: list[Measurement] = field(default_factory=list)
    max_batch: int | None = None  # largest batch measured ok
    oom_at: int | None = None  # first batch that ran out of memory
    stopped: str | None = None  # why the search ended other than OOM

    @property
    def best(self) -> Measurement | None:
        ok = [m for m in self.measurements if m.ok and m.throughput_img_s]
        return max(ok, key=lambda m: m.throughput_img_s) if ok else None


def search_max_batch(case: Case, run_one: RunOne, limit: int = 4096) -> BatchSearch:
    """Double the batch from 1 until a case runs out of memory, fails, or passes `limit`."""
    search = BatchSearch()
    batch = 1
    while batch <= limit:
        measured = run_one(dataclasses.replace(case, batch=batch))
        search.measurements.append(measured)
        if measured.status == "oom":
            search.oom_at = batch
            return search
        if not measured.ok:
            search.stopped = f"batch {batch}: {measured.status} ({measured.note or 'no detail'})"
            return search
        search.max_batch = batch
        batch *= 2
    search.stopped = f"reached the limit of batch {limit} without running out of memory"
    return search
