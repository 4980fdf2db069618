"""Contract-and-Broadcast Self-Attention (Wen et al., NeurIPS 2025, arXiv 2509.16875).

Follows the official `CBSA` (QishuaiWen/CBSA, `CBSA_image_classification/attn_layers.py`). One
bias-free projection W serves as query, key and value (CRATE style). Per head, with s = d^-1/2:

    Z0 = pool_√m×√m(W)                     representatives, pooled at full width then split
    A  = softmax over tokens(s·Z0 Wᵀ)      contraction map, (m, N): each row sums to 1
    Z  = Z0 + step_rep · A W               contraction step
    Z~ = softmax(s·Z Zᵀ) Z                 interaction among the m representatives
    y  = to_out(step_x · Aᵀ Z~)            broadcast through the transposed map (not renormalised)

Difference from the official forward: it pools `w[:, :-1]`, i.e. drops the last of its N
tokens, which assumes one extra (cls) token and a square grid, and it hard-codes m = 64. Here
every input token is a grid token, all of them are pooled on the (H, W) grid, and m is a knob.
Parameter names and shapes match (`proj`, `step_x`, `step_rep`, `to_out`), so its checkpoints
load with strict=True when heads·dim_head = dim, the only case the official forward runs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_tokens, matmul_flops, merge_heads, phase, split_heads, square_side
from ._registry import AttentionSpec, Knob, register


class CBSA(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], m: int = 64):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.pool_side = square_side(m)
        if self.pool_side is None:
            raise ValueError(f"cbsa: m={m} is not a perfect square")
        self.scale = (dim // num_heads) ** -0.5
        self.proj = nn.Linear(dim, dim, bias=False)
        self.step_x = nn.Parameter(torch.randn(num_heads, 1, 1))
        self.step_rep = nn.Parameter(torch.randn(num_heads, 1, 1))
        self.to_out = nn.Linear(dim, dim)
        # Shared by the contraction and the interaction; a module so tests can hook the maps.
        self.attend = nn.Softmax(dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, _, channels = x.shape
        with phase("qkv"):
            w = self.proj(x)
        with phase("core"):
            w_map = w.transpose(1, 2).reshape(batch, channels, *self.grid)
            reps = F.adaptive_avg_pool2d(w_map, self.pool_side).flatten(2).transpose(1, 2)
            reps = split_heads(reps, self.num_heads)
            w = split_heads(w, self.num_heads)
            contraction = self.attend((reps @ w.transpose(-2, -1)) * self.scale)
            reps = reps + self.step_rep * (contraction @ w)
            mixed = self.attend((reps @ reps.transpose(-2, -1)) * self.scale) @ reps
            out = merge_heads(self.step_x * (contraction.transpose(-2, -1) @ mixed))
        with phase("proj"):
            return self.to_out(out)


def cbsa_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, m: int, **_) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    # Summed over heads (h·d = C): contraction logits, contraction step, broadcast; then interaction.
    token_terms = 3 * matmul_flops(m, dim, tokens)
    interaction = 2 * matmul_flops(m, dim, m)
    return {
        "core": batch * (token_terms + interaction),
        "proj": batch * 2 * matmul_flops(tokens, dim, dim),
    }


def cbsa_check(grid: tuple[int, int], dim: int, num_heads: int, m: int, **_) -> str | None:
    if m > grid[0] * grid[1]:
        return f"cbsa: m={m} representatives for N={grid[0] * grid[1]} tokens; m must be at most N"
    if square_side(m) is None:
        return f"cbsa: m={m} is not a perfect square (representatives are pooled to a √m×√m grid)"
    return None


SPEC = register(
    AttentionSpec(
        name="cbsa",
        summary="contract tokens into m pooled representatives, let them interact, broadcast back",
        paper="Wen et al. 2025, Contract-and-Broadcast Self-Attention (NeurIPS), arXiv 2509.16875",
        complexity="O(N·m·C + m²·C)",
        scaling="linear",
        factory=CBSA,
        flops_fn=cbsa_flops,
        knobs={"m": Knob(64, "number of representatives, a perfect square (pooled to √m×√m), at most N", low=1,
                        high=1_048_576)},
        check_fn=cbsa_check,
        state_dict_compat=(
            "QishuaiWen/CBSA attn_layers.CBSA with heads=num_heads, dim_head=dim/num_heads: "
            "keys proj.weight, step_x, step_rep, to_out.*"
        ),
    )
)
