"""MaxViT grid attention: sparse, dilated global attention over a fixed G×G grid of tokens.

The map is cut into G×G cells of (H/G)×(W/G) tokens; one group takes the token at the same offset
(a, b) in every cell, i.e. {(i·H/G + a, j·W/G + b) : i, j < G}, so each group spans the whole image
with stride H/G. This is the grid partition of google-research/maxvit `maxvit/models/maxvit.py`
(and timm's `grid_partition`). Attention runs inside each group with a relative position bias over
the G×G positions ((2G-1)² entries per head, Swin's table layout and key names).

A grid side larger than the short side of the map is clamped to it (as Swin clamps its window), and a
map that is not a multiple of G is zero-padded at the bottom/right and cropped after (as Swin's
detection backbone pads windows), so every resolution runs.

Profiler phases: `qkv` includes the grid partition, `core` the bias gather and attention, `proj`
the output Linear and the reverse partition.

FLOPs (Np = the padded token count): core = Q·Kᵀ and A·V inside every group of G² tokens
= 4·B·Np·G²·C; proj = 8·B·Np·C² (the projections run on the padded groups).
"""
from __future__ import annotations

from torch import Tensor

from ._registry import AttentionSpec, Knob, register
from .window import GroupedBiasAttention, clamped_side, grouped_flops


class GridAttention(GroupedBiasAttention):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], window: int = 7):
        super().__init__(dim, num_heads, grid, side=clamped_side(grid, window))

    def _partition(self, maps: Tensor) -> Tensor:
        batch, height, width, channels = maps.shape
        g = self.side
        cells = maps.view(batch, g, height // g, g, width // g, channels).permute(0, 2, 4, 1, 3, 5)
        return cells.reshape(batch, -1, g * g, channels)  # groups ordered by offset (a, b)

    def _reverse(self, groups: Tensor) -> Tensor:
        batch, _, _, channels = groups.shape
        height, width = self.padded
        g = self.side
        cells = groups.view(batch, height // g, width // g, g, g, channels).permute(0, 3, 1, 4, 2, 5)
        return cells.reshape(batch, height, width, channels)


def grid_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, window: int) -> dict[str, int]:
    return grouped_flops(batch, grid, dim, num_heads, clamped_side(grid, window))


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
        knobs={"window": Knob(7, "grid side G: each group holds G×G tokens spread over the whole map; clamped "
                                 "to min(H, W), the map zero-padded to a multiple of G", low=1, high=16_384)},
        effective_fn=lambda grid, window, **_: {"window": clamped_side(grid, window)},
        state_dict_compat="Swin-style names: relative_position_bias_table, relative_position_index, "
        "qkv.*, proj.*",
    )
)
