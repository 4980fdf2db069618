"""Efficient Attention (Shen et al., WACV 2021, arXiv 1812.01243), softmax variant, multi-head.

Per head, as in cmsflash/efficient-attention `efficient_attention.py`:

    E(Q, K, V) = ρq(Q) (ρk(K)ᵀ V)

ρq is a softmax over each query's d features, ρk a softmax over the N positions of each key
channel; no scale. The block-level residual of the official module (output + input) belongs to
the host block and is left out here, as in every other mechanism of this package.
"""
from __future__ import annotations

from torch import Tensor

from ._common import HeadwiseAttention, matmul_flops, qkv_out_flops
from ._registry import AttentionSpec, register

ORDERS = ("linear", "quadratic")


def efficient_attention(q: Tensor, k: Tensor, v: Tensor, order: str = "linear") -> Tensor:
    """(B, h, N, d) inputs -> (B, h, N, d).

    order="linear" forms the d×d context ρk(K)ᵀV first; order="quadratic" forms the explicit,
    row-stochastic N×N matrix ρq(Q)ρk(K)ᵀ. Both compute the same function.
    """
    rho_q, rho_k = q.softmax(dim=-1), k.softmax(dim=-2)
    if order == "linear":
        return rho_q @ (rho_k.transpose(-1, -2) @ v)
    if order == "quadratic":
        return (rho_q @ rho_k.transpose(-1, -2)) @ v
    raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


class EfficientAttention(HeadwiseAttention):
    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return efficient_attention(q, k, v)


def efficient_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, **_) -> dict[str, int]:
    """Per head: the d×d context ρk(K)ᵀV, then ρq(Q) times it."""
    tokens, head_dim = grid[0] * grid[1], dim // num_heads
    per_head = matmul_flops(head_dim, tokens, head_dim) + matmul_flops(tokens, head_dim, head_dim)
    return {"core": batch * num_heads * per_head, "proj": batch * qkv_out_flops(tokens, dim)}


SPEC = register(
    AttentionSpec(
        name="efficient",
        summary="ρq(Q)(ρk(K)ᵀV): softmax over features for queries, over positions for keys",
        paper="Shen et al. 2021, Efficient Attention (WACV), arXiv 1812.01243",
        complexity="O(N·C·d)",
        scaling="linear",
        factory=EfficientAttention,
        flops_fn=efficient_flops,
        state_dict_compat="timm `Attention` (qkv_bias=True): keys qkv.*, proj.*",
    )
)
