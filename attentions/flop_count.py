"""Counted FLOPs through torch's FlopCounterMode, with CPU SDPA made visible.

FlopCounterMode registers the CUDA SDPA kernels but not the CPU flash kernel, which it would count
as 0; the mapping below gives the CPU kernel (forward and backward) the same formulas.
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


def count_flops(fn: Callable[[], object]) -> int:
    """Run `fn()` once under FlopCounterMode and return the FLOPs it dispatched."""
    with FlopCounterMode(display=False, custom_mapping=_extra_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())
