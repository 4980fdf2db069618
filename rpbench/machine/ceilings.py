"""The machine's achievable matmul TFLOP/s per dtype and copy GB/s: measured by `rpbench doctor` with the sweep's
own timer, cached per exact device, and put into env.json by later sweeps so reports can show "% of measured
ceiling".

The cache key is the exact device (`device_key`): a GPU by name and UUID, a CPU by model, logical cores and the
threads torch uses, since a ceiling measured with 8 threads says nothing about a 2-thread sweep. Each entry keeps
when and under what load it was measured, and a measurement taken while other processes disturbed it never
replaces a higher figure (`merge`).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

from ..measure.timing import time_step
from ..core.case import Timing
from ..core.measurement import summarize
from . import environment
from .interference import LoadMonitor


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
    threads = 1 if cuda else torch.get_num_threads()
    with LoadMonitor(threads, 0 if cuda else None) as monitor:
        measured = _rates(device)
    load = monitor.load
    return {**measured, "device_key": device_key(device),
            "load": {"others_busy_cores": load.others_busy_cores, "cores": load.cores, "gpu_others": load.gpu_others,
                     "disturbed": load.reasons()}}


def _rates(device: str) -> dict[str, Any]:
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
        "device_name": torch.cuda.get_device_name(0) if cuda else environment.cpu_model(),
        "matmul_size": size,
        "matmul_tflops": tflops,
        "copy_bytes": copy_bytes,
        "copy_gbps": 2 * copy_bytes / copy_s / 1e9,
        "tf32_matmul": environment.tf32_settings(torch)["matmul_allow_tf32"] if cuda else None,
        "threads": None if cuda else torch.get_num_threads(),
    }


def device_key(device: str) -> str:
    """The exact device a ceiling belongs to: 'NAME | GPU-uuid' on CUDA, 'MODEL | N cores | T threads' on CPU."""
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        uuid = getattr(props, "uuid", None)
        return f"{props.name} | GPU-{uuid}" if uuid is not None else props.name
    return f"{environment.cpu_model()} | {os.cpu_count() or 1} cores | {torch.get_num_threads()} threads"


def cache_path(key: str) -> Path:
    """Where doctor keeps the ceilings of one exact device (`device_key`), for the sweeps that follow."""
    root = Path(os.environ.get("RPBENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "rpbench")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-").lower()[:150] or "device"
    return root / "ceilings" / f"{slug}.json"


def _higher(old: float | None, new: float | None) -> bool:
    return isinstance(old, (int, float)) and (new is None or old > new)


def merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps after measuring `new`: new as is when it was measured on a quiet machine (or nothing
    was cached); measured under load, every figure that came out lower than the cached one keeps the cached value,
    and `kept` says which, from when."""
    if old is None or not (new.get("load") or {}).get("disturbed"):
        return new
    merged = {**new, "matmul_tflops": dict(new.get("matmul_tflops") or {})}
    kept = []
    for dtype, rate in (old.get("matmul_tflops") or {}).items():
        if _higher(rate, merged["matmul_tflops"].get(dtype)):
            merged["matmul_tflops"][dtype] = rate
            kept.append(f"matmul {dtype}")
    if _higher(old.get("copy_gbps"), new.get("copy_gbps")):
        merged["copy_gbps"] = old["copy_gbps"]
        kept.append("copy")
    if kept:
        merged["kept"] = {"figures": kept, "measured_at": old.get("measured_at"),
                          "why": "measured now under load, lower than the cached figure"}
    return merged


def save(ceilings: dict[str, Any]) -> Path | None:
    """Cache the ceilings under their exact device (see `merge`); None when the cache is not writable (never
    fatal) or there is nothing to cache."""
    key = ceilings.get("device_key")
    if not key:
        return None
    path = cache_path(str(key))
    measured = dict(ceilings, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merge(cached(str(key)), measured), indent=2) + "\n", encoding="utf-8")
    except OSError:
        return None
    return path


def cached(key: str) -> dict[str, Any] | None:
    """The ceilings doctor last kept for this exact device (`device_key`), or None."""
    try:
        data = json.loads(cache_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("device_key") == key else None
