"""Textbook softmax attention with the N×N score matrix materialised by explicit matmuls.

This is the "vanilla MHSA" many efficient-attention papers time against: no fused kernel, so its
memory grows with B·h·N². Same parameters as `dense` (keys `qkv.*`, `proj.*`), so the two load each
other's state dicts and differ only in how the core is executed.

FLOPs: core = Q·Kᵀ and A·V = 4·B·N²·C; proj = qkv and output Linear layers = 8·B·N·C².
"""
from __future__ import annotations

from torch import Tensor

from ._common import HeadwiseAttention
from ._registry import AttentionSpec, register
from .dense import dense_flops


class NaiveDenseAttention(HeadwiseAttention):
    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, h, N, N), held in memory
        return scores.softmax(dim=-1) @ v


SPEC = register(
    AttentionSpec(
        name="dense-naive",
        summary="softmax(Q·Kᵀ·s)·V with the N×N matrix materialised (explicit matmuls, "
        "no fused kernel); FLOPs core = 4·B·N²·C, proj = 8·B·N·C²",
        paper="Vaswani et al. 2017; Dosovitskiy et al. 2021 (ViT)",
        complexity="O(N²·C)",
        scaling="quadratic",
        factory=NaiveDenseAttention,
        flops_fn=dense_flops,
        state_dict_compat="same keys as `dense` / timm `Attention` (qkv_bias=True): qkv.*, proj.*",
    )
)
