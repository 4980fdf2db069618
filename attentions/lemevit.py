"""LeMeViT's dual cross-attention (Jiang et al., IJCAI 2024, arXiv 2405.09789): image tokens and m learnable meta tokens.

Follows `DualCrossAttention` (attn_type "D") of the official ViTAE-Transformer/LeMeViT `models/lemevit.py`
(mirror HEAD 1b48783; the file last changed in 4c412d7). X (B, N, C) are the image tokens, M (B, m, C) the meta
tokens; s = C^-1/2 with C the full width (the official `dim ** -0.5`, not the head width). Per head:

    Q1, K1, V1 = qkv1(X)                      Q2, K2, V2 = qkv2(M)
    X' = proj_x(softmax(log_N(m)·s · Q1 K2ᵀ) V2)     image tokens read the meta tokens      (N×m)
    M' = proj_c(softmax(s · Q2 K1ᵀ) V1)              meta tokens read the image tokens      (m×N)

Both directions read the layer's inputs: they run side by side, neither sees the other's output (the official
forward computes X' first, then M', from the same X and M). Cost O(N·m·C): no N×N map is formed. N >= 2 (log base
N). Not this: `DualCrossAttention_v2` ("D2", lemevit_tiny_v2 only), which shares one q/k pair between directions.

Meta tokens: the official model holds one `meta_tokens` parameter (queries_len × embed_dim[0], init N(0, 1),
queries_len = 16 in every released variant: tiny, small, base, small_v2, tiny_v2; none uses the class default
128). A per-stage MLP (`meta_token_downsample`) changes their width, never their number, and each block carries
its M' (plus residual and MLP) to the next block, so the meta tokens a block reads are per image. Here the layer
owns them: `meta_tokens` (m, C), init N(0, 1) like the official parameter, expanded over the batch before qkv2, so
qkv2 runs on B·m tokens as in the model. The block's LayerNorm on X and M (norm1) is not part of the attention
class and is not applied.

What the layer returns: X', the image-token output of one DCA step. M' does not change X' in this layer, but the
model cannot skip it (the next block's image tokens read it), so it is computed here too: `forward_with_meta`
returns (X', M'), and `forward` returns X' with M' attached with weight zero (X' + 0·ΣM', exactly X' in value), so
the timed work is what one LeMeViT layer computes, forward and backward, and torch.compile cannot drop the meta
branch as dead code.

State dict: the official `DualCrossAttention` keys qkv1.*, qkv2.*, proj_x.*, proj_c.* plus `meta_tokens` (the meta
tokens that enter the block, (m, C)); an official block's `attn.` weights load with strict=True once that one
entry is added.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    attention_flops,
    check_tokens,
    matmul_flops,
    merge_heads,
    phase,
    qkv_out_flops,
    split_heads,
)
from ._registry import AttentionSpec, Knob, register

OFFICIAL_META_TOKENS = 16  # queries_len of every released LeMeViT variant


class DualCrossAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], m: int = OFFICIAL_META_TOKENS):
        super().__init__()
        tokens = grid[0] * grid[1]
        if tokens < 2:
            raise ValueError(f"lemevit: the image->meta scale log_N(m) needs N >= 2 tokens, got N={tokens}")
        self.num_heads = num_heads
        self.grid = grid
        self.num_meta = m
        self.scale_c = dim**-0.5
        self.scale_x = math.log(m, tokens) * self.scale_c  # the official math.log(M, N) * scale
        self.meta_tokens = nn.Parameter(torch.randn(m, dim))
        self.qkv1 = nn.Linear(dim, 3 * dim)  # image tokens
        self.qkv2 = nn.Linear(dim, 3 * dim)  # meta tokens
        self.proj_x = nn.Linear(dim, dim)
        self.proj_c = nn.Linear(dim, dim)

    def forward_with_meta(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, C) image tokens -> (X' (B, N, C), M' (B, m, C)), before any residual."""
        check_tokens(x, self.grid)
        with phase("qkv"):
            q1, k1, v1 = (split_heads(t, self.num_heads) for t in self.qkv1(x).chunk(3, dim=-1))
        with phase("lemevit.meta_qkv"):
            # A copy per image, not a view of the parameter: in the model each image carries its own meta tokens
            # (and a view of a parameter breaks FlopCounterMode's module hooks under inference mode).
            meta = self.meta_tokens.unsqueeze(0).repeat(x.shape[0], 1, 1)
            q2, k2, v2 = (split_heads(t, self.num_heads) for t in self.qkv2(meta).chunk(3, dim=-1))
        with phase("lemevit.image_to_meta"):
            image = merge_heads(F.scaled_dot_product_attention(q1, k2, v2, scale=self.scale_x))
        with phase("lemevit.meta_to_image"):
            meta = merge_heads(F.scaled_dot_product_attention(q2, k1, v1, scale=self.scale_c))
        with phase("proj"):
            image = self.proj_x(image)
        with phase("lemevit.meta_proj"):
            meta = self.proj_c(meta)
        return image, meta

    def forward(self, x: Tensor) -> Tensor:
        image, meta = self.forward_with_meta(x)
        # Zero per image (unless M' is not finite), but a real dependency: autograd runs the meta branch's backward
        # and the compiler keeps it, as the next block's use of M' forces in the model.
        return image.add_((meta * 0).sum(dim=(1, 2), keepdim=True))


def lemevit_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, m: int, **_) -> dict[str, int]:
    """Both cross-attentions (N×m and m×N per head) and the meta tokens' own projections are core."""
    tokens, head_dim = grid[0] * grid[1], dim // num_heads
    meta_projections = batch * (matmul_flops(m, dim, 3 * dim) + matmul_flops(m, dim, dim))
    cross = attention_flops(batch * num_heads, tokens, m, head_dim) + attention_flops(batch * num_heads, m, tokens, head_dim)
    return {"core": cross + meta_projections, "proj": batch * qkv_out_flops(tokens, dim)}


def lemevit_check(grid: tuple[int, int], dim: int, num_heads: int, m: int, **_) -> str | None:
    if grid[0] * grid[1] < 2:
        return f"lemevit: the image->meta scale log_N(m) needs N >= 2 tokens, got a {grid[0]}x{grid[1]} grid"
    return None


SPEC = register(
    AttentionSpec(
        name="lemevit",
        summary="dual cross-attention: image tokens read m learnable meta tokens, the meta tokens read the image",
        paper="Jiang et al. 2024, LeMeViT: Efficient Vision Transformer with Learnable Meta Tokens (IJCAI), "
        "arXiv 2405.09789",
        complexity="O(N·m·C)",
        scaling="linear",
        factory=DualCrossAttention,
        flops_fn=lemevit_flops,
        knobs={
            "m": Knob(OFFICIAL_META_TOKENS, "number of learnable meta tokens (16 in every released LeMeViT; the "
                      "image->meta softmax scale is log_N(m)/sqrt(C))", low=1, high=1_048_576),
        },
        check_fn=lemevit_check,
        state_dict_compat=(
            "ViTAE-Transformer/LeMeViT models/lemevit.py @ 1b48783, DualCrossAttention (a block's `attn.`): keys "
            "qkv1.*, qkv2.*, proj_x.*, proj_c.*; plus meta_tokens (m, C), the meta tokens entering the block "
            "(the model's `meta_tokens` before its first block)"
        ),
    )
)
