"""One case in, one row out: build the module, make seeded inputs, measure each quantity in its own pass.

A failing case becomes a row with a status (unsupported, oom, nonfinite, error); it never stops a sweep.
"""
from __future__ import annotations

import gc
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import torch
from torch import nn

import attentions

from .cases import Case, Measure
from .measure import SDPA_CANDIDATES, peak_memory, quick_median_ms, sdpa_kernels_that_ran, summarize, synchronize, time_step

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class NonFiniteOutput(RuntimeError):
    pass


@dataclass
class Workload:
    """A built module with its inputs: `step` is exactly what gets timed, `reset` runs before it, untimed."""

    module: nn.Module
    step: Callable[[], object]
    reset: Callable[[], None]
    forward: Callable[[], torch.Tensor]
    batch: int
    tokens: int
    flops_analytic: int | None
    extra: dict[str, Any] = field(default_factory=dict)


def case_seed(case: Case) -> int:
    return int(case.case_id[:8], 16)


def make_steps(module: nn.Module, forward: Callable[[], torch.Tensor], mode: str, grad_out: torch.Tensor | None):
    """fwd runs under inference_mode in eval; fwdbwd backpropagates a fixed random output gradient."""
    params = [p for p in module.parameters() if p.requires_grad]

    if mode == "fwd":
        module.eval()

        def step() -> object:
            with torch.inference_mode():
                return forward()

        def reset() -> None:
            return None

        return step, reset

    module.train()

    def step() -> object:
        out = forward()
        out.backward(grad_out)
        return out

    def reset() -> None:
        for param in params:
            param.grad = None

    return step, reset


def build_workload(
    case: Case,
    build: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    flops_analytic: int | None = None,
    describe: Callable[[nn.Module, torch.Tensor], dict[str, Any]] | None = None,
) -> Workload:
    """The module of `case` on its device and dtype with seeded random inputs (never zeros) and output gradient.

    `describe(module, inputs)`, when given, adds model-level facts (MACs, attention share) measured on the
    eval-mode module before any timing.
    """
    dtype = DTYPES[case.dtype]
    torch.manual_seed(case_seed(case))
    module = build().to(device=case.device, dtype=dtype)
    gen = torch.Generator(device="cpu").manual_seed(case_seed(case) + 1)
    inputs = torch.randn(input_shape, generator=gen).to(device=case.device, dtype=dtype)
    grad_out = torch.randn(output_shape, generator=gen).to(device=case.device, dtype=dtype)
    extra = describe(module.eval(), inputs) if describe else {}

    def forward() -> torch.Tensor:
        return module(inputs)

    step, reset = make_steps(module, forward, case.mode, grad_out)
    return Workload(module=module, step=step, reset=reset, forward=forward, batch=case.batch, tokens=case.tokens,
                    flops_analytic=flops_analytic, extra=extra)


def make_layer_workload(case: Case) -> Workload:
    """The attention layer of `case`, with its analytic FLOPs."""
    spec = attentions.spec(case.attention)
    grid = (case.height, case.width)
    flops = spec.flops(batch=case.batch, grid=grid, dim=case.dim, num_heads=case.heads, **case.knob_dict)["total"]
    # Backward of a matmul costs two forward matmuls (input and weight gradients): fwd+bwd ≈ 3 × forward.
    shape = (case.batch, case.tokens, case.dim)
    return build_workload(
        case,
        lambda: spec.build(dim=case.dim, num_heads=case.heads, grid=grid, **case.knob_dict),
        shape,
        shape,
        flops_analytic=flops if case.mode == "fwd" else 3 * flops,
    )


def make_workload(case: Case) -> Workload:
    if case.scope == "backbone":
        from .backbone_cases import make_backbone_workload

        return make_backbone_workload(case)
    return make_layer_workload(case)


def apply_fastest_sdpa(case: Case, work: Workload) -> str | None:
    """`dense` with backend=auto is measured with the fastest SDPA backend that runs here; returns the note."""
    if case.scope == "layer" and case.attention == "dense" and case.knob_dict.get("backend") == "auto":
        return choose_fastest_sdpa(work, case.device)
    return None


def choose_fastest_sdpa(work: Workload, device: str) -> str:
    """Probe every SDPA backend that can run on `device` and keep the fastest on the module."""
    timings: dict[str, float] = {}
    for backend in SDPA_CANDIDATES[device]:
        work.module.sdpa_backend = backend
        try:
            with warnings.catch_warnings():  # "kernel not used because ..." for every backend that cannot run
                warnings.simplefilter("ignore")
                timings[backend] = quick_median_ms(work.step, work.reset, device)
        except RuntimeError:
            continue
        finally:
            synchronize(device)
    if not timings:
        work.module.sdpa_backend = "auto"
        return "no forced SDPA backend ran; PyTorch's default was used"
    best = min(timings, key=timings.get)
    work.module.sdpa_backend = best
    probes = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(timings.items(), key=lambda kv: kv[1]))
    return f"auto backend = fastest probed ({probes})"


