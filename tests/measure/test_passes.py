"""The passes around the timed loop: the SDPA backend set once, no profiler before timing, the energy window."""
from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import attentions.dense as dense_module
from rpbench import backbones
from rpbench.measure import passes, probes, runner
from rpbench.measure.timing import CUDA_GRAPH
from rpbench.measure.workload import make_workload, pinned_sdpa
from rpbench.core.case import CaseFlags, Timing
from rpbench.suites import case_from_flags


def dense_case(backend: str, compile_mode: str = "none"):
    case = case_from_flags(CaseFlags(attention="dense", grid="8x8", dim=32, heads=4, device="cpu",
                                     knobs=[f"backend={backend}"]))
    return replace(case, compile=compile_mode)


def test_a_forced_backend_is_set_once_around_the_timed_loop_not_per_call(monkeypatch):
    entered = []
    real = dense_module.sdpa_kernel
    monkeypatch.setattr(dense_module, "sdpa_kernel", lambda backends: entered.append(backends) or real(backends))
    case = dense_case("math")
    work = make_workload(case)
    taken = runner.timed_round(case, Timing(warmup_ms=1, repeat=20, rounds=1), work)
    assert len(taken.samples) == 20 and entered == []  # the module's call is plain inside the pinned pass
    assert work.module.sdpa_backend == "math"  # and the module is as it was after it
    with pinned_sdpa(case, work):
        kernels = probes.sdpa_kernels_that_ran(work.probe_step, work.reset)
    assert kernels == ["math"]  # the outer context really picks the kernel


def test_auto_and_compiled_modules_are_left_as_they_are():
    for case in (dense_case("auto"), dense_case("math", compile_mode="default")):
        work = make_workload(case)
        before = work.module.sdpa_backend
        with pinned_sdpa(case, work):
            assert work.module.sdpa_backend == before


def test_the_attention_share_starts_no_profiler(monkeypatch):
    def no_profiler(*_args, **_kwargs):
        raise AssertionError("a profiler session started before the timed passes")

    monkeypatch.setattr(probes, "profile", no_profiler)
    torch.manual_seed(0)
    model = backbones.build("deit-t", 64, backbones.parse_layout("deit-t", "dense", None, {}))
    share, _ = probes.attention_share(model, torch.randn(1, 3, 64, 64), "cpu")
    assert 0.0 < share < 1.0


@pytest.fixture
def fake_energy(monkeypatch):
    """An NVML energy meter that reads 7 J over any window, a free synchronize, and a clock that advances 10 ms at
    every perf_counter read."""

    class Meter:
        MIN_WINDOW_S = 1.0
        supported = True

        def __init__(self, _gpu):
            pass

        def start(self):
            pass

        def stop(self):
            return 7.0

    monkeypatch.setattr(passes.telemetry, "EnergyMeter", Meter)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    clock = iter(i * 0.01 for i in range(10**6))
    monkeypatch.setattr(passes.time, "perf_counter", lambda: next(clock))


def test_the_energy_window_lasts_at_least_a_second_of_calls(fake_energy):
    """However the timed median was taken (a CUDA graph replays faster than eager calls), the energy loop runs
    on wall time until the window is long enough, and divides by the calls it really made."""
    calls = []
    work = SimpleNamespace(reset=lambda: None, step=lambda: calls.append(1))
    joules, window_s, note = passes.energy_per_call(0, work, Timing(energy_s=0.2), "cuda_event")
    assert window_s >= 1.0 and joules == pytest.approx(7.0 / len(calls)) and note is None


def test_energy_under_the_graph_timer_is_measured_over_replays(fake_energy, monkeypatch):
    """Latency from graph replays and energy from eager calls would measure two different things (issue 33)."""
    eager, replays = [], []
    monkeypatch.setattr(passes, "capture_step", lambda step, reset: SimpleNamespace(replay=lambda: replays.append(1)))
    work = SimpleNamespace(step=lambda: eager.append(1), reset=lambda: None)
    joules, _, _ = passes.energy_per_call(0, work, Timing(), CUDA_GRAPH)
    assert replays and not eager and joules == pytest.approx(7.0 / len(replays))
    passes.energy_per_call(0, work, Timing(), "cuda_event")
    assert eager  # the eager timer's rows: energy over eager calls
