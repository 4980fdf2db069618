"""Do rpbench's timers measure what an independent timer measures? One fixed module (a two-layer MLP) timed with
rpbench's eager and CUDA-graph timers and with timers rpbench did not write: triton.testing.do_bench (CUDA events,
L2 cleared before each call, as rpbench's eager timer) and do_bench_cudagraph (replays of a graph of back-to-back
calls) on CUDA where triton imports, torch.utils.benchmark's Timer elsewhere (the CPU: blocked_autorange).

`rpbench doctor` reports the ratios (rpbench / independent) and fails beyond TOLERANCE; the result is cached per
exact device beside the ceilings, and every sweep records it in env.json (measured at the sweep's start when
nothing is cached for its device).
"""
from __future__ import annotations

import json
import statistics
import time
from typing import Any, Callable

from ..core.case import Timing
from ..core.diagnostics import Check
from ..measure.timing import GraphCaptureFailed, time_graph, time_step
from ..measure.torch_compat import triton_timers
from . import ceilings

# How far rpbench's median may be from the independent one (|ratio - 1|) before the doctor fails: CUDA events on
# one fixed ~0.5 ms module agree far better than this; perf_counter on a CPU shared with other work moves more.
TOLERANCE = {"cuda": 0.10, "cpu": 0.25}
# The fixed module: (tokens, width, hidden, dtype) per device.
MODULE = {"cuda": (16384, 1024, 4096, "bfloat16"), "cpu": (128, 256, 512, "float32")}
RUN_MS = 200.0  # sampling per timer


def _fixed_module(device: str) -> tuple[Callable[[], object], str]:
    import torch
    from torch import nn

    tokens, width, hidden, dtype = MODULE[device]
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
    mlp = mlp.to(device=device, dtype=getattr(torch, dtype)).eval()
    x = torch.randn(tokens, width, generator=generator).to(device=device, dtype=getattr(torch, dtype))

    def step() -> object:
        with torch.inference_mode():
            return mlp(x)

    return step, f"MLP {tokens}x{width}->{hidden}->{width} {dtype}"


def measure(device: str) -> dict[str, Any]:
    """Medians (ms) of the fixed module by each timer, the ratios rpbench / independent, and pass or fail."""
    step, described = _fixed_module(device)
    noop = lambda: None  # noqa: E731
    eager = statistics.median(time_step(step, noop, device, Timing(warmup_ms=50, repeat_ms=RUN_MS, flush_l2=True)))
    found: dict[str, Any] = {"device": device, "module": described, "eager_ms": eager, "tolerance": TOLERANCE[device]}
    triton = triton_timers() if device == "cuda" else None
    if triton is not None:
        do_bench, do_bench_cudagraph = triton
        found["independent"] = "triton.testing.do_bench / do_bench_cudagraph"
        found["independent_eager_ms"] = float(do_bench(step, warmup=25, rep=int(RUN_MS), return_mode="median"))
        try:
            graph = time_graph(step, noop, device, Timing(warmup_ms=50, repeat_ms=RUN_MS, flush_l2=False))
            found["graph_ms"] = statistics.median(graph)
            found["independent_graph_ms"] = float(do_bench_cudagraph(step, rep=int(RUN_MS), return_mode="median"))
        except GraphCaptureFailed as err:
            found["graph_problem"] = str(err)
    else:
        found["independent"] = "torch.utils.benchmark.Timer (blocked_autorange)"
        found["independent_eager_ms"] = _benchmark_timer_ms(step)
    for name in ("eager", "graph"):
        ours, theirs = found.get(f"{name}_ms"), found.get(f"independent_{name}_ms")
        found[f"{name}_ratio"] = ours / theirs if ours and theirs else None
    apart = [abs(ratio - 1) for ratio in (found["eager_ratio"], found["graph_ratio"]) if ratio is not None]
    found["status"] = "pass" if apart and max(apart) <= TOLERANCE[device] else "fail"
    found["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if device == "cuda":  # a sweep's parent keeps no cached blocks its workers' cases could use
        import torch

        del step
        torch.cuda.empty_cache()
    return found


def _benchmark_timer_ms(step: Callable[[], object]) -> float:
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=_threads())
    return timer.blocked_autorange(min_run_time=RUN_MS / 1e3).median * 1e3


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def check(device: str) -> Check:
    """The doctor's check: measured now, cached for the sweeps that follow on this device."""
    found = measure(device)
    save(device, found)
    detail = describe(found)
    advice = "" if found["status"] == "pass" else (
        f"rpbench's timers and {found['independent']} disagree by more than {found['tolerance']:.0%}: the machine "
        "is disturbed, or a timer is wrong; do not trust timings taken here until they agree")
    return Check("timer cross-check", found["status"], detail, advice, found)


def describe(found: dict[str, Any]) -> str:
    parts = [f"eager {found['eager_ms']:.4g} ms vs {found['independent_eager_ms']:.4g} ms (x{found['eager_ratio']:.3f})"]
    if found.get("graph_ratio") is not None:
        parts.append(f"graph {found['graph_ms']:.4g} ms vs {found['independent_graph_ms']:.4g} ms "
                     f"(x{found['graph_ratio']:.3f})")
    if found.get("graph_problem"):
        parts.append(f"graph timer: {found['graph_problem']}")
    return f"{found['module']}: " + "; ".join(parts) + f" against {found['independent']}"


def _path(device: str):
    key = ceilings.device_key(device)
    return ceilings.cache_path(key).with_name(ceilings.cache_path(key).stem + ".timers.json"), key


def save(device: str, found: dict[str, Any]) -> None:
    """Cache the cross-check of this exact device (never fatal: an unwritable cache keeps nothing)."""
    path, key = _path(device)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**found, "device_key": key}, indent=2) + "\n", encoding="utf-8")
    except OSError:
        pass


def cached(device: str) -> dict[str, Any] | None:
    path, key = _path(device)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("device_key") == key else None


def for_run(devices: set[str]) -> dict[str, Any] | None:
    """What a sweep records in env.json: the cached cross-check of its one device, else measured now (and cached);
    None for a sweep over several devices."""
    if len(devices) != 1:
        return None
    device = next(iter(devices))
    found = cached(device)
    if found is None:
        found = measure(device)
        save(device, found)
    return found
