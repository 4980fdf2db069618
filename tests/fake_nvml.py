"""A pynvml stand-in for tests: two H100s, any call replaceable or made unsupported."""
from __future__ import annotations

import types
from types import SimpleNamespace


class FakeNVMLError(Exception):
    """Stands in for pynvml.NVMLError (the real one needs the library to format itself)."""


def _raises(message: str):
    def call(*_args):
        raise FakeNVMLError(message)

    return call


GPUS = [
    {"name": b"NVIDIA H100 80GB HBM3", "uuid": b"GPU-aaaa1111-0000-0000-0000-000000000000",
     "bus": b"00000000:17:00.0", "reasons": 0x001},
    {"name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-bbbb2222-0000-0000-0000-000000000000",
     "bus": "00000000:2A:00.0", "reasons": 0x004 | 0x040},
]


def fake_pynvml(unsupported: tuple[str, ...] = (), energy_mj: tuple[int, ...] = (), **overrides) -> types.ModuleType:
    """A pynvml stand-in with two GPUs; names in `unsupported` raise like NVML_ERROR_NOT_SUPPORTED."""
    energy = iter(energy_mj)
    handle = {f"h{i}": gpu for i, gpu in enumerate(GPUS)}
    calls = {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: len(GPUS),
        "nvmlDeviceGetHandleByIndex": lambda i: f"h{i}",
        "nvmlSystemGetDriverVersion": lambda: "550.54.15",
        "nvmlSystemGetCudaDriverVersion": lambda: 12040,
        "nvmlDeviceGetName": lambda h: handle[h]["name"],
        "nvmlDeviceGetUUID": lambda h: handle[h]["uuid"],
        "nvmlDeviceGetPciInfo": lambda h: SimpleNamespace(busId=handle[h]["bus"]),
        "nvmlDeviceGetMemoryInfo": lambda h: SimpleNamespace(total=80 * 2**30, free=0, used=0),
        "nvmlDeviceGetClockInfo": lambda h, kind: {1: 1755, 2: 2619}[kind],
        "nvmlDeviceGetMaxClockInfo": lambda h, kind: {1: 1980, 2: 2619}[kind],
        "nvmlDeviceGetPowerUsage": lambda h: 350_500,
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: 700_000,
        "nvmlDeviceGetPowerManagementLimit": lambda h: 650_000,
        "nvmlDeviceGetTemperature": lambda h, sensor: 63,
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: handle[h]["reasons"],
        "nvmlDeviceGetCurrentClocksThrottleReasons": lambda h: 0x008,
        "nvmlDeviceGetPersistenceMode": lambda h: 1,
        "nvmlDeviceGetEccMode": lambda h: [1, 1],
        "nvmlDeviceGetMigMode": lambda h: [0, 0],
        "nvmlDeviceGetComputeRunningProcesses": lambda h: [SimpleNamespace(pid=4242, usedGpuMemory=512 * 2**20)],
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: [],
        "nvmlDeviceGetTotalEnergyConsumption": lambda h: next(energy),
    }
    calls.update(overrides)
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    for name, call in calls.items():
        if call is not None:  # None: the binding lacks the function (older nvidia-ml-py)
            setattr(module, name, _raises("Not Supported") if name in unsupported else call)
    return module
