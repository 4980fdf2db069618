"""Swin window attention (W-MSA, and SW-MSA when `shift` > 0) with a relative position bias.

Follows microsoft/Swin-Transformer `models/swin_transformer.py`: `WindowAttention` for the
attention itself and `SwinTransformerBlock` for the window clamping, the cyclic shift and the
shifted-window mask (-100 between tokens that came from different image regions). The state dict
matches Swin's `WindowAttention`: relative_position_bias_table ((2w-1)², h), the persistent
relative_position_index buffer (w², w²), qkv.*, proj.*. The shift mask is a non-persistent buffer
because Swin keeps it on the block, not on `WindowAttention`.

A grid that is not a multiple of the window is zero-padded at the bottom/right before the shift
and cropped after, as Swin's detection and segmentation backbones do (see GroupedBiasAttention).

Bias and mask reach the kernel as a float `attn_mask` of scaled_dot_product_attention, so fused
kernels can run. Profiler phases: `qkv` includes the cyclic shift and window partition (done on
the C-channel input, as Swin does), `core` the bias gather and attention, `proj` the output Linear
and the window reverse.

FLOPs (Np = the padded token count): core = Q·Kᵀ and A·V inside every w×w window = 4·B·Np·w²·C;
proj = 8·B·Np·C² (qkv and proj run on the padded windows).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import attention_flops, check_tokens, phase, qkv_out_flops, trunc_normal_
from ._registry import AttentionSpec, Knob, register

SHIFT_MASK_VALUE = -100.0  # Swin's value: large enough to silence a pair, finite in every dtype


def relative_position_index(side: int) -> Tensor:
    """(side², side²) index into a ((2·side-1)², h) table, row-major tokens, Swin's layout."""
    coords = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")).flatten(1)
    delta = coords[:, :, None] - coords[:, None, :] + (side - 1)  # (2, T, T), each in [0, 2·side-2]
    return delta[0] * (2 * side - 1) + delta[1]


def padded_grid(grid: tuple[int, int], side: int) -> tuple[int, int]:
    """The grid rounded up to whole multiples of `side` (padding goes at the bottom/right)."""
    return tuple(-(-length // side) * side for length in grid)  # type: ignore[return-value]


def clamped_side(grid: tuple[int, int], side: int) -> int:
    """Swin's clamp: a window (or grid side) that covers the short side of the map becomes that side."""
    return min(grid) if min(grid) <= side else side


class GroupedBiasAttention(nn.Module, ABC):
    """Attention inside disjoint groups of side×side tokens with a learned relative position bias.

    A map that is not a multiple of `side` is zero-padded at the bottom/right before grouping and
    cropped after, as Swin's detection and segmentation backbones do (their blocks call F.pad);
    padded tokens take part in the attention exactly as there. Subclasses decide which tokens of the
    padded map form a group (`_partition` / `_reverse`) and may add a mask.
    """

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], side: int):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.side = side
        self.padded = padded_grid(grid, side)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * side - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(side))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    @abstractmethod
    def _partition(self, maps: Tensor) -> Tensor:
        """Padded maps (B, Hp, Wp, C) -> (B, groups, side², C)."""

    @abstractmethod
    def _reverse(self, groups: Tensor) -> Tensor:
        """(B, groups, side², C) -> padded maps (B, Hp, Wp, C), the inverse of `_partition`."""

    def _group_mask(self) -> Tensor | None:
        """Optional additive mask (groups, side², side²), added on top of the bias."""
        return None

    def _bias(self) -> Tensor:
        tokens = self.side * self.side
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(tokens, tokens, self.num_heads).permute(2, 0, 1)  # (h, T, T)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, _, channels = x.shape
        heads = self.num_heads
        with phase("qkv"):
            maps = x.view(batch, *self.grid, channels)
            pad_h, pad_w = self.padded[0] - self.grid[0], self.padded[1] - self.grid[1]
            if pad_h or pad_w:
                maps = F.pad(maps, (0, 0, 0, pad_w, 0, pad_h))
            groups = self._partition(maps)
            num_groups, tokens = groups.shape[1], groups.shape[2]
            qkv = self.qkv(groups).view(batch, num_groups, tokens, 3, heads, channels // heads)
            q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (B, groups, h, T, d)
        with phase("core"):
            bias = self._bias()
            mask = self._group_mask()
            if mask is None:  # one (h, T, T) bias shared by all groups: groups join the batch
                q, k, v = (t.flatten(0, 1) for t in (q, k, v))
                attn_mask = bias
            else:  # the mask differs per group: groups join the heads so it broadcasts over B
                q, k, v = (t.flatten(1, 2) for t in (q, k, v))
                attn_mask = (mask[:, None] + bias).flatten(0, 1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype))
        with phase("proj"):
            out = out.view(batch, num_groups, heads, tokens, -1).transpose(2, 3)
            maps = self._reverse(self.proj(out.reshape(batch, num_groups, tokens, channels)))
            maps = maps[:, : self.grid[0], : self.grid[1]]
            return maps.reshape(batch, self.grid[0] * self.grid[1], channels)


