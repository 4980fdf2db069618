"""Interference is measured: other processes' share of the CPU around each timed window, other processes on the
GPU, the busiest culprits by name, and, for real, that a sweep run beside two CPU burners flags what they slowed.

These tests read the machine's real load (`real_load`), and the machine may be busy (tests side by side, a shared CI
runner): what they check holds on a busy machine as on an idle one."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

import rpbench
from rpbench.analysis import analyse_run
from rpbench.core.measurement import DISTURBED_MIN_CORES
from rpbench.machine import interference, telemetry

from cli_helpers import invoke

BURN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


class Burner:
    """A CPU-burning process that is *not* ours: started through a shell that exits at once, so it is reparented
    away from this process (rpbench does not count its own descendants, a sweep's workers, as other processes).
    It stops by itself after `seconds`; `stop` kills it sooner."""

    def __init__(self, seconds: float):
        shell = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!',
                                BURN.format(seconds=seconds)], capture_output=True, text=True, check=True)
        self.pid = int(shell.stdout.strip())

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass


def burners(count: int, seconds: float) -> list[Burner]:
    """CPU burners outside our process tree that stop by themselves after `seconds` (callers also `stop` them)."""
    return [Burner(seconds) for _ in range(count)]


def stop(children: list[Burner]) -> None:
    for child in children:
        child.kill()


@pytest.mark.real_load
def test_our_own_worker_processes_are_not_other_processes():
    """A process this one started (a sweep's worker importing torch as the sweep starts) burns a core: the start
    check does not count it, nor name it, while a burner outside our process tree is both counted and named."""
    ours = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=20)])
    theirs = Burner(seconds=20)
    try:
        time.sleep(0.3)
        named = {p.pid for p in interference.busiest_others(0.5, limit=64)}
        ticks = interference._descendant_ticks()
    finally:
        ours.kill()
        ours.wait()
        theirs.kill()
    assert theirs.pid in named and ours.pid not in named
    assert ticks > 0  # the child's CPU time is found as our own


@pytest.mark.real_load
def test_the_monitor_subtracts_our_own_cpu_time(monkeypatch):
    readings = iter([(1000, 4000), (1000 + 60, 4000 + 80)])  # 60 busy of 80 jiffies over 2 cores
    clock = iter([10.0, 10.2])  # we used 0.2 s = 20 jiffies of CPU ourselves
    monkeypatch.setattr(interference, "cpu_jiffies", lambda: next(readings))
    monkeypatch.setattr(interference.time, "process_time", lambda: next(clock))
    monkeypatch.setattr(interference.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(interference, "logical_cores", lambda: 2)
    with interference.LoadMonitor(own_threads=2) as monitor:
        pass
    load = monitor.load
    assert load.others_busy_cores == pytest.approx((60 - 20) / 80 * 2)  # 1.0 core of others
    assert load.window_s >= interference.MIN_WINDOW_S and load.disturbed


@pytest.mark.real_load
def test_without_proc_stat_the_load_is_unknown_not_idle(monkeypatch):
    monkeypatch.setattr(interference, "cpu_jiffies", lambda: None)
    with interference.LoadMonitor(own_threads=1) as monitor:
        pass
    assert monitor.load.others_busy_cores is None and not monitor.load.disturbed


@pytest.mark.parametrize("pids, others", [([os.getpid()], 0), ([os.getpid(), 7, 8], 2),
                                          ([123456], 0), ([123456, 9], 1), (None, None)])
def test_other_gpu_processes_exclude_us_even_behind_a_pid_namespace(monkeypatch, pids, others):
    monkeypatch.setattr(interference, "_holds_cuda_context", lambda index: True)
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda index: 0)
    listed = None if pids is None else [{"pid": pid, "used_mib": 1.0} for pid in pids]
    monkeypatch.setattr(telemetry, "gpu_processes", lambda index: listed)
    assert interference.gpu_others(0) == others


def test_before_our_cuda_context_exists_every_gpu_process_is_another(monkeypatch):
    monkeypatch.setattr(interference, "_holds_cuda_context", lambda index: False)
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda index: 0)
    monkeypatch.setattr(telemetry, "gpu_processes", lambda index: [{"pid": 123456, "used_mib": 1.0}])
    assert interference.gpu_others(0) == 1


def test_torchs_lazy_init_is_no_cuda_context_and_hides_no_other_process(monkeypatch):
    """torch.cuda.is_initialized() is True after lazy init, which creates no context: judged by it, one real
    other process behind a pid namespace was taken to be us. The driver is asked instead."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch._C, "_cuda_hasPrimaryContext", lambda index: False, raising=False)
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda index: 0)
    monkeypatch.setattr(telemetry, "gpu_processes", lambda index: [{"pid": 123456, "used_mib": 1.0}])
    assert interference.gpu_others(0) == 1
    monkeypatch.setattr(torch._C, "_cuda_hasPrimaryContext", lambda index: True, raising=False)
    assert interference.gpu_others(0) == 0  # with a context, the one entry is us


@pytest.mark.parametrize("context, others", [(False, 1), (True, 0)])
def test_the_doctor_and_the_timed_windows_count_other_gpu_processes_alike(monkeypatch, context, others):
    """One rule for both: behind a pid namespace NVML lists host pids, and the doctor compared raw pids."""
    from rpbench.machine import gpu_checks

    monkeypatch.setattr(interference, "_holds_cuda_context", lambda index: context)
    monkeypatch.setattr(telemetry, "nvml_available", lambda: True)
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda index: 0)
    monkeypatch.setattr(telemetry, "gpu_processes", lambda index: [{"pid": 123456, "used_mib": 1.0}])
    monkeypatch.setattr(telemetry, "gpu_inventory", lambda: [
        {"persistence_mode": True, "mig_enabled": False, "sm_clock_max_mhz": 1980}])
    monkeypatch.setattr(gpu_checks, "_snapshot_under_load", lambda i, seconds: {
        "sm_clock_mhz": 1980, "temp_c": 60, "power_w": 300.0, "throttle_reasons": [], "throttled": False})
    check = next(c for c in gpu_checks.check_gpu_state(0) if c.name == "gpu processes")
    assert interference.gpu_others(0) == others
    assert check.status == ("fail" if others else "pass")


