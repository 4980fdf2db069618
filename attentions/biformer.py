"""BiFormer's bi-level routing attention (BRA): tokens attend to the tokens of their region's top-k regions.

Zhu, Wang, Ke, Li, Lau, "BiFormer: Vision Transformer with Bi-Level Routing Attention", CVPR 2023,
arXiv 2303.08810. Follows `BiLevelRoutingAttention` of rayleizhu/BiFormer `ops/bra_legacy.py` (mirror at
1697bbb) with the settings every BiFormer-T/S/B block gives it: qk_dim = dim, qk_scale None,
param_routing = diff_routing = soft_routing = False, kv_downsample_mode 'identity', param_attention 'qkvo',
side_dwconv 5, topk per stage 1, 4, 16 (the last stage's -2 swaps BRA for a plain `AttentionLePE`, a
different module, so topk here is 1..n_win²).

The (padded) map of Hp×Wp tokens is cut into n_win×n_win regions of (Hp/n_win)×(Wp/n_win) tokens, S² = n_win²
regions in row-major order, tokens row-major inside each region. With s = C^-½ (qk_dim^-½ with qk_dim = C,
as the official module scales; not head_dim^-½):

    q, k, v  = split(qkv.qkv(x))                    one Linear C -> 3C; heads take contiguous channel blocks
    Q_r, K_r = region means of q, k                  (B, S², C), detached (the routing is not differentiable)
    A_r      = (s·Q_r) K_rᵀ                          (B, S², S²) region affinity
    I_r      = topk(A_r, k)                          (B, S², k) routed regions, best first
    K_g, V_g = k, v of the regions I_r[r], concatenated: k·(Hp·Wp/S²) keys per query region r
    O        = softmax(s·q K_gᵀ) V_g                 per head, per region
    y        = wo(O + lepe(v))                       lepe: depthwise side_dwconv² Conv2d on v over the whole map

The routing weights softmax(topk logits) that the official router also returns only scale values under
soft_routing, which is off, so they are not computed. The attention runs through scaled_dot_product_attention
with scale = s (the official code writes out the matmuls and softmax; the same function).

Changes for the (B, N, C) -> (B, N, C) interface: the official module takes and returns NHWC maps; here N =
H·W tokens are row-major on the (H, W) grid, i.e. exactly x.view(B, H, W, C) of the official input. A grid
whose sides are not multiples of n_win is handled as the official auto_pad=True does (BiFormer's detection
and segmentation backbones): the map is zero-padded at the bottom/right before qkv, the padded tokens take part
in routing, attention and the lepe conv, and the output is cropped after wo. On grids divisible by n_win this
equals auto_pad=False exactly. The state dict matches the official module's (qkv.qkv.*, lepe.*, wo.*; its
router, gather and pooling hold no state), so its weights load with strict=True.

Profiler phases: `qkv` (pad, Linear, region partition), `biformer.route` (region means, affinity, top-k),
`biformer.gather`, `biformer.attend`, `biformer.lepe`, `proj` (wo, reverse partition, crop).

FLOPs (Np = Hp·Wp, S² = n_win², a = Np/S² tokens per region): core = region affinity 2·B·S⁴·C
+ token attention 4·B·Np·k·a·C + lepe 2·B·Np·C·side_dwconv²; proj = 8·B·Np·C² (qkv and wo run over the
padded map).
Region means, top-k and the gather are not matmuls and are not counted.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    attention_flops,
    check_tokens,
    dwc_flops,
    matmul_flops,
    phase,
    qkv_out_flops,
)
from ._registry import AttentionSpec, Knob, register
from .window import padded_grid

MAX_N_WIN = 4096


class QKVLinear(nn.Module):
    """The official wrapper's one Linear (dim -> qk_dim + qk_dim + dim), so its key is `qkv.qkv.*`."""

    def __init__(self, dim: int, qk_dim: int):
        super().__init__()
        self.qkv = nn.Linear(dim, 2 * qk_dim + dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.qkv(x)


def to_regions(maps: Tensor, n_win: int) -> Tensor:
    """(B, H, W, C) -> (B, n_win², H/n_win·W/n_win, C): regions row-major, tokens row-major inside each."""
    batch, height, width, channels = maps.shape
    rh, rw = height // n_win, width // n_win
    regions = maps.view(batch, n_win, rh, n_win, rw, channels).permute(0, 1, 3, 2, 4, 5)
    return regions.reshape(batch, n_win * n_win, rh * rw, channels)


def from_regions(regions: Tensor, n_win: int, height: int, width: int) -> Tensor:
    """The inverse of `to_regions`: (B, n_win², H/n_win·W/n_win, C) -> (B, H, W, C)."""
    batch, _, _, channels = regions.shape
    rh, rw = height // n_win, width // n_win
    maps = regions.view(batch, n_win, n_win, rh, rw, channels).permute(0, 1, 3, 2, 4, 5)
    return maps.reshape(batch, height, width, channels)


class BiLevelRoutingAttention(nn.Module):
    """Bi-level routing attention over an (H, W) grid: `n_win`² regions, each attending to its `topk` regions.

    Args:
        dim: channels C (also the official qk_dim).
        num_heads: heads; each takes C/num_heads contiguous channels of q, k and v.
        grid: (H, W); tokens are row-major on it.
        n_win: regions per side; the map is zero-padded to multiples of n_win (official auto_pad).
        topk: regions each region routes to, 1..n_win².
        side_dwconv: kernel of the depthwise LCE conv on v (odd), 0 for none.
    """

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], n_win: int = 7, topk: int = 4,
                 side_dwconv: int = 5):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.grid = grid
        self.n_win = n_win
        self.topk = topk
        self.padded = padded_grid(grid, n_win)
        self.scale = dim ** -0.5  # qk_dim ** -0.5 with qk_dim = dim, as the official module sets it
        # Registered in the official order (lepe, qkv, wo), so the state dicts list their keys alike.
        self.lepe = (
            nn.Conv2d(dim, dim, kernel_size=side_dwconv, padding=side_dwconv // 2, groups=dim)
            if side_dwconv > 0 else None
        )
        self.qkv = QKVLinear(dim, dim)
        self.wo = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, _, channels = x.shape
        heads, n_win = self.num_heads, self.n_win
        height, width = self.padded
        with phase("qkv"):
            maps = x.reshape(batch, *self.grid, channels)
            pad_h, pad_w = height - self.grid[0], width - self.grid[1]
            if pad_h or pad_w:
                maps = F.pad(maps, (0, 0, 0, pad_w, 0, pad_h))
            qkv_maps = self.qkv(maps)  # (B, Hp, Wp, 3C)
            qkv = to_regions(qkv_maps, n_win)  # (B, S², a, 3C)
            q, kv = qkv[..., :channels], qkv[..., channels:]
            regions, area = qkv.shape[1], qkv.shape[2]
        with phase("biformer.route"):
            q_region = q.mean(2).detach()
            k_region = kv[..., :channels].mean(2).detach()
            affinity = (q_region * self.scale) @ k_region.transpose(-2, -1)  # (B, S², S²)
            routed = torch.topk(affinity, k=self.topk, dim=-1).indices  # (B, S², k)
        with phase("biformer.gather"):
            batch_index = torch.arange(batch, device=x.device).view(batch, 1, 1)
            kv = kv[batch_index, routed]  # (B, S², k, a, 2C)
            keys = self.topk * area
            k = kv[..., :channels].reshape(batch * regions, keys, heads, channels // heads).transpose(1, 2)
            v = kv[..., channels:].reshape(batch * regions, keys, heads, channels // heads).transpose(1, 2)
            q = q.reshape(batch * regions, area, heads, channels // heads).transpose(1, 2)
        with phase("biformer.attend"):
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # (B·S², h, a, d)
            out = out.transpose(1, 2).reshape(batch, regions, area, channels)
            out = from_regions(out, n_win, height, width)
        if self.lepe is not None:
            with phase("biformer.lepe"):
                v_map = qkv_maps[..., 2 * channels:].permute(0, 3, 1, 2)
                out = out + self.lepe(v_map).permute(0, 2, 3, 1)
        with phase("proj"):
            out = self.wo(out)[:, : self.grid[0], : self.grid[1]]
            return out.reshape(batch, self.grid[0] * self.grid[1], channels)


def biformer_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, n_win: int, topk: int,
                   side_dwconv: int, **_) -> dict[str, int]:
    height, width = padded_grid(grid, n_win)
    tokens = height * width
    regions = n_win * n_win
    area = tokens // regions
    routing = batch * matmul_flops(regions, dim, regions)
    attend = attention_flops(batch * regions * num_heads, area, topk * area, dim // num_heads)
    lepe = dwc_flops(batch, tokens, dim, side_dwconv) if side_dwconv > 0 else 0
    return {"core": routing + attend + lepe, "proj": batch * qkv_out_flops(tokens, dim)}


def biformer_check(grid: tuple[int, int], dim: int, num_heads: int, n_win: int, topk: int, side_dwconv: int,
                   **_) -> str | None:
    if topk > n_win * n_win:
        return f"biformer: topk={topk} exceeds the n_win²={n_win * n_win} regions it routes among"
    if side_dwconv > 0 and side_dwconv % 2 == 0:
        return f"biformer: side_dwconv={side_dwconv} must be odd (padding k//2 keeps the map size) or 0 (no lepe)"
    return None


SPEC = register(
    AttentionSpec(
        name="biformer",
        summary="bi-level routing attention: n_win² regions, region affinity top-k, token attention over the "
        "k routed regions, plus a depthwise LCE conv on V",
        paper="Zhu et al. 2023, BiFormer: Vision Transformer with Bi-Level Routing Attention (CVPR), "
        "arXiv 2303.08810",
        complexity="O(n_win⁴·C + N·k·N/n_win²·C)",
        scaling="quadratic",
        factory=BiLevelRoutingAttention,
        flops_fn=biformer_flops,
        knobs={
            "n_win": Knob(7, "regions per side (n_win² regions of H/n_win × W/n_win tokens); the map is "
                             "zero-padded to multiples of n_win as the official auto_pad does",
                          low=1, high=MAX_N_WIN),
            "topk": Knob(4, "regions each region routes to, 1..n_win² (BiFormer-T/S/B: 1, 4, 16 by stage)",
                         low=1, high=MAX_N_WIN * MAX_N_WIN),
            "side_dwconv": Knob(5, "kernel of the depthwise LCE conv on V (odd), 0 for none", low=0, high=63),
        },
        check_fn=biformer_check,
        state_dict_compat=(
            "rayleizhu/BiFormer ops/bra_legacy.py BiLevelRoutingAttention @ 1697bbb (qk_dim=dim, "
            "param_attention='qkvo', param_routing=False, kv_downsample_mode='identity', side_dwconv as given): "
            "keys qkv.qkv.*, lepe.* (absent with side_dwconv=0), wo.*"
        ),
    )
)
