"""Shared helpers of the launcher tests (submitit's local executor, a fake sbatch, a real SLURM)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

import rpbench
from rpbench.results import launched
from rpbench.results.store import load_samples


def wait_for_tasks(run_dir: Path, states=("done",), timeout_s: float = 240, ready=None) -> list[launched.TaskState]:
    """The tasks' states once every one is in `states` (or `ready(states)` holds); the test fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = launched.task_states(run_dir)
        if ready(found) if ready else all(s.state in states for s in found):
            return found
        time.sleep(0.2)
    pytest.fail(f"tasks not {states} in time: {launched.task_states(run_dir)}")


def kill_running(run_dir: Path) -> None:
    """Leave no task process behind a failed test."""
    for state in launched.task_states(run_dir):
        if state.state == "running" and state.detail and state.detail.startswith("pid "):
            try:
                os.kill(int(state.detail.split()[1]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def assert_whole(run_dir: Path, cases: int) -> pd.DataFrame:
    """Every case once, every row's samples and passes there once."""
    frame = rpbench.load(run_dir)
    assert len(frame) == cases and frame["case_id"].is_unique
    counts = load_samples(run_dir).groupby("case_id").size()
    timed = frame[frame["n_samples"].notna()].set_index("case_id")["n_samples"].astype("int64")
    pd.testing.assert_series_equal(counts.sort_index(), timed.sort_index(), check_names=False)
    rounds = pd.read_csv(run_dir / "rounds.csv")
    assert not rounds.duplicated(["case_id", "round"]).any()
    assert set(rounds["case_id"]) == set(frame.loc[frame["n_samples"].notna(), "case_id"])
    return frame


def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """`srun` and `sbatch` on PATH; sbatch keeps each batch script it is given and answers job 4242."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "scripts"
    bin_dir.mkdir()
    kept.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{kept}/$(date +%s%N).sh"\necho "Submitted batch job 4242"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept
