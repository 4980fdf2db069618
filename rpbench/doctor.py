"""`rpbench doctor`: is this machine fit to produce numbers worth trusting?

Each check returns pass / warn / fail with one line of advice and the values it measured. The doctor only looks:
it never changes clocks, governors, persistence mode or any torch setting; where a fix needs one, the advice says
what an administrator could do. `measure_ceilings` gives the machine's achievable matmul TFLOP/s and copy GB/s,
which are cached per device so later sweeps put them into env.json next to their own numbers.
"""
from __future__ import annotations

import json
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from . import environment, telemetry
from .cases import DEVICES, Measure
from .measure import quick_median_ms, summarize, time_step

# Slow-downs that come from heat or hardware protection rather than the normal power cap of a busy GPU.
HARMFUL_THROTTLES = frozenset(
    {"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "board_limit"}
)
HOT_C = 85
TIMER_AGREEMENT_PASS_PCT = 5.0
TIMER_AGREEMENT_FAIL_PCT = 20.0


@dataclass
class Check:
    name: str
    status: str  # pass | warn | fail
    detail: str
    advice: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    device: str | None
    device_name: str | None
    checks: list[Check]
    ceilings: dict[str, Any]

    @property
    def failed(self) -> bool:
        return any(check.status == "fail" for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "device_name": self.device_name,
            "ok": not self.failed,
            "checks": [asdict(check) for check in self.checks],
            "ceilings": self.ceilings,
        }


# ---- CPU ----


def _proc_stat_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs since boot from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat", encoding="utf-8") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait; guest time is already inside user
    return sum(fields) - idle, sum(fields)


def _others_busy_cores(interval_s: float) -> float | None:
    """Cores kept busy by *other* processes over a short sleep (this process's own CPU time is subtracted)."""
    before, own_before = _proc_stat_jiffies(), time.process_time()
    time.sleep(interval_s)
    after, own_after = _proc_stat_jiffies(), time.process_time()
    if before is None or after is None or after[1] == before[1]:
        return None
    busy, total = after[0] - before[0], after[1] - before[1]
    own = (own_after - own_before) * os.sysconf("SC_CLK_TCK")
    cores = os.cpu_count() or 1
    return max(0.0, busy - own) / total * cores


def check_cpu_load() -> Check:
    cores = os.cpu_count() or 1
    busy = _others_busy_cores(0.3)
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    values = {"others_busy_cores": busy, "loadavg_1m": load1, "logical_cores": cores}
    if busy is None and load1 is None:
        return Check("cpu load", "warn", "neither /proc/stat nor a load average is readable", "", values)
    if busy is None:
        busy_text, busy = f"load average {load1:.2f} on {cores} cores", load1
    else:
        busy_text = f"other processes keep {busy:.2f} of {cores} cores busy"
    if busy > max(0.5, 0.1 * cores):
        return Check("cpu load", "warn", busy_text,
                     "other work competes for the CPU (launch overhead, CPU timings): wait for it or move", values)
    return Check("cpu load", "pass", busy_text, "", values)


def check_cpu_governor() -> Check:
    governor = environment.cpu_governor()
    values = {"governor": governor}
    if governor is None:
        return Check("cpu governor", "pass", "not exposed here (usual in VMs and containers); cannot check",
                     "", values)
    if governor == "performance":
        return Check("cpu governor", "pass", "scaling governor 'performance'", "", values)
    return Check("cpu governor", "warn", f"scaling governor '{governor}': clocks ramp with load",
                 "an administrator can set 'performance' (cpupower frequency-set -g performance); "
                 "rpbench never changes it", values)


def check_threads() -> Check:
    import torch

    threads, cores, logical = torch.get_num_threads(), environment.usable_cores(), os.cpu_count()
    values = {"torch_threads": threads, "usable_cores": cores, "logical_cores": logical}
    detail = f"torch uses {threads} intra-op threads; {cores} usable of {logical} logical cores"
    if threads > cores:
        return Check("cpu threads", "warn", detail,
                     "more threads than usable cores oversubscribes the CPU: lower OMP_NUM_THREADS", values)
    return Check("cpu threads", "pass", detail, "", values)


def _perf_counter_resolution(samples: int = 2000) -> float:
    """Smallest step perf_counter actually takes, in seconds (the declared resolution can be optimistic)."""
    smallest = float("inf")
    for _ in range(samples):
        start = now = time.perf_counter()
        while now == start:
            now = time.perf_counter()
        smallest = min(smallest, now - start)
    return smallest


def _cpu_timer_check() -> Check:
    resolution = _perf_counter_resolution()
    declared = time.get_clock_info("perf_counter").resolution
    values = {"perf_counter_resolution_s": resolution, "declared_resolution_s": declared}
    detail = f"time.perf_counter steps every {resolution * 1e9:.0f} ns (declared {declared * 1e9:.0f} ns)"
    if resolution <= 1e-6:
        return Check("timer", "pass", detail, "", values)
    if resolution <= 1e-3:
        return Check("timer", "warn", detail, "coarse clock: sub-millisecond CPU cases will be quantised", values)
    return Check("timer", "fail", detail, "the clock is too coarse for CPU latency measurements", values)


# ---- CUDA ----


def _cuda_timer_check() -> Check:
    """CUDA events around a matmul loop must agree with synchronised host time, or event timing is suspect."""
    import torch

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    b, out = torch.randn_like(a), torch.empty_like(a)
    per_call = quick_median_ms(lambda: torch.mm(a, b, out=out), lambda: None, "cuda") / 1e3
    iters = max(10, min(5000, int(0.2 / per_call)))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    host_start = time.perf_counter()
    start.record()
    for _ in range(iters):
        torch.mm(a, b, out=out)
    end.record()
    end.synchronize()
    host_ms = (time.perf_counter() - host_start) * 1e3
    event_ms = start.elapsed_time(end)
    gap_pct = abs(host_ms - event_ms) / event_ms * 100
    values = {"event_ms": event_ms, "host_ms": host_ms, "iterations": iters, "disagreement_pct": gap_pct}
    detail = f"{iters} matmuls: CUDA events {event_ms:.1f} ms vs host {host_ms:.1f} ms ({gap_pct:.1f}% apart)"
    if gap_pct <= TIMER_AGREEMENT_PASS_PCT:
        return Check("timer", "pass", detail, "", values)
    status = "warn" if gap_pct <= TIMER_AGREEMENT_FAIL_PCT else "fail"
    return Check("timer", status, detail,
                 "event and host time disagree: another process or a launch bottleneck is interfering", values)


def check_timer(device: str) -> Check:
    return _cuda_timer_check() if device == "cuda" else _cpu_timer_check()


def _snapshot_under_load(cuda_index: int, seconds: float) -> dict[str, Any]:
    """NVML snapshot taken while matmuls run, after `seconds` of load so clocks and heat have settled.

    Work is queued in ~50 ms batches and the host waits for the previous batch before queueing the next, so the
    GPU never idles yet at most two batches are pending (a full launch queue could take seconds to drain).
    """
    import torch

    a = torch.randn(4096, 4096, device=f"cuda:{cuda_index}", dtype=torch.float16)
    b, out = torch.randn_like(a), torch.empty_like(a)
    per_call = quick_median_ms(lambda: torch.mm(a, b, out=out), lambda: None, "cuda") / 1e3
    batch = max(1, int(0.05 / per_call))
    previous = None
    deadline = time.perf_counter() + seconds
    while True:
        for _ in range(batch):
            torch.mm(a, b, out=out)
        queued = torch.cuda.Event()
        queued.record()
        if previous is not None:
            previous.synchronize()
        previous = queued
        if time.perf_counter() >= deadline:
            break
    busy = telemetry.snapshot(cuda_index)  # the last batch is still running
    previous.synchronize()
    return busy


def check_gpu_state(cuda_index: int = 0) -> list[Check]:
    """Processes, persistence, and clocks/throttling/temperature read while the GPU is busy (NVML)."""
    if not telemetry.nvml_available():
        return [Check("gpu telemetry", "warn", f"NVML unavailable: {telemetry.nvml_unavailable_reason()}",
                      "clocks, throttling and other processes cannot be verified; energy will not be recorded")]
    nvml_index = telemetry.nvml_index_for_cuda_device(cuda_index)
    if nvml_index is None:
        return [Check("gpu telemetry", "warn", f"cannot match cuda:{cuda_index} to an NVML device",
                      "check CUDA_VISIBLE_DEVICES (MIG slices are not mapped); GPU state is not verified")]
    checks = []
    processes = telemetry.gpu_processes(nvml_index)
    others = None if processes is None else [p for p in processes if p["pid"] != os.getpid()]
    if others is None:
        checks.append(Check("gpu processes", "warn", "NVML cannot list processes here", ""))
    elif others:
        listed = ", ".join(f"pid {p['pid']}" for p in others)
        checks.append(Check("gpu processes", "warn", f"{len(others)} other process(es) on the GPU: {listed}",
                            "shared GPUs give noisy, slow numbers: wait for them or pick an idle GPU (in a "
                            "container NVML shows host pids, so one of them may be rpbench itself)",
                            {"other_pids": [p["pid"] for p in others]}))
    else:
        checks.append(Check("gpu processes", "pass", "no other process on the GPU", ""))

    info = telemetry.gpu_inventory()[nvml_index]
    if info["persistence_mode"] is False:
        checks.append(Check("persistence mode", "warn", "persistence mode is off",
                            "the driver may unload between runs (slow starts, cold clocks); an administrator can "
                            "run `nvidia-smi -pm 1`; rpbench never changes it"))
    else:
        state = "on" if info["persistence_mode"] else "unknown"
        checks.append(Check("persistence mode", "pass", f"persistence mode {state}", ""))
    if info["mig_enabled"]:
        checks.append(Check("mig", "warn", "MIG is enabled: this is a slice of the GPU",
                            "ceilings and MFU refer to the slice, not the whole GPU"))

    busy = _snapshot_under_load(cuda_index, 0.5)
    checks.append(_clock_check(busy, info["sm_clock_max_mhz"]))
    checks.append(_temperature_check(busy["temp_c"]))
    return checks


def _clock_check(busy: dict[str, Any], max_mhz: int | None) -> Check:
    clock, reasons = busy["sm_clock_mhz"], busy["throttle_reasons"] or []
    values = {"sm_clock_busy_mhz": clock, "sm_clock_max_mhz": max_mhz, "throttle_reasons_busy": reasons}
    ratio = f" ({clock / max_mhz:.0%} of max {max_mhz})" if clock and max_mhz else ""
    detail = f"under load: SM clock {clock} MHz{ratio}; reasons: {', '.join(reasons) or 'none'}"
    harmful = sorted(HARMFUL_THROTTLES.intersection(reasons))
    if harmful:
        return Check("gpu clocks", "warn", detail,
                     f"{', '.join(harmful)}: cooling or power delivery limits the clock; results will drift",
                     values)
    return Check("gpu clocks", "pass", detail, "", values)


def _temperature_check(temp_c: int | None) -> Check:
    values = {"temp_busy_c": temp_c}
    if temp_c is None:
        return Check("gpu temperature", "warn", "temperature not readable", "", values)
    if temp_c >= HOT_C:
        return Check("gpu temperature", "warn", f"{temp_c} °C under load",
                     "a hot GPU throttles and draws more power: improve cooling or cool down between cases",
                     values)
    return Check("gpu temperature", "pass", f"{temp_c} °C under load", "", values)


# ---- torch ----


def check_torch_build() -> Check:
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    build = f"CUDA {torch.version.cuda} build, cuDNN {cudnn}" if torch.version.cuda else "CPU-only build"
    values = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": cudnn}
    return Check("torch build", "pass", f"torch {torch.__version__}, {build}", "", values)


def check_device(choice: str) -> tuple[Check, str | None]:
    """Resolve --device; a requested but absent GPU fails (and stops the doctor)."""
    import torch

    if choice not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {choice!r}")
    if torch.cuda.is_available() and choice in ("auto", "cuda"):
        props = torch.cuda.get_device_properties(0)
        detail = (f"cuda:0 {props.name}, sm {props.major}.{props.minor}, {props.multi_processor_count} SMs, "
                  f"{props.total_memory / 2**30:.0f} GiB ({torch.cuda.device_count()} visible)")
        return Check("device", "pass", detail, "", {"device_name": props.name}), "cuda"
    if choice == "cuda":
        why = "CPU-only torch" if torch.version.cuda is None else "no driver, or CUDA_VISIBLE_DEVICES hides all"
        return Check("device", "fail", f"CUDA requested but torch sees no GPU ({why})",
                     "install a CUDA build of torch or fix the driver, or run with --device cpu"), None
    name = environment.cpu_model()
    note = "" if choice == "cpu" else "no CUDA GPU visible; "
    return Check("device", "pass", f"{note}checking the CPU: {name}", "", {"device_name": name}), "cpu"


def sdpa_backends_that_run(device: str, dtype: Any) -> list[str]:
    """SDPA backends that really execute a tiny (1, 2, 128, 64) attention here, each forced alone."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    from attentions.dense import SDPA_BACKENDS

    from .measure import SDPA_CANDIDATES

    q, k, v = (torch.randn(1, 2, 128, 64, device=device, dtype=dtype) for _ in range(3))
    working = []
    for name in SDPA_CANDIDATES[device]:
        try:
            with warnings.catch_warnings():  # each refused backend explains itself in a UserWarning
                warnings.simplefilter("ignore")
                with sdpa_kernel([SDPA_BACKENDS[name]]):
                    out = F.scaled_dot_product_attention(q, k, v)
            if bool(torch.isfinite(out).all()):
                working.append(name)
        except RuntimeError:  # "No available kernel" and friends
            continue
    return working


def check_sdpa(device: str) -> Check:
    import torch

    dtypes = (torch.float16, torch.bfloat16) if device == "cuda" else (torch.float32, torch.bfloat16)
    found = {str(dtype).removeprefix("torch."): sdpa_backends_that_run(device, dtype) for dtype in dtypes}
    detail = "; ".join(f"{dtype}: {', '.join(names) or 'none'}" for dtype, names in found.items())
    values = {"backends": found}
    if any(not names for names in found.values()):
        return Check("sdpa backends", "fail", detail, "SDPA cannot run at all for some dtype: torch is broken",
                     values)
    fused_missing = [dtype for dtype, names in found.items() if names == ["math"]]
    if fused_missing:
        return Check("sdpa backends", "warn", detail,
                     f"no fused kernel for {', '.join(fused_missing)}: the dense baseline runs the slow math path",
                     values)
    return Check("sdpa backends", "pass", detail, "", values)


def check_tf32(device: str) -> Check:
    import torch

    settings = environment.tf32_settings(torch)
    if device == "cpu":
        detail = f"float32 matmul precision '{settings['float32_matmul_precision']}' (TF32 is CUDA-only)"
    else:
        detail = (f"TF32 matmul {settings['matmul_allow_tf32']}, TF32 cuDNN {settings['cudnn_allow_tf32']}, "
                  f"float32 matmul precision '{settings['float32_matmul_precision']}'")
    return Check("tf32", "pass", detail, "float32 timings depend on these; env.json records them", settings)


# ---- ceilings ----


def _median_seconds(fn: Callable[[], Any], device: str, budget_s: float) -> float:
    """Median seconds per call over about `budget_s`, with the sweep's own timer (CUDA events or perf_counter)."""
    budget = Measure(warmup_ms=0.0, repeat_ms=budget_s * 1e3, min_samples=1, flush_l2=False)
    return summarize(time_step(fn, lambda: None, device, budget)).median / 1e3


def measure_ceilings(device: str) -> dict[str, Any]:
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
        "device_name": torch.cuda.get_device_name(0) if cuda else environment.cpu_model(),
        "matmul_size": size,
        "matmul_tflops": tflops,
        "copy_bytes": copy_bytes,
        "copy_gbps": 2 * copy_bytes / copy_s / 1e9,
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if cuda else None,
        "threads": None if cuda else torch.get_num_threads(),
    }


