"""Hand-made run dirs of one suite measured several times: on two device models, and at three commits of the
project (the third one with a planted 2x slowdown), all written through the real store (see fake_runs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fake_runs import DEFAULT_ENV, scaled, scaling_rows, write_run

A100 = "NVIDIA A100-SXM4-80GB"
# scaling_rows() index of the case the third commit slows down: rpattention at N = 784.
SLOWED = 3
# Three commits: their committer dates run c1 < c2 < c3, their sweeps ran in the reverse order (a bisect), so
# ordering by commit and ordering by time differ.
COMMITS = ("c1" + "1" * 38, "c2" + "2" * 38, "c3" + "3" * 38)


def env(day: int, commit: str | None = "0123abcd", commit_day: int | None = None, **more: Any) -> dict[str, Any]:
    """env.json of a run swept on 2025-03-`day`, at `commit` (committed on 2025-02-`commit_day`)."""
    found = dict(DEFAULT_ENV, collected_at=f"2025-03-{day:02d}T12:00:00+00:00", git_commit=commit, **more)
    if commit_day is not None:
        found["git_commit_time"] = f"2025-02-{commit_day:02d}T09:00:00+00:00"
    return found


def device_runs(root: Path) -> tuple[Path, Path]:
    """The same cases on an H100 and on an A100 that is exactly 2x slower in every case."""
    h100 = write_run(root / "h100", scaling_rows(), env=env(1))
    a100 = write_run(root / "a100", [scaled(row, 2.0, device_name=A100) for row in scaling_rows()], env=env(2))
    return h100, a100


def commit_runs(root: Path, factor: float = 2.0) -> list[Path]:
    """The same cases on one H100 at three commits; the third slows case SLOWED by `factor`."""
    dirs = []
    for index, commit in enumerate(COMMITS):
        rows = scaling_rows()
        if index == 2:
            rows[SLOWED] = scaled(rows[SLOWED], factor)
        dirs.append(write_run(root / f"run-{commit[:2]}", rows, env=env(9 - index, commit, commit_day=index + 1)))
    return dirs


@pytest.fixture
def wide_consoles(monkeypatch):
    """rpbench's consoles 260 columns wide, whatever COLUMNS was when another test first imported them (a console
    reads it once), so the tables of several runs print whole cells."""
    from rpbench.cli.app import console, err_console

    for found in (console, err_console):
        monkeypatch.setattr(found, "width", 260)
