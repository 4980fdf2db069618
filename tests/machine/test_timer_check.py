"""The timer cross-check: rpbench's timers against timers it did not write, ratios, the doctor's tolerance, and the
result in every run's env.json (tests/measure/test_sweep.py runs the real CPU comparison)."""
from __future__ import annotations

import pytest

from rpbench.machine import timer_check


@pytest.fixture
def fixed(monkeypatch):
    """Every timer returns what the test says (no device, no timing)."""
    medians = {"eager": 1.0, "graph": 0.5, "do_bench": 1.0, "do_bench_cudagraph": 0.5, "benchmark": 1.0}
    monkeypatch.setattr(timer_check, "_fixed_module", lambda device: (lambda: None, "MLP (stand-in)"))
    monkeypatch.setattr(timer_check, "time_step", lambda *a: [medians["eager"]] * 3)
    monkeypatch.setattr(timer_check, "time_graph", lambda *a: [medians["graph"]] * 3)
    monkeypatch.setattr(timer_check, "_benchmark_timer_ms", lambda step, window_ms: medians["benchmark"])
    triton = (lambda fn, **kw: medians["do_bench"], lambda fn, **kw: medians["do_bench_cudagraph"])
    monkeypatch.setattr(timer_check, "triton_timers", lambda: triton)
    return medians


def test_on_cuda_both_timers_are_checked_against_triton(fixed):
    found = timer_check.measure("cuda")
    assert found["independent"].startswith("triton.testing.do_bench")
    assert found["eager_ratio"] == 1.0 and found["graph_ratio"] == 1.0 and found["status"] == "pass"
    fixed["graph"] = 0.5 * (1 + timer_check.TOLERANCE["cuda"] + 0.01)  # the graph timer alone is off
    found = timer_check.measure("cuda")
    assert found["graph_ratio"] > 1.1 and found["status"] == "fail"
    assert "graph 0.5" in timer_check.describe(found)


def test_the_doctor_fails_beyond_the_stated_tolerance_and_caches_the_result(fixed):
    fixed["eager"] = 1.0 + timer_check.TOLERANCE["cpu"] + 0.05
    failed = timer_check.check("cpu")
    assert failed.status == "fail" and "disagree by more than 25%" in failed.advice
    assert timer_check.cached("cpu")["eager_ratio"] == pytest.approx(1.30)  # what the next sweep records
    fixed["eager"] = 1.0 + timer_check.TOLERANCE["cpu"] - 0.05
    assert timer_check.check("cpu").status == "pass"
    assert timer_check.measure("cpu")["graph_ratio"] is None  # no graph timer on the CPU


def test_a_sweep_records_the_cached_check_or_measures_one(fixed, tmp_path, monkeypatch):
    monkeypatch.setenv("RPBENCH_CACHE", str(tmp_path))
    assert timer_check.cached("cpu") is None
    measured = timer_check.for_run({"cpu"})
    assert measured["eager_ratio"] == 1.0 and timer_check.cached("cpu")["measured_at"] == measured["measured_at"]
    fixed["eager"] = 5.0
    assert timer_check.for_run({"cpu"})["eager_ratio"] == 1.0  # the cached one, not measured again
    assert timer_check.for_run({"cpu", "cuda"}) is None
