"""Pooled-KV attention: every query attends to keys and values average-pooled over r x r patches of the token grid
(the spatial-reduction idea of PVT, without its convolution). An example of a mechanism from outside rpbench.

    y = softmax(Q K_p^T / sqrt(d)) V_p,  Q = X W_q,  [K_p, V_p] = pool_r(X) W_kv,  out = y W_o

Shapes: (B, N, C) -> (B, N, C) with N = H * W; pool_r gives ceil(H/r) * ceil(W/r) tokens.
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

import attentions
from attentions import Knob


def _pooled_tokens(grid: tuple[int, int], r: int) -> int:
    return math.ceil(grid[0] / r) * math.ceil(grid[1] / r)


def pooled_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, r: int) -> dict[str, int]:
    """Forward FLOPs, 1 multiply-add = 2 FLOPs, matmuls only (pooling and softmax not counted)."""
    tokens, pooled = grid[0] * grid[1], _pooled_tokens(grid, r)
    projections = 2 * tokens * dim * dim + 2 * pooled * dim * 2 * dim + 2 * tokens * dim * dim  # q, kv, out
    core = 2 * 2 * tokens * pooled * dim  # Q K^T and A V over all heads
    return {"core": batch * core, "proj": batch * projections}


def pooled_check(grid: tuple[int, int], dim: int, num_heads: int, r: int) -> str | None:
    if r > min(grid):
        return f"r={r} is larger than the {grid[0]}x{grid[1]} grid"
    return None


@attentions.register(
    "pooled-kv",
    knobs={"r": Knob(2, "keys and values are average-pooled over r x r patches of the grid", low=1, high=64)},
    flops=pooled_flops,
    check=pooled_check,
    paper="example plugin (PVT-style spatial reduction)",
    complexity="O(N²·C/r²)",
    scaling="quadratic",
)
class PooledKVAttention(nn.Module):
    """Softmax attention over r x r average-pooled keys and values."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], r: int = 2):
        super().__init__()
        self.num_heads, self.grid, self.r = num_heads, tuple(grid), r
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        height, width = self.grid
        heads = self.num_heads
        q = self.q(x).view(batch, tokens, heads, dim // heads).transpose(1, 2)
        image = x.transpose(1, 2).reshape(batch, dim, height, width)
        pooled = F.avg_pool2d(image, self.r, ceil_mode=True).flatten(2).transpose(1, 2)
        k, v = self.kv(pooled).view(batch, -1, 2, heads, dim // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
