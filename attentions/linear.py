"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"), non-causal.

Feature map φ(x) = elu(x) + 1, no softmax scale, ε = 1e-6 added to the normaliser, as in
idiap/fast-transformers `fast_transformers/attention/linear_attention.py`. Per head:

    o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)ᵀ Σ_j φ(k_j) + ε)

Associativity turns the N×N attention into a d×d state per head, so the cost is linear in N.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import HeadwiseAttention, matmul_flops, qkv_out_flops
from ._registry import AttentionSpec, register

EPS = 1e-6
ORDERS = ("linear", "quadratic")


def elu_feature_map(x: Tensor) -> Tensor:
    return F.elu(x) + 1


def linear_attention(q: Tensor, k: Tensor, v: Tensor, order: str = "linear", eps: float = EPS) -> Tensor:
    """(B, h, N, d) inputs -> (B, h, N, d).

    order="linear" forms the d×(d+1) state [φ(K)ᵀV, Σφ(K)] and reads numerator and normaliser
    out of it in one product; order="quadratic" forms the explicit N×N matrix φ(Q)φ(K)ᵀ. Both
    compute the same function; the second exists to show it.
    """
    phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)
    # The state sums over all N tokens, so it grows with N: in float16 (largest value 65504) the normaliser
    # overflows from a few thousand tokens. Averaging instead of summing (φ(K) / N, and ε / N) leaves the ratio
    # unchanged; it is done in float16 only, so other dtypes compute exactly what they did.
    scale = 1.0 / k.shape[-2] if k.dtype == torch.float16 else 1.0
    if scale != 1.0:
        phi_k, eps = phi_k * scale, eps * scale
    if order == "linear":
        state = torch.cat([phi_k.transpose(-1, -2) @ v, phi_k.sum(dim=-2).unsqueeze(-1)], dim=-1)
        read = phi_q @ state
        numerator, normaliser = read[..., :-1], read[..., -1:]
    elif order == "quadratic":
        scores = phi_q @ phi_k.transpose(-1, -2)
        numerator, normaliser = scores @ v, scores.sum(dim=-1, keepdim=True)
    else:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    return numerator / (normaliser + eps)


class LinearAttention(HeadwiseAttention):
    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return linear_attention(q, k, v)


def linear_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, **_) -> dict[str, int]:
    """Per head: the d×d state φ(K)ᵀV, then φ(Q) against the d×(d+1) state [φ(K)ᵀV, Σφ(K)]."""
    tokens, head_dim = grid[0] * grid[1], dim // num_heads
    per_head = matmul_flops(head_dim, tokens, head_dim) + matmul_flops(tokens, head_dim, head_dim + 1)
    return {"core": batch * num_heads * per_head, "proj": batch * qkv_out_flops(tokens, dim)}


SPEC = register(
    AttentionSpec(
        name="linear",
        summary="kernelised linear attention, φ(x) = elu(x) + 1, per-head d×d state",
        paper="Katharopoulos et al. 2020, Transformers are RNNs (ICML), arXiv 2006.16236",
        complexity="O(N·C·d)",
        scaling="linear",
        factory=LinearAttention,
        flops_fn=linear_flops,
        state_dict_compat="timm `Attention` (qkv_bias=True): keys qkv.*, proj.*",
    )
)
