"""The machine's achievable matmul TFLOP/s per dtype and copy GB/s: measured by `rpbench doctor` with the sweep's
own timer, cached per device, and put into env.json by later sweeps so reports can show "% of measured ceiling"."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from ..bench.timing import time_step
from ..core.case import Timing
from ..core.measurement import summarize
from .environment import cpu_model


def _median_seconds(fn: Callable[[], Any], device: str, budget_s: float) -> float:
    """Median seconds per call over about `budget_s`, with the sweep's own timer (CUDA events or perf_counter)."""
    budget = Timing(warmup_ms=0.0, repeat_ms=budget_s * 1e3, min_samples=1, flush_l2=False)
    return summarize(time_step(fn, lambda: None, device, budget)).median / 1e3


def measure(device: str) -> dict[str, Any]:
    """Achievable dense matmul TFLOP/s per dtype and device-local copy GB/s (bytes read + written) here.

    On CPU the sizes are modest so the whole measurement stays well under two seconds.
    """
    import torch

    cuda = device == "cuda"
    size = 8192 if cuda else 512
    dtypes = (torch.float16, torch.bfloat16, torch.float32) if cuda else (torch.float32, torch.bfloat16)
    budget_s = 0.3 if cuda else 0.25
    tflops: dict[str, float | None] = {}
    for dtype in dtypes:
        try:
            a = torch.randn(size, size, device=device, dtype=dtype)
            b, out = torch.randn_like(a), torch.empty_like(a)
            seconds = _median_seconds(lambda: torch.mm(a, b, out=out), device, budget_s)
            tflops[str(dtype).removeprefix("torch.")] = 2 * size**3 / seconds / 1e12
        except RuntimeError:  # a dtype this device cannot multiply
            tflops[str(dtype).removeprefix("torch.")] = None
    copy_bytes = 2**28 if cuda else 2**25
    src = torch.empty(copy_bytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    copy_s = _median_seconds(lambda: dst.copy_(src), device, budget_s)
    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if cuda else cpu_model(),
        "matmul_size": size,
        "matmul_tflops": tflops,
        "copy_bytes": copy_bytes,
        "copy_gbps": 2 * copy_bytes / copy_s / 1e9,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        "threads": None if cuda else torch.get_num_threads(),
    }


def cache_path(device_name: str) -> Path:
    """Where doctor keeps the last measured ceilings of a device, for the sweeps that follow."""
    root = Path(os.environ.get("RPBENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "rpbench")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower() or "device"
    return root / "ceilings" / f"{slug}.json"


def save(ceilings: dict[str, Any]) -> Path | None:
    """Cache the ceilings under the device's name; None when the cache is not writable (never fatal)."""
    path = cache_path(str(ceilings.get("device_name") or "device"))
    measured = dict(ceilings, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    except OSError:
        return None
    return path


def cached(device_name: str) -> dict[str, Any] | None:
    """The ceilings doctor last measured on a device of this name, or None."""
    try:
        data = json.loads(cache_path(device_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("device_name") == device_name else None
