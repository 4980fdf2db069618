"""`rpbench doctor`: is this machine fit to produce numbers worth trusting?

Each check returns pass / warn / fail with one line of advice and the values it measured. The doctor only looks:
it never changes clocks, governors, persistence mode or any torch setting; where a fix needs one, the advice says
what an administrator could do. The ceilings check measures the machine's achievable matmul TFLOP/s and copy GB/s
(`rpbench.machine.ceilings`); the tables that show a report are in `rpbench.views.machine`.
"""
from __future__ import annotations

import warnings
from typing import Any

from ..measure.probes import SDPA_CANDIDATES
from ..core.case import DEVICES
from ..core.diagnostics import Check, DoctorReport
from . import ceilings, environment, timer_check
from .cpu_checks import cpu_timer_check, check_cpu_governor, check_cpu_load, check_threads
from .gpu_checks import check_gpu_state, cuda_timer_check
from .reference import check_drift


def check_timer(device: str) -> Check:
    return cuda_timer_check() if device == "cuda" else cpu_timer_check()


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


def _flops_rate(tflops: float | None) -> str:
    if tflops is None:
        return "n/a"
    return f"{tflops:.3g} TFLOP/s" if tflops >= 1 else f"{tflops * 1e3:.3g} GFLOP/s"


def check_ceilings(device: str) -> Check:
    measured = ceilings.measure(device)
    rates = ", ".join(f"{dtype} {_flops_rate(rate)}" for dtype, rate in measured["matmul_tflops"].items())
    detail = f"matmul {rates}; copy {measured['copy_gbps']:.3g} GB/s"
    if any(rate is None for rate in measured["matmul_tflops"].values()):
        return Check("ceilings", "warn", detail, "a dtype could not be measured", measured)
    return Check("ceilings", "pass", detail, "cached: later sweeps on this device record them in env.json", measured)


# ---- the whole doctor ----


def run(choice: str = "auto") -> DoctorReport:
    """Every check for the chosen device, cheapest and most disturbance-sensitive first."""
    checks = [check_cpu_load(), check_cpu_governor(), check_torch_build()]
    device_check, device = check_device(choice)
    checks.append(device_check)
    if device is None:
        return DoctorReport(None, None, checks, {})
    if device == "cuda":  # before our own kernels warm the GPU and our context joins its process list
        checks += check_gpu_state(0)
    checks += [check_threads(), check_tf32(device), check_sdpa(device), check_timer(device),
               timer_check.check(device), check_drift(device)]
    ceilings_check = check_ceilings(device)
    checks.append(ceilings_check)
    return DoctorReport(device, device_check.values.get("device_name"), checks, ceilings_check.values)
