"""`sweep --isolate`: every pass in a fresh process; a worker that segfaults or hangs is a row with its status and
the sweep goes on."""
from __future__ import annotations

import time

import pandas as pd
import pytest

import rpbench
from rpbench.measure import isolated
from rpbench.core.case import CaseFlags, Timing
from rpbench.suites import case_from_flags

from cli_helpers import invoke, planted, tiny_suite

pytestmark = pytest.mark.slow  # the fast lane leaves these out: worker processes, crashes, kill -9 and resume: real processes, seconds each

def test_isolated_sweep_measures_the_same_cases_as_one_process(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense", "rpattention"), tokens="16, 64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    assert invoke("sweep", str(suite), "--out", str(tmp_path / "one"), "--no-report").exit_code == 0
    result = invoke("sweep", str(suite), "--out", str(tmp_path / "iso"), "--no-report", "--isolate")
    assert result.exit_code == 0, result.output
    one, iso = rpbench.load(tmp_path / "one"), rpbench.load(tmp_path / "iso")
    assert sorted(iso["case_id"]) == sorted(one["case_id"]) and (iso["status"] == "ok").all()
    assert (iso["rounds"] >= 2).all() and iso["case_id"].is_unique  # more when a disturbed pass was retried
    from rpbench.results.store import load_samples

    counts = load_samples(tmp_path / "iso").groupby("case_id").size()
    pd.testing.assert_series_equal(counts.sort_index(), iso.set_index("case_id")["n_samples"].astype("int64")
                                   .sort_index(), check_names=False)


def test_a_segfault_and_a_hang_are_rows_and_the_sweep_goes_on(tmp_path):
    crash = planted(tmp_path, "segv", "os.kill(os.getpid(), signal.SIGSEGV)")
    hang = planted(tmp_path, "hang", "time.sleep(120)")
    suite = tiny_suite(tmp_path, names=("dense", crash, hang), tokens="16")
    began = time.perf_counter()
    result = invoke("sweep", str(suite), "--out", str(tmp_path / "run"), "--no-report", "--isolate",
                    "--case-timeout", "5")
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - began < 90  # the hang cost its timeout, not 120 s
    frame = rpbench.load(tmp_path / "run").set_index("attention")
    assert frame.loc["dense", "status"] == "ok", frame.loc["dense", "notes"]
    assert frame.loc[crash, "status"] == "crashed" and "SIGSEGV" in frame.loc[crash, "notes"]
    assert frame.loc[hang, "status"] == "timeout" and "no result within 5 s" in frame.loc[hang, "notes"]
    again = invoke("sweep", "--resume", str(tmp_path / "run"), "--no-report", "--isolate", "--case-timeout", "5")
    assert again.exit_code == 0 and "3 case(s) already done were skipped" in again.output  # final statuses


def test_a_later_pass_whose_worker_dies_keeps_the_passes_taken(monkeypatch):
    case = case_from_flags(CaseFlags(attention="dense", tokens=16, dim=32, heads=4, device="cpu"))
    first = isolated.run_first(case, Timing(warmup_ms=1, repeat=3, rounds=1), "s", timeout_s=120)
    assert first.status == "ok" and len(first.samples) == 3 and first.rounds
    monkeypatch.setattr(isolated, "_run", lambda job, timeout_s: (None, "crashed: the worker died (SIGKILL)"))
    with pytest.raises(isolated.WorkerDied, match="SIGKILL"):
        isolated.run_again(case, Timing(warmup_ms=1, repeat=3), first)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "100000"])
def test_a_bad_case_timeout_is_one_line(tmp_path, value):
    result = invoke("sweep", str(tiny_suite(tmp_path)), "--out", str(tmp_path / "never"), "--isolate",
                    "--case-timeout", value)
    assert result.exit_code == 2 and "--case-timeout" in result.output and not (tmp_path / "never").exists()


# ---------------------------------------------------------------- --workers N: passes side by side, one writer

def assert_complete(run_dir, suite_cases: int) -> pd.DataFrame:
    """Every case once, every row's samples in samples.csv and nowhere else, every pass in rounds.csv once."""
    from rpbench.results.store import load_samples

    frame = rpbench.load(run_dir)
    assert len(frame) == suite_cases and frame["case_id"].is_unique
    samples = load_samples(run_dir)
    counts = samples.groupby("case_id").size()
    timed = frame[frame["n_samples"].notna()].set_index("case_id")["n_samples"].astype("int64")
    pd.testing.assert_series_equal(counts.sort_index(), timed.sort_index(), check_names=False)
    rounds = pd.read_csv(run_dir / "rounds.csv")
    assert not rounds.duplicated(["case_id", "round"]).any()
    return frame


def test_two_workers_measure_exactly_the_cases_of_a_sequential_run(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense", "rpattention", "linear"), tokens="16, 64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    assert invoke("sweep", str(suite), "--out", str(tmp_path / "one"), "--no-report").exit_code == 0
    result = invoke("sweep", str(suite), "--out", str(tmp_path / "two"), "--no-report", "--workers", "2")
    assert result.exit_code == 0, result.output
    one, two = rpbench.load(tmp_path / "one"), assert_complete(tmp_path / "two", 6)
    assert sorted(two["case_id"]) == sorted(one["case_id"]) and (two["status"] == "ok").all()
    assert (two["threads"] == 1).all()  # the suite's threads split between the two workers


def test_a_worker_that_crashes_beside_others_is_its_own_row(tmp_path):
    crash = planted(tmp_path, "segv2", "os.kill(os.getpid(), signal.SIGSEGV)")
    suite = tiny_suite(tmp_path, names=("dense", crash, "linear"), tokens="16, 64")
    result = invoke("sweep", str(suite), "--out", str(tmp_path / "run"), "--no-report", "--workers", "2")
    assert result.exit_code == 0, result.output
    frame = assert_complete(tmp_path / "run", 6)
    statuses = {name: set(group) for name, group in frame.groupby("attention")["status"]}
    assert statuses == {"dense": {"ok"}, "linear": {"ok"}, crash: {"crashed"}}


def test_kill_9_of_the_orchestrator_with_workers_then_resume_loses_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    suite = tiny_suite(tmp_path, names=("dense", "rpattention", "linear", "efficient"), tokens="16, 64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rpbench", "sweep", str(suite), "--out", str(out), "--no-report",
                             "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # kill once some passes are journalled, before every case is final
            journal = out / "passes.jsonl"
            if journal.exists() and journal.read_text().count("\n") >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the sweep did not journal passes in time")
        assert workers_started_by(proc.pid)  # the persistent workers, in sessions of their own
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while workers_started_by(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers_started_by(proc.pid) == []  # each saw its sweep gone and ended: no orphan keeps a CPU busy
    results = out / "results.csv"
    before = len(results.read_text().splitlines()) - 1 if results.exists() else 0
    assert before < 8  # killed mid-run
    result = invoke("sweep", "--resume", str(out), "--no-report", "--workers", "2")
    assert result.exit_code == 0, result.output
    frame = assert_complete(out, 8)
    assert (frame["status"] == "ok").all()


def workers_started_by(pid: int) -> list[int]:
    """The live worker processes a sweep with this pid started (each has RPBENCH_PARENT=<pid>:... in its
    environment)."""
    from pathlib import Path

    from rpbench.machine.interference import PARENT_ENV

    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if any(item.startswith(f"{PARENT_ENV}={pid}:".encode()) for item in environ.split(b"\0")):
            found.append(int(entry.name))
    return found
