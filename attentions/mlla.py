"""MLLA's token mixer: linear attention with LePE and RoPE in a Mamba-like gated block (Han et al., NeurIPS 2024).

"Demystify Mamba in Vision: A Linear Attention Perspective", arXiv 2405.16605. Follows LeapLabTHU/MLLA
`models/mlla.py` (mirror HEAD 66b6d29; the file last changed in 5a17196): classes `LinearAttention` and `RoPE`, and
the token-mixer path of `MLLABlock`. With SiLU σ, φ(x) = elu(x) + 1 and X (B, N, C) the block's normalised input:

    G = σ(act_proj(X))                                    gate
    U = σ(DWC3×3(in_proj(X)))                             the attention's input; also its values, V = U
    Q, K = φ(qk(U))                                       (the official qk Linear, C -> 2C, with bias)
    Q~, K~ = RoPE(Q), RoPE(K)                             on the full C, before the head split
    per head: O = Q~ (K~ᵀ V / N) / (Q · mean_N(K) + 1e-6)     (RoPE in the numerator only)
    Y = out_proj((merge(O) + LePE3×3(V)) ⊙ G)

RoPE (2-D, base 10000, no parameters): channels (2p, 2p+1) form pair p, rotated as one complex number by i·θ_p
for p < C/4 and by j·θ_{p-C/4} otherwise, θ_t = 10000^(-t/(C/4)), for the token at row i, column j. It needs
C % 4 == 0; the head width may be odd, since the rotation acts before the head split.

What is included: the block's mixer path from after `norm1` to before the residual (act_proj, in_proj, dwc, the
attention, out_proj), so the layer has its own value and output projections like the other mechanisms. Not
included: cpe1/cpe2 (the block's conv position encodings), norm1/norm2, the MLP and the residuals.

Changed to fit the (B, N, C) -> (B, N, C) interface on an (H, W) grid: the official forward takes h = w = √N, so it
runs on square grids only; here rows and columns come from the grid, and the rotation table is built for (H, W), as
the official RoPE already does from input_resolution. The official RoPE casts to float32 and multiplies complex
numbers (there is no bfloat16 complex type); here the same rotation is written in real arithmetic in the input's
dtype, equal in float32, and float64 stays float64.

State dict: `attn.*` is the official LinearAttention's (qk.*, lepe.*, rope.rotations (H, W, C/2, 2)); the rest
carries MLLABlock's names (act_proj.*, in_proj.*, dwc.*, out_proj.*), so an official block's state dict minus
cpe1.*, cpe2.*, norm1.*, norm2.*, mlp.* loads with strict=True.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    check_tokens,
    dwc_flops,
    matmul_flops,
    merge_heads,
    phase,
    split_heads,
)
from ._registry import AttentionSpec, register

ROPE_BASE = 10000
NORMALISER_EPS = 1e-6


class RoPE(nn.Module):
    """2-D rotary position embedding over a (H, W) grid; `rotations` (H, W, C/2, 2) holds (cos, sin) per pair."""

    def __init__(self, grid: tuple[int, int], dim: int, base: float = ROPE_BASE):
        super().__init__()
        freqs = dim // 4  # per axis
        theta = 1 / (base ** (torch.arange(freqs) / freqs))
        rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
        angles = torch.cat([rows[..., None] * theta, cols[..., None] * theta], dim=-1)  # (H, W, C/2)
        self.register_buffer("rotations", torch.stack([angles.cos(), angles.sin()], dim=-1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C) tokens, row-major on the grid -> the same, each channel pair rotated by its position's angle."""
        cos, sin = self.rotations.to(x.dtype).flatten(0, 1).unbind(-1)  # (N, C/2) each
        even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
        return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


class MllaLinearAttention(nn.Module):
    """The official LinearAttention: V is the input itself, Q and K from one qk Linear, plus LePE."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.qk = nn.Linear(dim, 2 * dim)
        self.lepe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.rope = RoPE(grid, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, channels = x.shape
        with phase("mlla.qk"):
            q, k = (F.elu(t) + 1.0 for t in self.qk(x).chunk(2, dim=-1))
        with phase("mlla.rope"):
            q_rope, k_rope = (split_heads(self.rope(t), self.num_heads) for t in (q, k))
        with phase("mlla.attend"):
            q, k, v = (split_heads(t, self.num_heads) for t in (q, k, x))
            normaliser = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + NORMALISER_EPS)
            state = (k_rope.transpose(-2, -1) * tokens**-0.5) @ (v * tokens**-0.5)  # (B, h, d, d)
            out = merge_heads((q_rope @ state) * normaliser)
        with phase("mlla.lepe"):
            v_map = x.transpose(1, 2).reshape(batch, channels, *self.grid)
            return out + self.lepe(v_map).flatten(2).transpose(1, 2)


class MllaMixer(nn.Module):
    """MLLABlock's token mixer: gate, in_proj -> DWC -> SiLU, linear attention, gated out_proj."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        self.grid = grid
        self.in_proj = nn.Linear(dim, dim)
        self.act_proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.attn = MllaLinearAttention(dim, num_heads, grid)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, _, channels = x.shape
        with phase("qkv"):
            gate = F.silu(self.act_proj(x))
            u = self.in_proj(x)
        with phase("mlla.dwc"):
            u = F.silu(self.dwc(u.transpose(1, 2).reshape(batch, channels, *self.grid))).flatten(2).transpose(1, 2)
        out = self.attn(u)
        with phase("proj"):
            return self.out_proj(out * gate)


def mlla_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, **_) -> dict[str, int]:
    """proj: act_proj, in_proj, qk (C -> 2C), out_proj. core: the two 3×3 depthwise convs and, per head, the
    normaliser Q·mean(K), the d×d state K~ᵀV and the read-out Q~·state."""
    tokens, head_dim = grid[0] * grid[1], dim // num_heads
    per_head = matmul_flops(tokens, head_dim, 1) + matmul_flops(head_dim, tokens, head_dim) + matmul_flops(
        tokens, head_dim, head_dim
    )
    return {
        "core": 2 * dwc_flops(batch, tokens, dim, 3) + batch * num_heads * per_head,
        "proj": batch * (3 * matmul_flops(tokens, dim, dim) + matmul_flops(tokens, dim, 2 * dim)),
    }


def mlla_check(grid: tuple[int, int], dim: int, num_heads: int, **_) -> str | None:
    if dim % 4:
        return f"mlla: RoPE gives each grid axis dim/4 channel pairs, so dim must be a multiple of 4, got {dim}"
    return None


SPEC = register(
    AttentionSpec(
        name="mlla",
        summary="MLLA token mixer: gated ELU+1 linear attention with 2-D RoPE and LePE, after in_proj + 3×3 DWC",
        paper="Han et al. 2024, Demystify Mamba in Vision: A Linear Attention Perspective (NeurIPS), "
        "arXiv 2405.16605",
        complexity="O(N·C·d)",
        scaling="linear",
        factory=MllaMixer,
        flops_fn=mlla_flops,
        check_fn=mlla_check,
        state_dict_compat=(
            "LeapLabTHU/MLLA models/mlla.py @ 66b6d29: `attn.*` = LinearAttention (qk.*, lepe.*, rope.rotations); "
            "act_proj.*, in_proj.*, dwc.*, out_proj.* = MLLABlock's (its cpe1/cpe2, norm1/norm2, mlp not included)"
        ),
    )
)