def base_row(case: Case, suite: str) -> dict[str, Any]:
    return {
        "case_id": case.case_id,
        "suite": suite,
        "scope": case.scope,
        "attention": case.attention,
        "label": case.label,
        "knobs": json.dumps(case.knob_dict, sort_keys=True),
        "backbone": case.backbone,
        "layout": case.layout,
        "batch": case.batch,
        "tokens": case.tokens,
        "height": case.height,
        "width": case.width,
        "resolution": case.resolution,
        "patch": case.patch,
        "dim": case.dim,
        "heads": case.heads,
        "m": case.m,
        "dtype": case.dtype,
        "mode": case.mode,
        "device": case.device,
        "device_name": device_name(case.device),
        "threads": torch.get_num_threads(),
        "timer": "cuda_event" if case.device == "cuda" else "perf_counter",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    from .environment import cpu_model

    return cpu_model()


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _check_finite(work: Workload) -> None:
    work.reset()
    with torch.inference_mode():
        out = work.forward()
    if not torch.isfinite(out).all():
        raise NonFiniteOutput("output contains NaN or Inf")


def _telemetry(case: Case):
    if case.device != "cuda":
        return None
    from . import telemetry

    return telemetry


def measure_case(case: Case, measure: Measure, work: Workload, row: dict[str, Any]) -> list[float]:
    """Fill `row` with every measured quantity; returns the latency samples."""
    notes: list[str] = []
    tele = _telemetry(case)
    gpu = torch.cuda.current_device() if tele else None
    if tele:
        throttled = _record_snapshot(tele, gpu, "start", row)

    _check_finite(work)
    notes.append(apply_fastest_sdpa(case, work))

    row["flops_counted"] = attentions.count_flops(lambda: (work.reset(), work.step()))
    row["flops_analytic"] = work.flops_analytic
    kernels = sdpa_kernels_that_ran(work.step, work.reset)
    row["sdpa_backend"] = "+".join(kernels) if kernels else None

    samples = time_step(work.step, work.reset, case.device, measure)
    stats = summarize(samples)
    seconds = stats.median / 1e3
    flops = row["flops_counted"] or row["flops_analytic"]
    row.update(
        latency_ms_median=stats.median, latency_ms_p20=stats.p20, latency_ms_p80=stats.p80,
        latency_ms_min=stats.minimum, latency_ms_mean=stats.mean, iqr_pct=stats.iqr_pct,
        n_samples=stats.n, noisy=stats.noisy,
        throughput_img_s=work.batch / seconds if seconds > 0 else None,
        tokens_s=work.batch * work.tokens / seconds if seconds > 0 else None,
        tflops_s=flops / seconds / 1e12 if flops and seconds > 0 else None,
    )

    peak = peak_memory(work.step, work.reset, case.device)
    row["peak_mem_mb"], row["peak_reserved_mb"] = peak.allocated_mb, peak.reserved_mb
    if peak.note:
        notes.append(peak.note)

    if tele:
        energy = _energy_pass(tele, gpu, work, case, measure, stats.median)
        if energy is None:
            notes.append("energy: NVML total-energy counter unsupported on this GPU/driver")
        else:
            row["energy_j_per_iter"] = energy
            row["energy_j_per_img"] = energy / work.batch
        row["throttled"] = _record_snapshot(tele, gpu, "end", row) or throttled
    row["notes"] = "; ".join(n for n in notes if n) or None
    return samples


def _record_snapshot(tele, gpu: int, when: str, row: dict[str, Any]) -> bool:
    """SM clock, temperature and power into the row's *_start/*_end columns; returns the throttled flag."""
    snap = tele.snapshot(gpu)
    row[f"sm_clock_{when}_mhz"] = snap.get("sm_clock_mhz")
    row[f"temp_{when}_c"] = snap.get("temp_c")
    row[f"power_{when}_w"] = snap.get("power_w")
    return bool(snap.get("throttled"))


def _energy_pass(tele, gpu: int, work: Workload, case: Case, measure: Measure, median_ms: float) -> float | None:
    """Joules per call from NVML's energy counter over >= measure.energy_s of back-to-back calls."""
    meter = tele.EnergyMeter(gpu)
    if not meter.supported:
        return None
    calls = max(1, math.ceil(measure.energy_s * 1e3 / max(median_ms, 1e-3)))
    torch.cuda.synchronize()
    meter.start()
    for _ in range(calls):
        work.reset()
        work.step()
    torch.cuda.synchronize()
    joules = meter.stop()
    return None if joules is None else joules / calls


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def run_case(case: Case, measure: Measure, suite: str = "") -> tuple[dict[str, Any], list[float]]:
    """Measure one case; every failure is a status on the row, never an exception."""
    began = time.perf_counter()
    row = base_row(case, suite)
    samples: list[float] = []
    work = None
    try:
        work = make_workload(case)
        row["params"] = sum(p.numel() for p in work.module.parameters())
        row.update(work.extra)
        samples = measure_case(case, measure, work, row)
        row["status"] = "ok"
    except attentions.UnsupportedConfig as err:
        row.update(status="unsupported", notes=str(err))
    except torch.cuda.OutOfMemoryError as err:
        row.update(status="oom", notes=one_line(err)[:300])
    except NonFiniteOutput as err:
        row.update(status="nonfinite", notes=str(err))
    except Exception as err:  # a failing case must never stop the sweep
        row.update(status="error", notes=one_line(err)[:300])
    finally:
        del work
        release(case.device)
    if row["status"] != "ok":
        samples = []
    row["elapsed_s"] = time.perf_counter() - began
    return row, samples
