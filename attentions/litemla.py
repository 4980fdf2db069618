"""EfficientViT's LiteMLA (Cai et al., ICCV 2023): ReLU linear attention over multi-scale q/k/v tokens.

Paper: Cai, Li, Gan, Han, "EfficientViT: Multi-Scale Linear Attention for High-Resolution Dense Prediction",
ICCV 2023, arXiv 2205.14756. Official: mit-han-lab/efficientvit `efficientvit/models/nn/ops.py` class `LiteMLA`
(mirror de7d773, file last changed in 7e00adc); timm `timm/models/efficientvit_mit.py` class `LiteMLA` (mirror
aa4b5850, file last changed in c0e3d24f). Both build the same modules under the same names.

On the (H, W) map of the tokens, with h heads of d channels (C = h·d) and S aggregation scales k_1..k_S:

    QKV   = Conv1×1(X)                                (3C channels; no bias, no norm, no activation)
    QKV_s = GConv1×1_{3h groups}(DWConv_{k_s×k_s}(QKV))   s = 1..S   (no bias; each group is one head's q, k or v)
    heads = [QKV, QKV_1, .., QKV_S] cut into (S+1)·h groups of 3d channels, each [q | k | v] of one head
    out   = ReLU(Q) [ReLU(K)ᵀ V, ReLU(K)ᵀ 1] -> numerator / (normaliser + ε)     per head, in float32 or wider
    Y     = BatchNorm(Conv1×1((S+1)·C -> C)(out))     (no bias, no activation)

The channel layout is the official one: head j of the concatenation holds q, k and v as consecutive d-channel
blocks (not three C-channel blocks), so official checkpoints mean the same thing here. The attention runs with
autocast off and q, k, v promoted to at least float32, with the normaliser ε of the authors' code (1e-15; timm
uses 1e-5, the `eps` knob sets either); the result is cast back to the input dtype, as both official versions do.
The d×(d+1) state reads the numerator and the normaliser out in one product (V padded with a column of ones).
Official models use at most one scale: (5,) in the EfficientViT backbones, (3,) in the EfficientViT-SAM "att@3"
stages (efficientvit/models/efficientvit/backbone.py), () in some DC-AE blocks; the `kernel_size` knob gives each
(5, 3, or 0 for no aggregation branch, which leaves h heads instead of 2h).

Fitted to the (B, N, C) -> (B, N, C) interface: tokens are read row-major as a (B, C, H, W) map and written back
the same way; in_channels = out_channels = dim; the official head width `dim` (8 by default; 16 in EfficientViT-B0/B1,
32 in B2/B3) is our dim // num_heads, so heads = num_heads (the official heads = in_channels // dim · heads_ratio).
Official paths left out: the ReLU *quadratic* form the authors' code switches to when H·W <= d (the same function
up to ε, at a cost quadratic in N), and a float64 input stays float64 here (timm's `.float()` would narrow it).
The BatchNorm after the output projection is a real BatchNorm2d: in train mode it normalises with batch statistics
(so batch elements are not independent and running statistics move on every call) and in eval mode with its running
statistics; the harness times the module in whichever mode it is given.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_tokens, dwc_flops, matmul_flops, phase
from ._registry import AttentionSpec, Knob, register

OFFICIAL_EPS = 1e-15  # mit-han-lab LiteMLA; timm's LiteMLA default is 1e-5


def scales_of(kernel_size: int) -> tuple[int, ...]:
    """The official `scales` tuple for our knob: (k,), or () for kernel_size 0 (no aggregation branch)."""
    return (kernel_size,) if kernel_size else ()


class ConvNorm(nn.Module):
    """A 1×1 convolution without bias, then BatchNorm2d or nothing: timm's ConvNormAct keys (conv.*, norm.*)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels) if norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


def relu_linear_attention(q: Tensor, k: Tensor, v: Tensor, eps: float) -> Tensor:
    """(B, heads, N, d) non-negative q, k and v -> (B, heads, N, d), computed in float32 or wider."""
    dtype = v.dtype
    wide = torch.promote_types(dtype, torch.float32)
    q, k, v = q.to(wide), k.to(wide), v.to(wide)
    state = k.transpose(-1, -2) @ F.pad(v, (0, 1), value=1.0)  # (d, d+1): [Kᵀ V, Kᵀ 1]
    read = q @ state
    return (read[..., :-1] / (read[..., -1:] + eps)).to(dtype)


