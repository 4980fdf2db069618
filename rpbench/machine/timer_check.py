"""Do rpbench's timers measure what an independent timer measures? One fixed module (a two-layer MLP) timed with
rpbench's eager and CUDA-graph timers and with timers rpbench did not write: triton.testing.do_bench (CUDA events,
L2 cleared before each call, as rpbench's eager timer) and do_bench_cudagraph (replays of a graph of back-to-back
calls) on CUDA where triton imports, torch.utils.benchmark's Timer elsewhere (the CPU: one call per timeit, one thread).

`rpbench doctor` reports the ratios (rpbench / independent) and fails beyond TOLERANCE; the result is cached per
exact device beside the ceilings, and every sweep records it in env.json (measured at the sweep's start when
nothing is cached for its device).
"""
from __future__ import annotations

import contextlib
import json
import statistics
import time
from typing import Any, Callable, Iterator

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
RUN_MS = 300.0  # sampling per timer, split into ROUNDS interleaved windows
ROUNDS = 3


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


def _interleaved(ours: Callable[[], float], theirs: Callable[[], float]) -> tuple[float, float, float]:
    """ROUNDS of ours, theirs, ours, theirs, ... (ABAB): the two medians, and the median of the per-round ratios
    (each pair side by side in time, so drift and other processes' bursts hit both timers of a pair alike)."""
    pairs = [(ours(), theirs()) for _ in range(ROUNDS)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(a / b for a, b in pairs))


def measure(device: str) -> dict[str, Any]:
    """Medians (ms) of the fixed module by each timer, taken interleaved (ABAB), the ratios rpbench / independent
    (median of the per-round ratios), and pass or fail."""
    step, described = _fixed_module(device)
    noop = lambda: None  # noqa: E731
    window_ms = RUN_MS / ROUNDS

    def ours(timer: Callable[..., list[float]], flush: bool) -> Callable[[], float]:
        settings = Timing(warmup_ms=10, repeat_ms=window_ms, flush_l2=flush)
        return lambda: statistics.median(timer(step, noop, device, settings))

    found: dict[str, Any] = {"device": device, "module": described, "tolerance": TOLERANCE[device], "rounds": ROUNDS,
                             "threads": 1 if device == "cpu" else None}
    triton = triton_timers() if device == "cuda" else None
    if triton is not None:
        do_bench, do_bench_cudagraph = triton
        found["independent"] = "triton.testing.do_bench / do_bench_cudagraph"
        found["eager_ms"], found["independent_eager_ms"], found["eager_ratio"] = _interleaved(
            ours(time_step, True), lambda: float(do_bench(step, warmup=10, rep=int(window_ms), return_mode="median")))
        try:
            found["graph_ms"], found["independent_graph_ms"], found["graph_ratio"] = _interleaved(
                ours(time_graph, False), lambda: float(do_bench_cudagraph(step, rep=int(window_ms),
                                                                          return_mode="median")))
        except GraphCaptureFailed as err:
            found["graph_problem"] = str(err)
    else:
        found["independent"] = "torch.utils.benchmark.Timer (one call per timeit)"
        with _one_thread(device):
            found["eager_ms"], found["independent_eager_ms"], found["eager_ratio"] = _interleaved(
                ours(time_step, device == "cuda"), lambda: _benchmark_timer_ms(step, window_ms))
    found.setdefault("graph_ratio", None)
    apart = [abs(ratio - 1) for ratio in (found["eager_ratio"], found["graph_ratio"]) if ratio is not None]
    found["status"] = "pass" if apart and max(apart) <= TOLERANCE[device] else "fail"
    found["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if device == "cuda":  # a sweep's parent keeps no cached blocks its workers' cases could use
        import torch

        del step
        torch.cuda.empty_cache()
    return found


def _benchmark_timer_ms(step: Callable[[], object], window_ms: float) -> float:
    """torch.utils.benchmark's Timer, one call per measurement (timeit's loop, gc off), for `window_ms`: the median.
    One call each, as rpbench samples: blocks of back-to-back calls (blocked_autorange) average in every preemption
    on a shared machine, where single calls mostly dodge it (seen here: 1.23 vs 0.80 ms a call, 0.80 vs 0.80 ms
    once quiet)."""
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="step()", globals={"step": step}, num_threads=1)
    timer.timeit(number=3)  # its own warm-up, as rpbench's timer has one
    times, began = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - began) * 1e3 < window_ms:
        times.append(timer.timeit(number=1).median * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """On the CPU both timers time one thread: what is checked is the timer, and a thread pool on a busy machine
    stalls whole parallel regions (seen here: the same call at 0.5 ms and at 60 ms)."""
    import torch

    before = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
