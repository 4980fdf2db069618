"""MaxViT grid attention: sparse, dilated global attention over a fixed G×G grid of tokens.

The map is cut into G×G cells of (H/G)×(W/G) tokens; one group takes the token at the same offset
(a, b) in every cell, i.e. {(i·H/G + a, j·W/G + b) : i, j < G}, so each group spans the whole image
with stride H/G. This is the grid partition of google-research/maxvit `maxvit/models/maxvit.py`
(and timm's `grid_partition`). Attention runs inside each group with a relative position bias over
the G×G positions ((2G-1)² entries per head, Swin's table layout and key names).

Profiler phases: `qkv` includes the grid partition, `core` the bias gather and attention, `proj`
the output Linear and the reverse partition.

FLOPs: core = Q·Kᵀ and A·V inside every group of G² tokens = 4·B·N·G²·C; proj = 8·B·N·C².
"""
from __future__ import annotations

from torch import Tensor

from ._common import attention_flops, qkv_out_flops
from ._registry import AttentionSpec, Knob, register
from .window import GroupedBiasAttention


class GridAttention(GroupedBiasAttention):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], window: int = 7):
        super().__init__(dim, num_heads, grid, side=window)

    def _partition(self, x: Tensor) -> Tensor:
        batch, _, channels = x.shape
        height, width = self.grid
        g = self.side
        cells = x.view(batch, g, height // g, g, width // g, channels).permute(0, 2, 4, 1, 3, 5)
        return cells.reshape(batch, -1, g * g, channels)  # groups ordered by offset (a, b)

    def _reverse(self, groups: Tensor) -> Tensor:
        batch, _, _, channels = groups.shape
        height, width = self.grid
        g = self.side
        cells = groups.view(batch, height // g, width // g, g, g, channels).permute(0, 3, 1, 4, 2, 5)
        return cells.reshape(batch, height * width, channels)


def grid_check(grid: tuple[int, int], window: int, **_) -> str | None:
    if window < 1:
        return f"window (grid side G) must be >= 1, got {window}"
    height, width = grid
    if height % window or width % window:
        return f"grid {height}x{width} is not divisible by grid side G={window}"
    return None


def grid_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, window: int) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    group_size = window * window
    problems = batch * (tokens // group_size) * num_heads
    return {
        "core": attention_flops(problems, group_size, group_size, dim // num_heads),
        "proj": batch * qkv_out_flops(tokens, dim),
    }


SPEC = register(
    AttentionSpec(
        name="grid",
        summary="MaxViT grid attention: dilated global groups of G×G tokens (stride H/G) with a "
        "relative position bias; FLOPs core = 4·B·N·G²·C, proj = 8·B·N·C²",
        paper="Tu et al. 2022 (MaxViT)",
        complexity="O(N·G²·C)",
        scaling="linear",
        factory=GridAttention,
        flops_fn=grid_flops,
        knobs={"window": Knob(7, "grid side G: each group holds G×G tokens spread over the whole map")},
        check_fn=grid_check,
        state_dict_compat="Swin-style names: relative_position_bias_table, relative_position_index, "
        "qkv.*, proj.*",
    )
)
