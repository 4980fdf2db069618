"""What every backbone shares: its spec, the per-block attention plan, and the pre-norm block.

The plan is the single place that decides, for each block, which mechanism runs on which token grid
with which knobs; `check` validates it and the model factories build from it, so the two can never
disagree about a configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import Tensor, nn

import attentions

from ..core.case import Layout

Grid = tuple[int, int]
# (stage, block, side of the stage's square grid) -> knobs for the backbone's own attention
OwnKnobs = Callable[[int, int, int], dict[str, Any]]


@dataclass(frozen=True)
class AttentionPlan:
    """One block's attention: the mechanism, the grid it runs on, and its knobs.

    Grids a window (or MaxViT grid side) does not divide need nothing here: those mechanisms pad
    and crop themselves, as Swin's detection backbone does.
    """

    mechanism: str
    grid: Grid
    knobs: dict[str, Any]


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    summary: str
    paper: str
    stage_strides: tuple[int, ...]  # token-grid stride of each stage relative to the image
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    own_attention: str
    own_knobs: OwnKnobs
    factory: Callable[..., nn.Module]  # (spec, resolution, plans, num_classes) -> model

    @property
    def stages(self) -> int:
        return len(self.widths)

    @property
    def total_stride(self) -> int:
        return self.stage_strides[-1]

    def side(self, resolution: int, stage: int) -> int:
        return resolution // self.stage_strides[stage]


def plan(spec: BackboneSpec, resolution: int, layout: Layout) -> list[list[AttentionPlan]]:
    """Per stage, per block: what `build` will construct at this resolution."""
    stages = []
    for stage, depth in enumerate(spec.depths):
        side = spec.side(resolution, stage)
        blocks = []
        for block in range(depth):
            if layout.letter(stage, block) == "A":
                mechanism, knobs = layout.attention, layout.stage_knobs(stage)
            else:
                mechanism, knobs = spec.own_attention, spec.own_knobs(stage, block, side)
            blocks.append(AttentionPlan(mechanism, (side, side), knobs))
        stages.append(blocks)
    return stages


def check_plan(spec: BackboneSpec, plans: list[list[AttentionPlan]]) -> str | None:
    """The first block configuration its mechanism rejects, as one line naming the stage."""
    seen = set()
    for stage, blocks in enumerate(plans):
        for item in blocks:
            key = (stage, item.mechanism, item.grid, tuple(sorted(item.knobs.items())))
            if key in seen:
                continue
            seen.add(key)
            reason = attentions.spec(item.mechanism).check(
                item.grid, spec.widths[stage], spec.heads[stage], **item.knobs
            )
            if reason:
                where = f"stage {stage + 1} " if spec.stages > 1 else ""
                side = item.grid[0]
                return f"{spec.name} {where}({side}x{side} tokens): {reason}"
    return None


def build_attention(item: AttentionPlan, dim: int, num_heads: int) -> nn.Module:
    return attentions.build(item.mechanism, dim=dim, num_heads=num_heads, grid=item.grid, **item.knobs)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x)).

    The attention module is whatever the registry built; `attention_modules` of a backbone lists
    exactly these, so the attention share measures the mechanism and nothing around it (norms and
    the MLP count as backbone time).
    """

    def __init__(self, dim: int, attn: nn.Module, mlp: nn.Module):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Backbone(nn.Module):
    """Base of every backbone: fixed input resolution, and the list of its attention modules.

    Layers keep PyTorch's default init, as the mechanisms' own layers do: the models exist to be
    timed and counted, and a ViT-style truncated-normal pass costs seconds per build on a CPU.
    """

    def __init__(self, resolution: int):
        super().__init__()
        self.resolution = resolution

    def attention_modules(self) -> list[nn.Module]:
        return [module.attn for module in self.modules() if isinstance(module, Block)]

    def check_input(self, images: Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[-2:]) != (self.resolution, self.resolution):
            raise ValueError(
                f"expected images (B, 3, {self.resolution}, {self.resolution}), got {tuple(images.shape)}"
            )
