"""Model-level costs that need no timing: parameters and counted MACs.

(The measured share of time spent in attention is a profiler pass, so it lives with the other passes in
`rpbench.measure.probes`.)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

import attentions


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, images: Tensor) -> int:
    """Forward multiply-accumulates: FlopCounterMode FLOPs (matmuls, convs, SDPA) / 2.

    Works on the meta device too (model built under `torch.device("meta")`, meta images): the
    count is the same and nothing is computed, which makes large resolutions free to count.
    """
    with torch.no_grad():
        return attentions.count_flops(lambda: model(images)) // 2
