"""Counted FLOPs through torch's FlopCounterMode, with CPU SDPA made visible.

FlopCounterMode registers the CUDA SDPA kernels but not the CPU flash kernel, which it would count
as 0; the mapping below gives the CPU kernel (forward and backward) the same formulas.

Some kernels it cannot count at all: a module that runs one says why through a method
`flops_uncounted(device) -> str | None`, and `uncounted_flops` collects that reason, so the caller takes the
mechanism's formula instead of running the counter (neighborhood's flex_attention raises under it).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_sdpa_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _extra_formulas() -> dict:
    aten = torch.ops.aten
    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_forward
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward
    return mapping


UNCOUNTED_METHOD = "flops_uncounted"


def uncounted_flops(module: torch.nn.Module, device: str | torch.device) -> str | None:
    """Why FlopCounterMode cannot count a call of `module` (or of one of its submodules) on `device`, or None."""
    for sub in module.modules():
        method = getattr(sub, UNCOUNTED_METHOD, None)
        reason = method(torch.device(device)) if callable(method) else None
        if reason:
            return reason
    return None


def count_flops(fn: Callable[[], object]) -> int:
    """Run `fn()` once under FlopCounterMode and return the FLOPs it dispatched."""
    with FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())
