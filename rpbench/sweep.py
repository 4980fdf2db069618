"""Run a suite's cases one after another, appending each row the moment it is measured."""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import torch

from .cases import Case, SuiteError, Suite
from .runner import run_case
from .store import ENV, SUITE, RunWriter, load_env


@dataclass
class SweepOutcome:
    run_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0


def default_run_dir(suite: Suite, root: Path = Path("results")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{suite.name}-{stamp}"


def _matches(case: Case, term: str) -> bool:
    if "=" in term:
        key, _, pattern = term.partition("=")
        key = key.strip()
        if key == "tokens":
            value = case.tokens
        elif key in Case.__dataclass_fields__:
            value = getattr(case, key)
        else:
            allowed = ", ".join(["tokens", *Case.__dataclass_fields__])
            raise SuiteError(f"--filter: unknown field {key!r}; allowed: {allowed}")
        return fnmatch.fnmatchcase(str(value), pattern.strip())
    return fnmatch.fnmatchcase(case.label, term) or fnmatch.fnmatchcase(case.attention, term)


def filter_cases(cases: list[Case], expression: str | None) -> list[Case]:
    """Comma-separated terms, all must match: `rpattention`, `label=rp*`, `tokens=4096`, `dtype=bfloat16`."""
    if not expression:
        return cases
    terms = [t.strip() for t in expression.split(",") if t.strip()]
    return [case for case in cases if all(_matches(case, term) for term in terms)]


def apply_threads(suite: Suite) -> None:
    """Fix the CPU thread count for the whole run so every row measures with the same one."""
    if suite.measure.threads:
        torch.set_num_threads(suite.measure.threads)


def measured_ceilings(cases: list[Case]) -> dict[str, Any] | None:
    """Ceilings `rpbench doctor` cached for the device this sweep runs on (reports show % of them)."""
    from .doctor import cached_ceilings
    from .runner import device_name

    devices = {case.device for case in cases}
    return cached_ceilings(device_name(devices.pop())) if len(devices) == 1 else None


def cooldown_seconds(suite: Suite, case: Case) -> float:
    if suite.measure.cooldown_s is not None:
        return suite.measure.cooldown_s
    return 1.0 if case.device == "cuda" else 0.0


def _attach_trace(case: Case, run_dir: Path, row: dict[str, Any]) -> None:
    """Profile the case into traces/ and link it from the row; a failed trace becomes a note, the row stays ok."""
    from .profile import trace_case

    row["trace"], problem = trace_case(case, run_dir)
    if problem:
        row["notes"] = "; ".join(note for note in (row.get("notes"), problem) if note)


def run_sweep(
    suite: Suite,
    cases: list[Case],
    run_dir: Path,
    command: str,
    on_start: Callable[[Case, int], None] | None = None,
    on_row: Callable[[Case, dict[str, Any]], None] | None = None,
    profile: bool = False,
) -> SweepOutcome:
    """Measure every case not already final in run_dir; each row is flushed to disk as it ends."""
    from .environment import collect

    writer = RunWriter(run_dir)
    done = writer.finished_case_ids()
    apply_threads(suite)
    env = collect(command=command)
    env["suite"] = {"name": suite.name, "path": str(suite.path), "cases": len(cases)}
    env["ceilings"] = measured_ceilings(cases)
    first = load_env(run_dir) if done else {}
    if first:  # a resume keeps the environment the run started in and records its own beside it
        env = {**first, "resumed": [*first.get("resumed", []), env]}
    writer.write_json(ENV, env)
    if not (run_dir / SUITE).exists():
        writer.write_text(SUITE, suite.text)

    outcome = SweepOutcome(run_dir=run_dir)
    todo = [case for case in cases if case.case_id not in done]
    outcome.skipped = len(cases) - len(todo)
    for index, case in enumerate(todo):
        if index:
            time.sleep(cooldown_seconds(suite, case))
        if on_start:
            on_start(case, index)
        row, samples = run_case(case, suite.measure, suite=suite.name)
        if profile and row["status"] == "ok":
            _attach_trace(case, run_dir, row)
        writer.append(row, samples)
        outcome.rows.append(row)
        if on_row:
            on_row(case, row)
    return outcome
