"""Small pieces every mechanism shares: head reshapes, grid checks, FLOP terms."""
from __future__ import annotations

import contextlib
import math
from typing import ContextManager

import torch
from torch import Tensor, nn
from torch.autograd import _profiler_enabled
from torch.profiler import record_function

_NO_LABEL = contextlib.nullcontext()


def phase(name: str) -> ContextManager:
    """A profiler label for one phase of a mechanism, and nothing at all when no profiler runs.

    record_function costs several µs per call even with no profiler attached (an op dispatch), which
    is measurable on small CPU problems; checking the profiler's state first costs ~0.05 µs. Under
    torch.compile there is no label at all: the profiler check returns a bool Dynamo cannot trace,
    and it would break the graph at every phase.
    """
    if torch.compiler.is_compiling():
        return _NO_LABEL
    return record_function(name) if _profiler_enabled() else _NO_LABEL


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, C) -> (B, h, N, C/h); channel c goes to head c // (C/h)."""
    batch, tokens, channels = x.shape
    return x.reshape(batch, tokens, num_heads, channels // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, h, N, d) -> (B, N, h·d)."""
    batch, heads, tokens, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, tokens, heads * head_dim)


def check_tokens(x: Tensor, grid: tuple[int, int]) -> None:
    """Fail clearly when the input does not match the grid the module was built for."""
    height, width = grid
    if x.dim() != 3 or x.shape[1] != height * width:
        raise ValueError(
            f"expected input (B, {height * width}, C) for grid {height}x{width}, got {tuple(x.shape)}"
        )


def square_side(m: int) -> int | None:
    """The side of a square with m cells, or None when m is not a perfect square."""
    side = math.isqrt(m) if m > 0 else 0
    return side if side * side == m and side > 0 else None


def matmul_flops(rows: int, inner: int, cols: int) -> int:
    """FLOPs of a (rows × inner) @ (inner × cols) product, 2 per multiply-add."""
    return 2 * rows * inner * cols


def qkv_out_flops(tokens: int, dim: int) -> int:
    """Fused qkv Linear (C -> 3C) plus output Linear (C -> C): 8·N·C² for N tokens."""
    return matmul_flops(tokens, dim, 3 * dim) + matmul_flops(tokens, dim, dim)


def attention_flops(batch_heads: int, queries: int, keys: int, head_dim: int) -> int:
    """softmax(q kᵀ) v over batch_heads independent problems: two products."""
    return batch_heads * (matmul_flops(queries, head_dim, keys) + matmul_flops(queries, keys, head_dim))


def dwc_flops(batch: int, tokens: int, channels: int, kernel: int) -> int:
    """Depthwise k×k convolution over `channels` maps of `tokens` positions (bias not counted)."""
    return 2 * batch * tokens * channels * kernel * kernel


def trunc_normal_(tensor: Tensor, std: float = 0.02) -> Tensor:
    return torch.nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class HeadwiseAttention(nn.Module):
    """qkv Linear -> heads -> `attend(q, k, v)` -> merge -> output Linear, with timm `Attention`'s keys.

    Subclasses only say how heads attend; the projections, checks and phase labels stay in one place.
    """

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, h, N, d) queries, keys, values -> (B, h, N, d)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        with phase("qkv"):
            q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        with phase("core"):
            out = merge_heads(self.attend(q, k, v))
        with phase("proj"):
            return self.proj(out)
