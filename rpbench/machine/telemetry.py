"""GPU telemetry through NVML (the `nvidia-ml-py` binding, imported as `pynvml`).

Every NVML call goes through `_query`, which turns any failure into None: a benchmark must never die because a
driver, board or vGPU lacks one query (energy before Volta, power on some boards, clocks under MIG), nor because
NVML is missing altogether. Functions that take a device index take a *torch CUDA* index and map it to NVML's own
numbering with `nvml_index_for_cuda_device`; only `gpu_inventory` and `gpu_processes` speak NVML indices.

Longer than most modules (~330 lines) on purpose: it is the one wrapper around one binding, and every query,
decoder and index mapping shares `_query`'s failure rule; split up, that rule would have to be repeated.
"""
from __future__ import annotations

import functools
import os
import re
from types import ModuleType
from typing import Any

# Bits of nvmlClocksEventReasons / nvmlClocksThrottleReasons (nvml.h), which end at 0x100
# (nvmlClocksEventReasonAll = 0x1ff). Spelled out here so decoding does not depend on which constants a given binding
# version exports. Board and reliability limits are no clock-event bits: NVML reports them only as violation
# policies (VIOLATION_POLICIES below); any other bit decodes as unknown_<hex>.
THROTTLE_REASON_BITS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Reasons that do not mean "the clock is being pulled down while we work": an idle GPU, or clocks a user pinned.
NOT_CLOCK_LIMITING = frozenset({"gpu_idle", "applications_clocks_setting"})

# NVML enum values (nvml.h), used as plain ints so a fake binding in tests needs no constants.
_CLOCK_SM = 1  # NVML_CLOCK_SM
_CLOCK_MEM = 2  # NVML_CLOCK_MEM
_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
_ENABLED = 1  # NVML_FEATURE_ENABLED, NVML_DEVICE_MIG_ENABLE

_PCI_RE = re.compile(r"^([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.")


@functools.lru_cache(maxsize=1)
def _nvml() -> tuple[ModuleType | None, str | None]:
    """Import and initialise NVML once per process: (module, None) or (None, why not)."""
    try:
        import pynvml
    except ImportError as exc:
        return None, f"nvidia-ml-py is not importable ({exc})"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, OSError from ctypes, ...
        return None, _describe(exc)
    return pynvml, None


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an NVMLError's __str__ may itself call into a half-loaded library
        text = ""
    return text or type(exc).__name__


def reset() -> None:
    """Forget cached NVML state and index mappings (tests inject fake bindings; a driver reload needs it too)."""
    _nvml.cache_clear()
    nvml_index_for_cuda_device.cache_clear()


def nvml_available() -> bool:
    return _nvml()[0] is not None


def nvml_unavailable_reason() -> str | None:
    """Why NVML cannot be used here, or None when it can."""
    return _nvml()[1]


def _query(name: str, *args: Any) -> Any:
    """Call `pynvml.<name>(*args)`; None when NVML is absent, the function is missing or the call fails."""
    nvml = _nvml()[0]
    if nvml is None:
        return None
    try:
        return getattr(nvml, name)(*args)
    except Exception:  # NVMLError_NotSupported, NoPermission, FunctionNotFound, GpuIsLost, AttributeError, ...
        return None


def _on(handle: Any, name: str, *args: Any) -> Any:
    """A per-device query; None without a handle (never hand NVML a NULL device)."""
    return None if handle is None else _query(name, handle, *args)


def _text(value: Any) -> str | None:
    """NVML strings arrive as str or bytes depending on the binding version and the call."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _scaled(value: Any, divisor: float) -> float | None:
    return None if value is None else value / divisor


def _first(value: Any) -> Any:
    """Calls like nvmlDeviceGetEccMode return [current, pending]; keep the current state."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _enabled(value: Any) -> bool | None:
    current = _first(value)
    return None if current is None else current == _ENABLED


def device_count() -> int:
    """GPUs NVML sees (all of them, whatever CUDA_VISIBLE_DEVICES says); 0 without NVML."""
    return _query("nvmlDeviceGetCount") or 0


def _handle(nvml_index: int | None) -> Any:
    return None if nvml_index is None else _query("nvmlDeviceGetHandleByIndex", nvml_index)


def decode_throttle_reasons(mask: int) -> list[str]:
    """Names of the set bits of a clocks-event mask; unknown bits appear as hex so nothing is silently dropped."""
    names = [name for bit, name in THROTTLE_REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASON_BITS)
    if unknown:
        names.append(f"unknown_{unknown:#x}")
    return names


def is_throttled(reasons: list[str]) -> bool:
    return any(reason not in NOT_CLOCK_LIMITING for reason in reasons)


def _throttle_reasons(handle: Any) -> list[str] | None:
    # "ClocksEvent" is the current name; drivers older than 535 only have the deprecated "ClocksThrottle" call.
    mask = _on(handle, "nvmlDeviceGetCurrentClocksEventReasons")
    if mask is None:
        mask = _on(handle, "nvmlDeviceGetCurrentClocksThrottleReasons")
    return None if mask is None else decode_throttle_reasons(int(mask))