class LiteMLA(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], kernel_size: int = 5,
                 eps: float = OFFICIAL_EPS):
        super().__init__()
        self.grid = grid
        self.head_dim = dim // num_heads
        self.eps = eps
        kernels = scales_of(kernel_size)
        self.qkv = ConvNorm(dim, 3 * dim, norm=False)
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * dim, 3 * dim, kernel, padding=kernel // 2, groups=3 * dim, bias=False),
                nn.Conv2d(3 * dim, 3 * dim, 1, groups=3 * num_heads, bias=False),
            )
            for kernel in kernels
        )
        self.kernel_func = nn.ReLU()
        self.proj = ConvNorm(dim * (1 + len(kernels)), dim, norm=True)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, tokens, channels = x.shape
        height, width = self.grid
        with phase("qkv"):
            qkv = self.qkv(x.transpose(1, 2).reshape(batch, channels, height, width))
        with phase("litemla.aggregate"):
            multi_scale = torch.cat([qkv, *(branch(qkv) for branch in self.aggreg)], dim=1)
        with phase("litemla.attend"):
            heads = multi_scale.reshape(batch, -1, 3 * self.head_dim, tokens).transpose(-1, -2)
            q, k, v = heads.chunk(3, dim=-1)
            # autocast off where it exists (a meta-device model, built to count costs, has none)
            no_autocast = (torch.autocast(device_type=x.device.type, enabled=False)
                           if x.device.type in ("cpu", "cuda") else contextlib.nullcontext())
            with no_autocast:
                out = relu_linear_attention(self.kernel_func(q), self.kernel_func(k), v, self.eps)
            out = out.transpose(-1, -2).reshape(batch, -1, height, width)
        with phase("proj"):
            return self.proj(out).flatten(2).transpose(1, 2)


def litemla_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, kernel_size: int,
                  **_) -> dict[str, int]:
    tokens, head_dim = grid[0] * grid[1], dim // num_heads
    kernels = scales_of(kernel_size)
    aggregate = sum(
        dwc_flops(batch, tokens, 3 * dim, kernel) + batch * matmul_flops(tokens, head_dim, 3 * dim)  # grouped 1×1
        for kernel in kernels
    )
    per_head = matmul_flops(head_dim, tokens, head_dim + 1) + matmul_flops(tokens, head_dim, head_dim + 1)
    attend = batch * (1 + len(kernels)) * num_heads * per_head
    return {
        "core": aggregate + attend,
        "proj": batch * (matmul_flops(tokens, dim, 3 * dim) + matmul_flops(tokens, (1 + len(kernels)) * dim, dim)),
    }


def litemla_check(grid: tuple[int, int], dim: int, num_heads: int, kernel_size: int, **_) -> str | None:
    if kernel_size and kernel_size % 2 == 0:
        return f"litemla: kernel_size must be odd (a same-size depthwise conv) or 0 (no branch), got {kernel_size}"
    return None


SPEC = register(
    AttentionSpec(
        name="litemla",
        summary="EfficientViT LiteMLA: ReLU linear attention over q/k/v plus 5×5 depthwise-aggregated "
        "multi-scale heads, 1×1 conv projections, BatchNorm after the output conv",
        paper="Cai et al. 2023, EfficientViT: Multi-Scale Linear Attention (ICCV), arXiv 2205.14756",
        complexity="O(N·C·d)",
        scaling="linear",
        factory=LiteMLA,
        flops_fn=litemla_flops,
        knobs={
            "kernel_size": Knob(5, "odd side of the depthwise conv of the multi-scale branch, which adds num_heads "
                                   "heads (official scales=(5,)); 0: no branch", low=0, high=63),
            "eps": Knob(OFFICIAL_EPS, "ε added to the linear-attention normaliser (official 1e-15, timm 1e-5)",
                        low=0.0, high=1.0),
        },
        check_fn=litemla_check,
        state_dict_compat=(
            "timm efficientvit_mit.LiteMLA (and mit-han-lab efficientvit nn/ops.LiteMLA) with in_channels = "
            "out_channels = dim, dim = dim // num_heads, heads = num_heads, scales = (kernel_size,): keys "
            "qkv.conv.weight, aggreg.0.0.weight, aggreg.0.1.weight, proj.conv.weight, proj.norm.* (BatchNorm2d)"
        ),
    )
)