def effective_window(grid: tuple[int, int], window: int, shift: int) -> tuple[int, int]:
    """Swin's clamp: a window that covers the short side becomes that side, with no shift."""
    if min(grid) <= window:
        return min(grid), 0
    return window, shift


class WindowAttention(GroupedBiasAttention):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], window: int = 7, shift: int = 0):
        window, shift = effective_window(grid, window, shift)
        super().__init__(dim, num_heads, grid, side=window)
        self.window = window
        self.shift = shift
        self.register_buffer("shift_mask", self._build_shift_mask() if shift else None, persistent=False)

    def _windows(self, maps: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H/w·W/w, w², C), windows in row-major order."""
        batch, height, width, channels = maps.shape
        w = self.window
        maps = maps.view(batch, height // w, w, width // w, w, channels).permute(0, 1, 3, 2, 4, 5)
        return maps.reshape(batch, -1, w * w, channels)

    def _build_shift_mask(self) -> Tensor:
        """(windows, w², w²): -100 between tokens of one shifted window that came from different regions.

        After rolling by -shift, the last w rows (and columns) hold tokens from two image regions:
        [H-w, H-shift) and the wrapped-around [H-shift, H). Label the 3×3 row/column bands and
        forbid attention across labels.
        """
        height, width = self.padded
        w, s = self.window, self.shift

        def bands(length: int) -> Tensor:
            position = torch.arange(length)
            return (position >= length - w).long() + (position >= length - s).long()

        labels = bands(height)[:, None] * 3 + bands(width)[None, :]
        labels = self._windows(labels[None, :, :, None]).squeeze(-1)[0]  # (windows, w²)
        differs = labels[:, :, None] != labels[:, None, :]
        return torch.zeros(differs.shape).masked_fill(differs, SHIFT_MASK_VALUE)

    def _group_mask(self) -> Tensor | None:
        return self.shift_mask

    def _partition(self, maps: Tensor) -> Tensor:
        if self.shift:
            maps = torch.roll(maps, shifts=(-self.shift, -self.shift), dims=(1, 2))
        return self._windows(maps)

    def _reverse(self, groups: Tensor) -> Tensor:
        batch, _, _, channels = groups.shape
        height, width = self.padded
        w = self.window
        maps = groups.view(batch, height // w, width // w, w, w, channels).permute(0, 1, 3, 2, 4, 5)
        maps = maps.reshape(batch, height, width, channels)
        if self.shift:
            maps = torch.roll(maps, shifts=(self.shift, self.shift), dims=(1, 2))
        return maps


def window_check(grid: tuple[int, int], window: int, shift: int, **_) -> str | None:
    w, s = effective_window(grid, window, shift)
    if s >= w:
        return f"shift {s} must be smaller than window {w}"
    return None


def grouped_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, side: int) -> dict[str, int]:
    """GroupedBiasAttention's FLOPs: attention inside each side×side group of the padded map, whose tokens
    all go through the qkv and output projections."""
    height, width = padded_grid(grid, side)
    tokens = height * width
    group = side * side
    return {
        "core": attention_flops(batch * (tokens // group) * num_heads, group, group, dim // num_heads),
        "proj": batch * qkv_out_flops(tokens, dim),
    }


def window_flops(
    batch: int, grid: tuple[int, int], dim: int, num_heads: int, window: int, shift: int
) -> dict[str, int]:
    return grouped_flops(batch, grid, dim, num_heads, effective_window(grid, window, shift)[0])


SPEC = register(
    AttentionSpec(
        name="window",
        summary="Swin W-MSA / SW-MSA: attention inside w×w windows (optionally cyclically shifted) "
        "with a relative position bias; FLOPs core = 4·B·N·w²·C, proj = 8·B·N·C²",
        paper="Liu et al. 2021 (Swin Transformer)",
        complexity="O(N·w²·C)",
        scaling="linear",
        factory=WindowAttention,
        flops_fn=window_flops,
        knobs={
            "window": Knob(7, "window side w in tokens; clamped to min(H, W) when it covers the short side; "
                           "the grid is zero-padded to whole windows (Swin detection backbone)", low=1, high=16_384),
            "shift": Knob(
                0, "cyclic shift in tokens (Swin: window//2 on odd blocks); forced to 0 when clamped", low=0,
                high=16_384,
            ),
        },
        check_fn=window_check,
        effective_fn=lambda grid, window, shift, **_: dict(zip(("window", "shift"),
                                                              effective_window(grid, window, shift))),
        state_dict_compat="microsoft/Swin-Transformer `WindowAttention`: relative_position_bias_table, "
        "relative_position_index, qkv.*, proj.*",
    )
)