def test_the_busy_machine_sentence_starts_at_half_the_cores():
    assert interference.busy_machine_sentence(0.9, 2) is None
    sentence = interference.busy_machine_sentence(1.0, 2)
    assert sentence.startswith("other processes keep 1.00 of 2 cores busy: timings taken now are slowed")
    assert interference.busy_machine_sentence(0.0, 2, gpu_processes=1).startswith("1 other process uses the GPU")
    assert interference.busy_machine_sentence(None, 2) is None


@pytest.mark.real_load
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_a_burning_process_is_seen_and_named():
    """Alone, the burner takes a whole core; beside other work it takes its share of the cores, still well above the
    tenth of a core from which a process is named (the bar: a fifth of a core, i.e. up to ten busy processes)."""
    children = burners(1, seconds=20)
    try:
        time.sleep(0.3)
        busy = interference.others_busy_cores(0.5)
        named = interference.busiest_others(0.5, limit=64)
    finally:
        stop(children)
    assert busy is not None and busy >= 0.2
    burner = [p for p in named if p.pid == children[0].pid]
    assert burner and burner[0].cores >= 0.2, named
    assert f"(pid {children[0].pid})" in interference.describe_busiest(burner)


@pytest.mark.real_load
def test_a_quiet_machine_is_assumed_only_when_asked_and_env_json_says_so(monkeypatch):
    """The test suite's seam (interference.ASSUME_QUIET_ENV): other processes read as idle, and a run says so."""
    from rpbench.machine import environment

    children = burners(1, seconds=20)
    try:
        time.sleep(0.3)
        monkeypatch.setenv(interference.ASSUME_QUIET_ENV, "1")
        assert interference.others_busy_cores(0.2) == 0.0 and interference.busiest_others(0.2) == []
        with interference.LoadMonitor(own_threads=1) as monitor:
            time.sleep(0.2)
        assert monitor.load.others_busy_cores == 0.0 and not monitor.load.disturbed
        assert environment.collect()["assume_quiet"] is True
        monkeypatch.delenv(interference.ASSUME_QUIET_ENV)
        assert interference.others_busy_cores(0.3) >= 0.2  # the burner, seen again
        assert environment.collect()["assume_quiet"] is False
    finally:
        stop(children)


