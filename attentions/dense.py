"""Dense softmax attention through F.scaled_dot_product_attention (the baseline to beat).

State-dict compatible with timm's `Attention` built with qkv_bias=True (keys `qkv.*`, `proj.*`).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._common import HeadwiseAttention, attention_flops, qkv_out_flops
from ._registry import AttentionSpec, Knob, register

SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


class DenseAttention(HeadwiseAttention):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], backend: str = "auto"):
        super().__init__(dim, num_heads, grid)
        self.sdpa_backend = backend  # what was asked for; the harness records what actually ran

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.sdpa_backend == "auto":
            return F.scaled_dot_product_attention(q, k, v)
        with sdpa_kernel([SDPA_BACKENDS[self.sdpa_backend]]):
            return F.scaled_dot_product_attention(q, k, v)


def dense_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, **_) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    return {
        "core": attention_flops(batch * num_heads, tokens, tokens, dim // num_heads),
        "proj": batch * qkv_out_flops(tokens, dim),
    }


SPEC = register(
    AttentionSpec(
        name="dense",
        summary="softmax attention via scaled_dot_product_attention (fused kernels)",
        paper="Vaswani et al. 2017; Dosovitskiy et al. 2021 (ViT)",
        complexity="O(N²·C)",
        scaling="quadratic",
        factory=DenseAttention,
        flops_fn=dense_flops,
        knobs={
            "backend": Knob(
                "auto",
                "SDPA backend to force; auto lets PyTorch pick the fastest it supports",
                choices=("auto", *SDPA_BACKENDS),
            )
        },
        state_dict_compat="timm `Attention` (qkv_bias=True): keys qkv.*, proj.*",
    )
)
