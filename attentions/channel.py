"""DaViT channel group attention (Ding et al., ECCV 2022): each head attends over its channels, not its tokens.

Paper: Ding, Xiao, Codella, Luo, Wang, Yuan, "DaViT: Dual Attention Vision Transformers", ECCV 2022,
arXiv 2204.03645. Official: timm `timm/models/davit.py` class `ChannelAttention` (adapted there from
dingmyu/davit; mirror aa4b5850, file last changed in c0e3d24f), the attention of every `ChannelBlock` that
DaViT-T/S/B/L/H/G build. The same file has `ChannelAttentionV2` (softmax over qᵀk scaled by N^-1/2, applied to v),
which only the Florence-2 encoders (davit_base_fl, davit_huge_fl, channel_attn_v2=True) use; this is the first one.

Per head, with Q, K, V the (N × d) token-by-channel matrices and s = d^-1/2:

    A = softmax_row(s · Kᵀ V)         (d × d: key channel i against value channel j, softmax over j)
    O = Q Aᵀ                          (N × d: O[n, i] = Σ_j A[i, j] Q[n, j])
    Y = proj(concat_heads(O))

Each token's output channel i mixes that token's own query channels; the whole image enters through the d × d
map, so the layer is global at a cost linear in N: 4·N·d² per head. qkv (C -> 3C, with bias, as DaViT builds it)
and proj (C -> C) are timm's Linears under timm's names; q, k, v and the heads are cut from qkv's output in
timm's order. Nothing had to change for the (B, N, C) interface on an (H, W) grid: the official module already
takes (B, N, C) tokens, and the grid is only checked.
"""
from __future__ import annotations

from torch import Tensor

from ._common import HeadwiseAttention, matmul_flops, qkv_out_flops
from ._registry import AttentionSpec, register


class ChannelAttention(HeadwiseAttention):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__(dim, num_heads, grid)
        self.scale = (dim // num_heads) ** -0.5

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        channel_map = ((k * self.scale).transpose(-1, -2) @ v).softmax(dim=-1)  # (B, h, d, d)
        return q @ channel_map.transpose(-1, -2)


def channel_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, **_) -> dict[str, int]:
    tokens, head_dim = grid[0] * grid[1], dim // num_heads
    per_head = matmul_flops(head_dim, tokens, head_dim) + matmul_flops(tokens, head_dim, head_dim)
    return {"core": batch * num_heads * per_head, "proj": batch * qkv_out_flops(tokens, dim)}


SPEC = register(
    AttentionSpec(
        name="channel",
        summary="DaViT channel group attention: per head a d×d softmax map from Kᵀ V, applied to Q's channels",
        paper="Ding et al. 2022, DaViT: Dual Attention Vision Transformers (ECCV), arXiv 2204.03645",
        complexity="O(N·C·d)",
        scaling="linear",
        factory=ChannelAttention,
        flops_fn=channel_flops,
        state_dict_compat="timm davit.ChannelAttention as DaViT builds it (qkv_bias=True): keys qkv.*, proj.*",
    )
)
