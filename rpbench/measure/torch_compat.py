"""The torch calls whose behaviour differs between the versions rpbench runs on, guarded here and nowhere else.

Checked against torch 2.11 (the GPU image: 2.11.0+cu130, triton 3.6), 2.13 and 2.14:
- float32 precision: since 2.9 torch has per-backend `fp32_precision` settings beside the legacy `allow_tf32` /
  `get_float32_matmul_precision()`; once the new API has set a value, the legacy reads raise RuntimeError ("mix of
  the legacy and new APIs"). `fp32_settings` reads both, never raising.
- CUDA graph capture: `torch.cuda.graph.__exit__` calls `capture_end()` before leaving its stream context, without
  `finally` (2.11 to 2.14). An op that fails during capture makes capture_end raise "operation failed due to a
  previous error during capture", which hides the op's own error and leaves the side stream current. `capture`
  restores the stream and raises the op's error.
- SDPA backend choice: `torch._fused_sdp_choice` (private, present since 2.0) is the rule `scaled_dot_product_attention`
  dispatches by, under the `sdpa_kernel` context in force; `SDPBackend` member names are stable since 2.3.
- torch.compile modes that replay their own CUDA graphs: `torch._inductor.list_mode_options(mode)["triton.cudagraphs"]`.
- A CUDA context of this process: `torch._C._cuda_hasPrimaryContext` (CUDA builds) asks the driver;
  `torch.cuda.is_initialized()` is only torch's lazy init, which creates no context.
- triton.testing's do_bench / do_bench_cudagraph (`return_mode="median"` since triton 2.2; 3.6 on the image).
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

import torch

from ..core.errors import one_line

# ---- float32 precision (TF32)

# (key in the record, how to read it): the per-backend settings of the new API; absent keys are left out.
_FP32_PRECISION_READS: tuple[tuple[str, Callable[[], Any]], ...] = (
    ("generic", lambda: torch.backends.fp32_precision),
    ("cuda.matmul", lambda: torch.backends.cuda.matmul.fp32_precision),
    ("cudnn", lambda: torch.backends.cudnn.fp32_precision),
    ("cudnn.conv", lambda: torch.backends.cudnn.conv.fp32_precision),
    ("cudnn.rnn", lambda: torch.backends.cudnn.rnn.fp32_precision),
    ("mkldnn", lambda: torch.backends.mkldnn.fp32_precision),
    ("mkldnn.matmul", lambda: torch.backends.mkldnn.matmul.fp32_precision),
)


def _read(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except (RuntimeError, AttributeError):  # legacy read after the new API was used; a setting this torch lacks
        return None


def fp32_precision() -> dict[str, str]:
    """The new API's settings ("none" = inherit, "ieee", "tf32", "bf16"), by backend; {} before torch 2.9."""
    found = {key: _read(read) for key, read in _FP32_PRECISION_READS}
    return {key: str(value) for key, value in found.items() if value is not None}


def _inherited(settings: dict[str, str], *keys: str) -> str | None:
    """The first setting among `keys` (most specific first) that is not "none"."""
    return next((settings[key] for key in keys if settings.get(key) not in (None, "none")), None)


def fp32_settings() -> dict[str, Any]:
    """Every float32-precision setting that moves timings, flat (one key per setting), never raising.

    float32_matmul_precision, matmul_allow_tf32, cudnn_allow_tf32: the legacy reads, or where torch refuses them
    (the new API was used), what the new settings amount to; fp32_precision.<backend>: the new settings as set."""
    new = fp32_precision()
    matmul = _inherited(new, "cuda.matmul", "generic")
    conv = _inherited(new, "cudnn.conv", "cudnn", "generic")
    legacy_precision = _read(torch.get_float32_matmul_precision)
    legacy_matmul = _read(lambda: torch.backends.cuda.matmul.allow_tf32)
    legacy_cudnn = _read(lambda: torch.backends.cudnn.allow_tf32)
    settings: dict[str, Any] = {
        "float32_matmul_precision": legacy_precision if legacy_precision is not None else
        {"tf32": "high", "bf16": "medium", "ieee": "highest"}.get(matmul or ""),
        "matmul_allow_tf32": bool(legacy_matmul) if legacy_matmul is not None else
        (None if matmul is None else matmul == "tf32"),
        "cudnn_allow_tf32": bool(legacy_cudnn) if legacy_cudnn is not None else
        (None if conv is None else conv == "tf32"),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }
    settings.update({f"fp32_precision.{key}": value for key, value in new.items()})
    return settings