SUITE = """
name = "interference"
description = "cases of a few ms, two threads, on the CPU"
[axes]
tokens = [576]
batch = [1]
dim = [64]
heads = [4]
dtype = ["float32"]
mode = ["fwd"]
device = "cpu"
[measure]
warmup_ms = 30
repeat_ms = 100
min_samples = 5
threads = {threads}
rounds = 2
retries = 1
[[attention]]
name = "dense-naive"
[[attention]]
name = "linear"
[[attention]]
name = "window"
"""


@pytest.mark.slow
@pytest.mark.real_load
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_a_sweep_beside_two_cpu_burners_flags_the_rows_they_slowed(tmp_path):
    """Burners on every core: every row they slowed is flagged. The sweep without them runs on whatever the machine
    is doing (it may be busy with other tests): its rows are flagged exactly where their passes saw other processes
    keep cores busy, so on an idle machine (almost) none are."""
    threads = min(2, os.cpu_count() or 1)
    suite = tmp_path / "interference.toml"
    suite.write_text(SUITE.format(threads=threads))
    idle_dir, busy_dir = tmp_path / "idle", tmp_path / "busy"
    assert invoke("sweep", str(suite), "--out", str(idle_dir), "--no-report").exit_code == 0
    children = burners(max(2, os.cpu_count() or 1), seconds=90)
    try:
        time.sleep(0.3)
        busy_run = invoke("sweep", str(suite), "--out", str(busy_dir), "--no-report")
    finally:
        stop(children)
    assert busy_run.exit_code == 0
    assert "warning: other processes keep" in busy_run.output  # said once, at the start
    idle = rpbench.load(idle_dir).set_index("case_id")
    busy = rpbench.load(busy_dir).set_index("case_id")
    slowed = busy["latency_ms_median"] / idle["latency_ms_median"] > 1.5
    flagged = busy["disturbed"].astype(bool)
    assert flagged[slowed].all(), busy.loc[slowed & ~flagged, ["label", "tokens", "others_busy_cores"]]
    assert flagged.sum() >= len(busy) - 1 and (busy["retries"] >= 1).all()
    # the same sweep without burners flags a row only where other processes kept cores busy beside it
    idle_flagged = idle["disturbed"].astype(bool)
    assert (idle.loc[idle_flagged, "others_busy_cores"] >= DISTURBED_MIN_CORES).all()
    quiet = idle["others_busy_cores"] < DISTURBED_MIN_CORES
    assert not idle_flagged[quiet].any()
    assert "rows flagged" in busy_run.output and "disturbed" in busy_run.output
    summary = analyse_run(busy.reset_index(), {}).summary
    assert summary["usable"].sum() <= 1 and summary.loc[summary["flagged"], "speedup"].isna().all()


@pytest.mark.parametrize("pids, parent, others", [
    ([os.getpid(), 4242], "4242:1", 0),        # the sweep that started this worker is not "another process"
    ([os.getpid(), 4242, 7], "4242:0", 1),
    ([123456, 654321], "4242:1", 0),            # behind a pid namespace: one entry us, one our sweep (it holds one)
    ([123456, 654321], "4242:0", 1),            # ... but a sweep without a context is not on the list
    ([os.getpid(), 4242], "", 1),               # outside a worker, a second process is another
])
def test_a_worker_does_not_count_its_own_sweep_as_another_gpu_process(monkeypatch, pids, parent, others):
    monkeypatch.setenv(interference.PARENT_ENV, parent)
    monkeypatch.setattr(interference, "_holds_cuda_context", lambda index: True)
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda index: 0)
    monkeypatch.setattr(telemetry, "gpu_processes", lambda index: [{"pid": pid, "used_mib": 1.0} for pid in pids])
    assert interference.gpu_others(0) == others