def _pci_bus_id(handle: Any) -> str | None:
    info = _on(handle, "nvmlDeviceGetPciInfo")
    return None if info is None else _text(getattr(info, "busId", None))


def _parse_pci(bus_id: str | None) -> tuple[int, int, int] | None:
    """'00000000:17:00.0' (NVML) -> (domain, bus, device), comparable with torch's pci_*_id properties."""
    match = _PCI_RE.match(bus_id or "")
    return None if match is None else tuple(int(part, 16) for part in match.groups())  # type: ignore[return-value]


def _normalise_uuid(uuid: str | None) -> str | None:
    """NVML says 'GPU-6b2b...-...', torch says '6b2b...-...': compare the bare hex digits."""
    if not uuid:
        return None
    bare = uuid.lower()
    if bare.startswith("gpu-"):
        bare = bare[4:]
    return bare.replace("-", "")


def _torch_device_ids(cuda_index: int) -> tuple[tuple[int, int, int] | None, str | None]:
    """(PCI domain/bus/device, bare UUID) of a torch CUDA device, each None when torch cannot say."""
    try:
        import torch

        if not torch.cuda.is_available() or torch.version.hip:
            return None, None
        props = torch.cuda.get_device_properties(cuda_index)
    except Exception:
        return None, None
    pci = None
    if all(hasattr(props, attr) for attr in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
        pci = (props.pci_domain_id, props.pci_bus_id, props.pci_device_id)
    uuid = getattr(props, "uuid", None)
    return pci, _normalise_uuid(None if uuid is None else str(uuid))


def device_uuid(cuda_index: int | None) -> str | None:
    """'GPU-<uuid>' (as nvidia-smi -L and NVML print it) of torch's `cuda:<cuda_index>`; None off CUDA or unknown."""
    if cuda_index is None:
        return None
    try:
        import torch

        uuid = getattr(torch.cuda.get_device_properties(cuda_index), "uuid", None)
    except Exception:
        return None
    return None if uuid is None else f"GPU-{uuid}"


def _from_visible_devices(cuda_index: int, count: int) -> int | None:
    """Apply CUDA_VISIBLE_DEVICES (ordinals or GPU-UUID prefixes) when torch could not identify the device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return cuda_index if cuda_index < count else None
    entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
    if cuda_index >= len(entries):
        return None
    entry = entries[cuda_index]
    if entry.isdigit():
        return int(entry) if int(entry) < count else None
    matches = [i for i in range(count) if (_text(_on(_handle(i), "nvmlDeviceGetUUID")) or "").startswith(entry)]
    return matches[0] if len(matches) == 1 else None  # MIG-... entries and ambiguous prefixes stay unmapped


@functools.lru_cache(maxsize=None)
def nvml_index_for_cuda_device(cuda_index: int) -> int | None:
    """NVML index of torch's `cuda:<cuda_index>`, or None when it cannot be established.

    CUDA numbers devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID and honours CUDA_VISIBLE_DEVICES;
    NVML numbers them in PCI order and ignores both. So match by PCI bus id, then by UUID, and only then fall back
    to CUDA_VISIBLE_DEVICES or the bare index.
    """
    count = device_count()
    if count == 0:
        return None
    pci, uuid = _torch_device_ids(cuda_index)
    handles = [_handle(i) for i in range(count)]
    if pci is not None:
        for i, handle in enumerate(handles):
            if _parse_pci(_pci_bus_id(handle)) == pci:
                return i
    if uuid is not None:
        for i, handle in enumerate(handles):
            if _normalise_uuid(_text(_on(handle, "nvmlDeviceGetUUID"))) == uuid:
                return i
    return _from_visible_devices(cuda_index, count)


def _cuda_driver_version() -> str | None:
    version = _query("nvmlSystemGetCudaDriverVersion")  # e.g. 12040 for CUDA 12.4
    return None if version is None else f"{version // 1000}.{version % 1000 // 10}"


def gpu_inventory() -> list[dict[str, Any]]:
    """Static and slowly changing facts about every GPU NVML sees; [] without NVML. Units are in the key names."""
    driver = _text(_query("nvmlSystemGetDriverVersion"))
    cuda_driver = _cuda_driver_version()
    inventory = []
    for index in range(device_count()):
        handle = _handle(index)
        memory = _on(handle, "nvmlDeviceGetMemoryInfo")
        reasons = _throttle_reasons(handle)
        power_limit = _on(handle, "nvmlDeviceGetEnforcedPowerLimit")
        if power_limit is None:
            power_limit = _on(handle, "nvmlDeviceGetPowerManagementLimit")
        inventory.append(
            {
                "nvml_index": index,
                "name": _text(_on(handle, "nvmlDeviceGetName")),
                "uuid": _text(_on(handle, "nvmlDeviceGetUUID")),
                "pci_bus_id": _pci_bus_id(handle),
                "memory_total_mib": None if memory is None else memory.total / 2**20,
                "driver_version": driver,
                "cuda_driver_version": cuda_driver,
                "sm_clock_mhz": _on(handle, "nvmlDeviceGetClockInfo", _CLOCK_SM),
                "sm_clock_max_mhz": _on(handle, "nvmlDeviceGetMaxClockInfo", _CLOCK_SM),
                "mem_clock_mhz": _on(handle, "nvmlDeviceGetClockInfo", _CLOCK_MEM),
                "mem_clock_max_mhz": _on(handle, "nvmlDeviceGetMaxClockInfo", _CLOCK_MEM),
                "power_w": _scaled(_on(handle, "nvmlDeviceGetPowerUsage"), 1000),
                "power_limit_w": _scaled(power_limit, 1000),
                "temp_c": _on(handle, "nvmlDeviceGetTemperature", _TEMPERATURE_GPU),
                "throttle_reasons": reasons,
                "throttled": None if reasons is None else is_throttled(reasons),
                "persistence_mode": _enabled(_on(handle, "nvmlDeviceGetPersistenceMode")),
                "ecc_enabled": _enabled(_on(handle, "nvmlDeviceGetEccMode")),
                "mig_enabled": _enabled(_on(handle, "nvmlDeviceGetMigMode")),
            }
        )
    return inventory


def gpu_processes(nvml_index: int) -> list[dict[str, Any]] | None:
    """Compute and graphics processes on a GPU ({pid, used_mib}), or None when NVML cannot list them."""
    handle = _handle(nvml_index)
    calls = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses")
    lists = [_on(handle, call) for call in calls]
    if all(found is None for found in lists):
        return None
    by_pid: dict[int, dict[str, Any]] = {}
    for found in lists:
        for process in found or []:
            pid = getattr(process, "pid", None)
            used = getattr(process, "usedGpuMemory", None)
            by_pid[pid] = {"pid": pid, "used_mib": None if used is None else used / 2**20}
    return list(by_pid.values())


def snapshot(index: int) -> dict[str, Any]:
    """Clock, temperature, power and throttle state of torch's `cuda:<index>` right now; None where unsupported.

    A handful of NVML reads (well under a millisecond): taken at case start and end, never inside a timed region.
    """
    handle = _handle(nvml_index_for_cuda_device(index))
    reasons = _throttle_reasons(handle)
    return {
        "sm_clock_mhz": _on(handle, "nvmlDeviceGetClockInfo", _CLOCK_SM),
        "temp_c": _on(handle, "nvmlDeviceGetTemperature", _TEMPERATURE_GPU),
        "power_w": _scaled(_on(handle, "nvmlDeviceGetPowerUsage"), 1000),
        "throttle_reasons": reasons,
        "throttled": None if reasons is None else is_throttled(reasons),
    }


# nvmlPerfPolicyType_t values whose violation counters are read around a timed window.
VIOLATION_POLICIES = {"power": 0, "thermal": 1, "board_limit": 3, "reliability": 5}


def violation_ns(index: int) -> dict[str, int]:
    """NVML's cumulative violation counters (ns a clock limit was active since driver load) of torch's
    `cuda:<index>`, per policy; a policy the board cannot count is absent ({} without NVML)."""
    handle = _handle(nvml_index_for_cuda_device(index))
    counters = {}
    for name, policy in VIOLATION_POLICIES.items():
        found = _on(handle, "nvmlDeviceGetViolationStatus", policy)
        value = getattr(found, "violationTime", None)
        if isinstance(value, int):
            counters[name] = value
    return counters


class EnergyMeter:
    """GPU energy over a window, from NVML's cumulative counter (mJ since driver load; Volta and newer).

    The counter is refreshed only every ~20-100 ms, so a window must last at least `MIN_WINDOW_S` for the reading
    to mean anything; the caller loops its workload long enough. Polled power is deliberately not integrated:
    power sampling on A100/H100 covers only part of the runtime.
    """

    MIN_WINDOW_S = 1.0

    def __init__(self, index: int):
        """`index` is torch's CUDA device index."""
        self._handle = _handle(nvml_index_for_cuda_device(index))
        self._start_mj: int | None = None
        self.supported = self._read() is not None

    def _read(self) -> int | None:
        return _on(self._handle, "nvmlDeviceGetTotalEnergyConsumption")

    def start(self) -> None:
        self._start_mj = self._read() if self.supported else None

    def stop(self) -> float | None:
        """Joules since `start()`; None when unsupported, not started, or the counter misbehaved."""
        start, self._start_mj = self._start_mj, None
        end = self._read() if start is not None else None
        if start is None or end is None or end < start:  # a driver reload resets the counter
            return None
        return (end - start) / 1000.0
