"""Focused linear attention (FLatten Transformer, Han et al., ICCV 2023).

Follows the official `FocusedLinearAttention` (LeapLabTHU/FLatten-Transformer,
`models/flatten_swin.py`) with its window equal to the whole grid, so the layer is global:

    K  <- K + P                                   (learnable positional encoding, one per position)
    φ(x) = ‖x'‖ · x'^p / ‖x'^p‖,  x' = (ReLU(x) + 1e-6) / softplus(σ)   (over the full C, per token)
    out  = φ(Q) (φ(K)ᵀ V / N) / (φ(Q) · mean φ(K) + 1e-6)               (per head)
    y    = proj(out + DWC_k×k(V))                  (one d-channel kernel shared by all heads)

The 1/N inside the state and the mean in the normaliser cancel; the official code keeps them for
fp16 range, and so does this one. For p > 6 the feature map divides by the row maximum before
the power, as the later official revision does; the direction, hence the result, is unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_tokens, dwc_flops, matmul_flops, merge_heads, phase, qkv_out_flops, split_heads
from ._registry import AttentionSpec, Knob, register

FEATURE_EPS = 1e-6  # keeps ReLU features strictly positive so the norms never vanish
NORMALISER_EPS = 1e-6
SAFE_POWER = 6  # above this, scale rows to max 1 before the power to avoid overflow


class FocusedLinearAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        focusing_factor: int = 3,
        kernel_size: int = 5,
    ):
        super().__init__()
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.grid = grid
        self.focusing_factor = focusing_factor
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.scale = nn.Parameter(torch.zeros(1, 1, dim))
        self.positional_encoding = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim))

    def feature_map(self, x: Tensor) -> Tensor:
        """φ_p over the full channel vector of each token: sharpen the direction, keep the norm."""
        x = (F.relu(x) + FEATURE_EPS) / F.softplus(self.scale)
        norm = x.norm(dim=-1, keepdim=True)
        if self.focusing_factor > SAFE_POWER:
            x = x / x.amax(dim=-1, keepdim=True)
        powered = x**self.focusing_factor
        return powered / powered.norm(dim=-1, keepdim=True) * norm

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, tokens, _ = x.shape
        with phase("qkv"):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        with phase("core"):
            q = self.feature_map(q)
            k = self.feature_map(k + self.positional_encoding)
            q, k, v = (split_heads(t, self.num_heads) for t in (q, k, v))
            normaliser = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + NORMALISER_EPS)
            state = (k.transpose(-2, -1) * tokens**-0.5) @ (v * tokens**-0.5)
            out = (q @ state) * normaliser
        with phase("dwc"):
            # Heads fold into the batch so one d-channel kernel serves all of them.
            head_maps = v.reshape(batch * self.num_heads, *self.grid, -1).permute(0, 3, 1, 2)
            local = self.dwc(head_maps).reshape(batch, self.num_heads, -1, tokens).transpose(-2, -1)
            out = merge_heads(out + local)
        with phase("proj"):
            return self.proj(out)


def focused_flops(
    batch: int, grid: tuple[int, int], dim: int, num_heads: int, kernel_size: int, **_
) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    head_dim = dim // num_heads
    per_head = (
        matmul_flops(tokens, head_dim, 1)  # φ(q) · mean φ(k)
        + matmul_flops(head_dim, tokens, head_dim)  # φ(K)ᵀ V
        + matmul_flops(tokens, head_dim, head_dim)  # φ(Q) S
    )
    return {
        "core": batch * num_heads * per_head + dwc_flops(batch, tokens, dim, kernel_size),
        "proj": batch * qkv_out_flops(tokens, dim),
    }


def focused_check(
    grid: tuple[int, int], dim: int, num_heads: int, focusing_factor: int, kernel_size: int, **_
) -> str | None:
    if kernel_size % 2 == 0:
        return f"focused: kernel_size must be a positive odd number (same-size DWC), got {kernel_size}"
    return None


SPEC = register(
    AttentionSpec(
        name="focused",
        summary="focused linear attention: ReLU power feature map, mean-normalised, kxk DWC shared by heads",
        paper="Han et al. 2023, FLatten Transformer (ICCV), arXiv 2308.00442",
        complexity="O(N·C·d)",
        scaling="linear",
        factory=FocusedLinearAttention,
        flops_fn=focused_flops,
        knobs={
            "focusing_factor": Knob(3, "power p of the focused feature map", low=1, high=16),
            "kernel_size": Knob(5, "side of the depthwise conv on V (one kernel shared across heads)", low=1, high=63),
        },
        check_fn=focused_check,
        state_dict_compat=(
            "LeapLabTHU/FLatten-Transformer flatten_swin.FocusedLinearAttention with window_size=grid: "
            "keys qkv.*, proj.*, dwc.*, scale, positional_encoding"
        ),
    )
)
