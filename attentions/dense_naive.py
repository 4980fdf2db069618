"""Textbook softmax attention with the N×N score matrix materialised by explicit matmuls.

This is the "vanilla MHSA" many efficient-attention papers time against: no fused kernel, so its
memory grows with B·h·N². Same parameters as `dense` (keys `qkv.*`, `proj.*`), so the two load each
other's state dicts and differ only in how the core is executed.

FLOPs: core = Q·Kᵀ and A·V = 4·B·N²·C; proj = qkv and output Linear layers = 8·B·N·C².
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.profiler import record_function

from ._common import check_tokens, merge_heads, split_heads
from ._registry import AttentionSpec, register
from .dense import dense_flops


class NaiveDenseAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        with record_function("qkv"):
            q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        with record_function("core"):
            scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, h, N, N), held in memory
            out = scores.softmax(dim=-1) @ v
        with record_function("proj"):
            return self.proj(merge_heads(out))


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
