"""NVML telemetry: every path returns values, never raises, with NVML absent, failing or partly supported."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from rpbench.machine import telemetry


from fake_nvml import GPUS, FakeNVMLError, _raises, fake_pynvml  # noqa: F401


@pytest.fixture
def install(monkeypatch):
    def put(module):
        monkeypatch.setitem(sys.modules, "pynvml", module)
        telemetry.reset()

    return put


NONE_SNAPSHOT = {"sm_clock_mhz": None, "temp_c": None, "power_w": None, "throttle_reasons": None, "throttled": None}


def test_everything_is_a_value_when_pynvml_cannot_be_imported(install):
    install(None)  # a None entry in sys.modules makes `import pynvml` raise ImportError
    assert not telemetry.nvml_available()
    assert "not importable" in telemetry.nvml_unavailable_reason()
    assert telemetry.device_count() == 0
    assert telemetry.gpu_inventory() == []
    assert telemetry.gpu_processes(0) is None
    assert telemetry.nvml_index_for_cuda_device(0) is None
    assert telemetry.snapshot(0) == NONE_SNAPSHOT
    meter = telemetry.EnergyMeter(0)
    assert not meter.supported
    meter.start()
    assert meter.stop() is None


def test_init_failure_is_reported_as_the_reason(install):
    install(fake_pynvml(nvmlInit=_raises("Driver Not Loaded")))
    assert not telemetry.nvml_available()
    assert telemetry.nvml_unavailable_reason() == "Driver Not Loaded"
    assert telemetry.snapshot(0) == NONE_SNAPSHOT


def test_inventory_converts_units_and_turns_unsupported_queries_into_none(install):
    install(fake_pynvml(unsupported=("nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetMigMode",
                                     "nvmlDeviceGetTemperature", "nvmlSystemGetDriverVersion")))
    assert telemetry.nvml_available() and telemetry.nvml_unavailable_reason() is None
    first, second = telemetry.gpu_inventory()
    assert first["nvml_index"] == 0 and second["nvml_index"] == 1
    assert first["name"] == "NVIDIA H100 80GB HBM3"  # bytes decoded
    assert first["uuid"] == "GPU-aaaa1111-0000-0000-0000-000000000000"
    assert first["pci_bus_id"] == "00000000:17:00.0"
    assert first["memory_total_mib"] == 80 * 1024
    assert first["driver_version"] is None and first["cuda_driver_version"] == "12.4"
    assert (first["sm_clock_mhz"], first["sm_clock_max_mhz"]) == (1755, 1980)
    assert (first["mem_clock_mhz"], first["mem_clock_max_mhz"]) == (2619, 2619)
    assert first["power_w"] == pytest.approx(350.5)
    assert first["power_limit_w"] == pytest.approx(650.0)  # enforced limit unsupported: management limit
    assert first["temp_c"] is None and first["mig_enabled"] is None
    assert first["persistence_mode"] is True and first["ecc_enabled"] is True
    assert first["throttle_reasons"] == ["gpu_idle"] and first["throttled"] is False
    assert second["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"] and second["throttled"] is True


def test_inventory_survives_every_device_query_failing(install):
    device_calls = [name for name in dir(fake_pynvml()) if name.startswith("nvmlDevice") and name not in
                    ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex")]
    install(fake_pynvml(unsupported=tuple(device_calls)))
    entries = telemetry.gpu_inventory()
    assert len(entries) == 2
    assert all(value is None for key, value in entries[0].items()
               if key not in ("nvml_index", "driver_version", "cuda_driver_version"))
    assert telemetry.snapshot(0) == NONE_SNAPSHOT
    assert telemetry.gpu_processes(0) is None


def test_a_lost_handle_leaves_the_device_listed_with_nothing_known(install):
    install(fake_pynvml(unsupported=("nvmlDeviceGetHandleByIndex",)))
    entries = telemetry.gpu_inventory()
    assert [entry["nvml_index"] for entry in entries] == [0, 1]
    assert entries[0]["name"] is None and entries[0]["throttle_reasons"] is None


def test_old_drivers_fall_back_to_the_throttle_reasons_call(install):
    install(fake_pynvml(nvmlDeviceGetCurrentClocksEventReasons=None))
    assert telemetry.snapshot(0)["throttle_reasons"] == ["hw_slowdown"]


def test_throttle_decoding_and_what_counts_as_throttled():
    assert telemetry.decode_throttle_reasons(0) == []
    assert telemetry.decode_throttle_reasons(0x001 | 0x002) == ["gpu_idle", "applications_clocks_setting"]
    assert telemetry.decode_throttle_reasons(0x004 | 0x1000) == ["sw_power_cap", "unknown_0x1000"]
    assert not telemetry.is_throttled(["gpu_idle", "applications_clocks_setting"])
    assert telemetry.is_throttled(["gpu_idle", "sw_power_cap"])
    assert telemetry.is_throttled(["unknown_0x1000"])


def test_only_the_clock_event_bits_of_nvml_h_are_named():
    """nvml.h's clocks-event reasons end at 0x100 (nvmlClocksEventReasonAll = 0x1ff); board and reliability limits
    exist only as violation policies. Invented 0x200 / 0x400 names would read noise as a slowdown."""
    from rpbench.core.gpu import SLOWDOWN_POLICIES, SLOWDOWN_REASONS

    assert max(telemetry.THROTTLE_REASON_BITS) == 0x100 and sum(telemetry.THROTTLE_REASON_BITS) == 0x1FF
    assert not any(name.startswith("unknown") for name in telemetry.decode_throttle_reasons(0x1FF))
    assert telemetry.decode_throttle_reasons(0x200 | 0x400) == ["unknown_0x600"]
    assert SLOWDOWN_REASONS <= set(telemetry.THROTTLE_REASON_BITS.values())
    assert {"board_limit", "reliability"} <= set(SLOWDOWN_POLICIES) <= set(telemetry.VIOLATION_POLICIES)


def test_snapshot_reads_the_mapped_device(install):
    install(fake_pynvml())
    snap = telemetry.snapshot(1)
    assert snap == {"sm_clock_mhz": 1755, "temp_c": 63, "power_w": pytest.approx(350.5),
                    "throttle_reasons": ["sw_power_cap", "hw_thermal_slowdown"], "throttled": True}
    assert telemetry.snapshot(5) == NONE_SNAPSHOT  # no such device: values, not an exception


def test_processes_merge_compute_and_graphics_lists(install):
    install(fake_pynvml(nvmlDeviceGetGraphicsRunningProcesses=lambda h: [SimpleNamespace(pid=7, usedGpuMemory=None)]))
    assert telemetry.gpu_processes(0) == [{"pid": 4242, "used_mib": 512.0}, {"pid": 7, "used_mib": None}]


def test_energy_meter_turns_millijoules_into_joules(install):
    install(fake_pynvml(energy_mj=(999, 1_000_000, 1_002_500)))  # probe at construction, start, stop
    meter = telemetry.EnergyMeter(0)
    assert meter.supported
    meter.start()
    assert meter.stop() == pytest.approx(2.5)
    assert meter.stop() is None  # a window needs its own start
    assert telemetry.EnergyMeter.MIN_WINDOW_S >= 1.0


def test_energy_meter_rejects_a_counter_that_went_backwards(install):
    install(fake_pynvml(energy_mj=(5_000, 5_000, 10)))
    meter = telemetry.EnergyMeter(0)
    meter.start()
    assert meter.stop() is None


def test_energy_meter_unsupported_before_volta(install):
    install(fake_pynvml(unsupported=("nvmlDeviceGetTotalEnergyConsumption",)))
    meter = telemetry.EnergyMeter(0)
    assert not meter.supported
    meter.start()
    assert meter.stop() is None


def test_energy_meter_read_failing_mid_window_gives_none(install):
    install(fake_pynvml(energy_mj=(1, 2)))  # third read raises StopIteration: any failure is a value
    meter = telemetry.EnergyMeter(0)
    meter.start()
    assert meter.stop() is None


def test_cuda_index_maps_by_pci_bus_id_then_uuid(install, monkeypatch):
    install(fake_pynvml())
    monkeypatch.setattr(telemetry, "_torch_device_ids", lambda i: ((0, 0x2A, 0), None))
    assert telemetry.nvml_index_for_cuda_device(0) == 1
    telemetry.reset()
    monkeypatch.setattr(telemetry, "_torch_device_ids", lambda i: (None, "bbbb2222000000000000000000000000"))
    assert telemetry.nvml_index_for_cuda_device(0) == 1


def test_cuda_index_maps_through_cuda_visible_devices(install, monkeypatch):
    install(fake_pynvml())  # torch here has no CUDA, so only the environment variable can say
    assert telemetry.nvml_index_for_cuda_device(1) == 1
    for visible, cuda_index, expected in (("1", 0, 1), ("1,0", 1, 0), ("1", 1, None), ("7", 0, None),
                                          ("GPU-bbbb", 0, 1), ("GPU-", 0, None), ("MIG-xyz", 0, None), ("", 0, None)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        telemetry.reset()
        assert telemetry.nvml_index_for_cuda_device(cuda_index) == expected, visible
