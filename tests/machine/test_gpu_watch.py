"""GpuWatch reads the GPU during a timed window (a thread, plus NVML's violation counters), with a fake NVML."""
from __future__ import annotations

import itertools
import sys
import threading
import time
from types import SimpleNamespace


from rpbench.machine import telemetry
from rpbench.machine.gpu_watch import GpuWatch

from fake_nvml import fake_pynvml


def install(monkeypatch, module) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", module)
    telemetry.reset()


def counters(per_read_ns: dict[int, int]):
    """Violation counters that grow by per_read_ns[policy] on every read."""
    reads = {policy: itertools.count() for policy in (0, 1, 3, 5)}
    return lambda handle, policy: SimpleNamespace(referenceTime=0, violationTime=next(reads[policy]) * per_read_ns.get(policy, 0))


def test_readings_are_taken_during_the_window_on_a_thread(monkeypatch):
    clocks = itertools.cycle([1980, 1500, 1755])
    seen_threads = set()

    def clock(handle, kind):
        seen_threads.add(threading.current_thread().name)
        return next(clocks) if kind == 1 else 2619

    install(monkeypatch, fake_pynvml(nvmlDeviceGetClockInfo=clock, nvmlDeviceGetViolationStatus=counters({}),
                                     nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x001))
    with GpuWatch(0, interval_s=0.02) as watch:
        time.sleep(0.15)
    window = watch.window
    assert window.readings >= 5 and window.window_s >= 0.15  # one at each end, the rest from the thread
    assert "rpbench-gpu-watch" in seen_threads
    assert window.sm_clock_min_mhz == 1500 and window.temp_max_c == 63 and window.power_median_w == 350.5
    assert window.reasons == () and not window.throttled and not window.power_capped  # gpu_idle is no limit
    assert dict(window.violation_ms) == {"power": 0.0, "thermal": 0.0, "board_limit": 0.0, "reliability": 0.0}


def test_a_thermal_slowdown_counted_inside_the_window_throttles_it(monkeypatch):
    """The clocks look fine at both ends; only the violation counter says the window was slowed."""
    install(monkeypatch, fake_pynvml(nvmlDeviceGetViolationStatus=counters({1: 40_000_000}),
                                     nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x000))
    with GpuWatch(0, interval_s=10) as watch:
        pass
    assert watch.window.throttled and watch.window.slowdowns() == ("thermal violation 40 ms",)


def test_the_power_cap_is_recorded_but_is_no_slowdown(monkeypatch):
    install(monkeypatch, fake_pynvml(nvmlDeviceGetViolationStatus=counters({0: 5_000_000}),
                                     nvmlDeviceGetCurrentClocksEventReasons=lambda h: 0x004))
    with GpuWatch(0, interval_s=10) as watch:
        pass
    assert watch.window.power_capped and not watch.window.throttled and watch.window.reasons == ("sw_power_cap",)


def test_a_reason_seen_only_mid_window_is_kept(monkeypatch):
    reasons = iter([0x000, 0x040] + [0x000] * 1000)
    install(monkeypatch, fake_pynvml(nvmlDeviceGetCurrentClocksEventReasons=lambda h: next(reasons),
                                     nvmlDeviceGetViolationStatus=None))
    with GpuWatch(0, interval_s=0.01) as watch:
        time.sleep(0.05)
    assert watch.window.slowdowns() == ("hw_thermal_slowdown",) and watch.window.violation_ms == ()


def test_without_nvml_or_without_a_gpu_nothing_is_read(monkeypatch):
    install(monkeypatch, None)
    with GpuWatch(0) as watch:
        pass
    assert watch.window is None
    with GpuWatch(None) as cpu:
        pass
    assert cpu.window is None