# ---- CUDA graphs


class CaptureFailed(RuntimeError):
    """A CUDA graph capture failed; the message is the failing op's own error (see `capture`)."""


def capture(graph: Any, step: Callable[[], object]) -> None:
    """Capture `step()` into `graph` on a fresh side stream (a failed capture never leaves state behind on a
    stream later captures share). On failure the stream current before is current again and CaptureFailed carries
    the op's own error, not capture_end's "operation failed due to a previous error during capture"."""
    before = torch.cuda.current_stream()
    failures: list[BaseException] = []

    def recorded() -> None:
        try:
            step()
        except BaseException as err:
            failures.append(err)
            raise

    try:
        with torch.cuda.graph(graph, stream=torch.cuda.Stream()):
            recorded()
    except Exception as err:
        torch.cuda.set_stream(before)  # graph.__exit__ raised before leaving its stream context
        cause = failures[0] if failures else err
        raise CaptureFailed(one_line(cause)) from None


def compile_replays_cudagraphs(mode: str) -> bool:
    """True when torch.compile in `mode` replays CUDA graphs of its own (reduce-overhead, max-autotune)."""
    if mode in ("none", "default"):
        return False
    inductor = sys.modules.get("torch._inductor")  # imported by the compile this asks about; never imported here
    try:
        return bool(inductor.list_mode_options(mode).get("triton.cudagraphs"))
    except Exception:  # noqa: BLE001 - not imported, an unknown mode, no helper: the modes as documented (2.4-2.14)
        return mode in ("reduce-overhead", "max-autotune")


def holds_cuda_context(index: int) -> bool:
    """Whether this process holds a CUDA context on torch's `cuda:<index>` (and so is on NVML's process list)."""
    has_context = getattr(torch._C, "_cuda_hasPrimaryContext", None)
    if has_context is not None and torch.cuda.is_available():
        try:
            return bool(has_context(index))
        except RuntimeError:
            return False
    return torch.cuda.is_initialized()


# ---- SDPA

# torch.nn.attention.SDPBackend member -> the backend name rpbench records (attentions.dense.SDPA_BACKENDS' keys)
SDPA_CHOICE_NAMES = {"FLASH_ATTENTION": "flash", "EFFICIENT_ATTENTION": "efficient", "CUDNN_ATTENTION": "cudnn",
                     "MATH": "math", "OVERRIDEABLE": "overrideable"}


def sdpa_choice(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attn_mask: Any = None,
                dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                enable_gqa: bool = False) -> str | None:
    """The SDPA backend `scaled_dot_product_attention` runs for these arguments under the `sdpa_kernel` context in
    force (torch's own rule, no profiler); None where this torch cannot say."""
    choose = getattr(torch, "_fused_sdp_choice", None)
    if choose is None:
        return None
    kwargs: dict[str, Any] = {"scale": scale}
    if enable_gqa:
        kwargs["enable_gqa"] = True
    try:
        chosen = choose(query, key, value, attn_mask, dropout_p, is_causal, **kwargs)
    except RuntimeError:  # no backend can run these arguments: SDPA itself raises the same
        return None
    from torch.nn.attention import SDPBackend

    try:
        return SDPA_CHOICE_NAMES.get(SDPBackend(chosen).name)
    except ValueError:
        return None


# ---- triton's timers


def triton_timers() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """(do_bench, do_bench_cudagraph) from triton.testing, or None where triton is not importable."""
    try:
        testing = importlib.import_module("triton.testing")
    except Exception:  # noqa: BLE001 - absent, or a triton that does not load here
        return None
    do_bench, graphed = getattr(testing, "do_bench", None), getattr(testing, "do_bench_cudagraph", None)
    return None if do_bench is None or graphed is None else (do_bench, graphed)
