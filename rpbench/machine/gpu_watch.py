"""The GPU during a timed window: clocks, temperature, power and clock-limit reasons read on a thread every
INTERVAL_S, plus NVML's violation counters before and after (`rpbench.core.gpu.ClockWindow`).

The thread sleeps between readings and each NVML call releases the GIL (ctypes), so the timed loop loses a few
microseconds per reading; the events or perf_counter around each timed call are not touched. Without NVML the watch
reads nothing and gives None.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ..core.gpu import ClockWindow, summarize_readings
from . import telemetry

INTERVAL_S = 0.1


class GpuWatch:
    """`with GpuWatch(cuda_index) as watch: <timed window>`; then `watch.window` (None when nothing was read:
    no GPU index given, or NVML unusable)."""

    def __init__(self, cuda_index: int | None, interval_s: float = INTERVAL_S):
        self.cuda_index = cuda_index
        self.interval_s = interval_s
        self.window: ClockWindow | None = None
        self._readings: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> None:
        self._readings.append(telemetry.snapshot(self.cuda_index))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def __enter__(self) -> "GpuWatch":
        if self.cuda_index is None or not telemetry.nvml_available():
            return self
        self._counters = telemetry.violation_ns(self.cuda_index)
        self._read()
        self._began = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="rpbench-gpu-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        window_s = time.perf_counter() - self._began
        self._read()
        after = telemetry.violation_ns(self.cuda_index)
        grown = {name: (after[name] - before) / 1e6 for name, before in self._counters.items()
                 if name in after and after[name] >= before}
        readings = [r for r in self._readings if any(v is not None for v in r.values())]
        if readings or grown:
            self.window = summarize_readings(readings, window_s, grown)
