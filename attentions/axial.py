"""Axial attention (Ho et al. 2019): softmax attention along the row, then along the column, in one layer.

Paper: Ho, Kalchbrenner, Weissenborn, Salimans, "Axial Attention in Multidimensional Transformers",
arXiv 1912.12180. The paper has no official module to match; this layer is our design, built to be one
(B, N, C) -> (B, N, C) mechanism comparable with the others. Per head, with Q, K, V from one qkv Linear and
s = d^-1/2, for the token at row r, column c:

    Z[r, c] = Σ_c' softmax_c'(s · Q[r, c] · K[r, c']) V[r, c']        (row hop: keys in the query's row)
    O[r, c] = Σ_r' softmax_r'(s · Q[r, c] · K[r', c]) Z[r', c]        (column hop: keys in the query's column,
    Y       = proj(concat_heads(O))                                     values already row-attended)

i.e. Y = proj(A_col (A_row V)) with A_row and A_col the row- and column-masked softmax maps of the same Q Kᵀ.
Two hops reach every token of the grid. Cost: 4·N·(W + H)·d per head, O(N·(H+W)·C), N^1.5 on a square grid.
Each hop is one scaled_dot_product_attention call over (B·h·H) rows of W tokens and (B·h·W) columns of H tokens.

How this differs from the paper: Ho et al. stack separate row-attention and column-attention layers, each with
its own projections (and, in their decoders, masked variants); here one layer carries both hops with one shared
qkv and one proj, so it costs one layer's parameters. The column hop reuses the row hop's Q and K rather than
projecting the row output again. On a 1×W or H×1 grid one hop is over a single token (an identity), and the
layer is dense softmax attention. Keys qkv.* and proj.* are timm `Attention`'s (qkv_bias=True).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._common import HeadwiseAttention, attention_flops, phase, qkv_out_flops
from ._registry import AttentionSpec, register


class AxialAttention(HeadwiseAttention):
    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        batch, heads, tokens, head_dim = q.shape
        height, width = self.grid

        def rows(t: Tensor) -> Tensor:  # (B·h, H, W, d): H problems of W tokens each
            return t.reshape(batch * heads, height, width, head_dim)

        def columns(t: Tensor) -> Tensor:  # (B·h, W, H, d): W problems of H tokens each
            return rows(t).transpose(1, 2)

        with phase("axial.rows"):
            z = F.scaled_dot_product_attention(rows(q), rows(k), rows(v))
        with phase("axial.columns"):
            out = F.scaled_dot_product_attention(columns(q), columns(k), z.transpose(1, 2))
        return out.transpose(1, 2).reshape(batch, heads, tokens, head_dim)


def axial_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, **_) -> dict[str, int]:
    height, width = grid
    head_dim, problems = dim // num_heads, batch * num_heads
    return {
        "core": attention_flops(problems * height, width, width, head_dim)
        + attention_flops(problems * width, height, height, head_dim),
        "proj": batch * qkv_out_flops(height * width, dim),
    }


SPEC = register(
    AttentionSpec(
        name="axial",
        summary="axial attention in one layer: softmax over the query's row, then over its column applied to "
        "the row-attended values, y = proj(A_col (A_row V))",
        paper="Ho et al. 2019, Axial Attention in Multidimensional Transformers, arXiv 1912.12180",
        complexity="O(N·(H+W)·C)",
        scaling="N^1.5",
        factory=AxialAttention,
        flops_fn=axial_flops,
        state_dict_compat="timm `Attention` (qkv_bias=True): keys qkv.*, proj.* (one layer holds both hops)",
    )
)