def ceilings_cache_path(device_name: str) -> Path:
    """Where doctor keeps the last measured ceilings of a device, for the sweeps that follow."""
    root = Path(os.environ.get("RPBENCH_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "rpbench")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device_name).strip("-").lower() or "device"
    return root / "ceilings" / f"{slug}.json"


def save_ceilings(ceilings: dict[str, Any]) -> Path | None:
    """Cache the ceilings under the device's name; None when the cache is not writable (never fatal)."""
    path = ceilings_cache_path(str(ceilings.get("device_name") or "device"))
    measured = dict(ceilings, measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    except OSError:
        return None
    return path


def cached_ceilings(device_name: str) -> dict[str, Any] | None:
    """The ceilings doctor last measured on a device of this name, or None."""
    try:
        data = json.loads(ceilings_cache_path(device_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if data.get("device_name") == device_name else None


def _flops_rate(tflops: float | None) -> str:
    if tflops is None:
        return "n/a"
    return f"{tflops:.3g} TFLOP/s" if tflops >= 1 else f"{tflops * 1e3:.3g} GFLOP/s"


def check_ceilings(device: str) -> Check:
    ceilings = measure_ceilings(device)
    rates = ", ".join(f"{dtype} {_flops_rate(rate)}" for dtype, rate in ceilings["matmul_tflops"].items())
    detail = f"matmul {rates}; copy {ceilings['copy_gbps']:.3g} GB/s"
    if any(rate is None for rate in ceilings["matmul_tflops"].values()):
        return Check("ceilings", "warn", detail, "a dtype could not be measured", ceilings)
    return Check("ceilings", "pass", detail, "cached: later sweeps on this device record them in env.json", ceilings)


# ---- the whole doctor ----


def run(choice: str = "auto") -> Report:
    """Every check for the chosen device, cheapest and most disturbance-sensitive first."""
    checks = [check_cpu_load(), check_cpu_governor(), check_torch_build()]
    device_check, device = check_device(choice)
    checks.append(device_check)
    if device is None:
        return Report(None, None, checks, {})
    if device == "cuda":  # before our own kernels warm the GPU and our context joins its process list
        checks += check_gpu_state(0)
    checks += [check_threads(), check_tf32(device), check_sdpa(device), check_timer(device)]
    ceilings_check = check_ceilings(device)
    checks.append(ceilings_check)
    return Report(device, device_check.values.get("device_name"), checks, ceilings_check.values)


STATUS_STYLE = {"pass": "[green]PASS[/]", "warn": "[yellow]WARN[/]", "fail": "[bold red]FAIL[/]"}


def render(report: Report, console: Console) -> None:
    table = Table(title=f"rpbench doctor ({report.device or 'no device'})", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("advice", overflow="fold")
    for check in report.checks:
        table.add_row(STATUS_STYLE[check.status], check.name, check.detail, check.advice)
    console.print(table)
    counts = {status: sum(check.status == status for check in report.checks) for status in STATUS_STYLE}
    verdict = "[bold red]not fit to benchmark[/]" if report.failed else "[green]fit to benchmark[/]"
    console.print(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail: {verdict}")
