"""PVT-T, shaped like PVTv2-b1 (Wang et al. 2022): four stages, overlapping patch embeddings.

Widths 64-128-320-512, depths 2-2-2-2, heads 1-2-5-8, MLP ratios 8-8-4-4 with a 3×3 depthwise
conv inside the MLP (PVTv2's positional signal; there is no position embedding). The backbone's own
attention is the registry's `sra` mechanism with reduction ratios 8-4-2-1. Each stage ends with a
LayerNorm; the head classifies the mean of the last stage's tokens.
"""
from __future__ import annotations

from torch import Tensor, nn

from ._base import AttentionPlan, Backbone, BackboneSpec, Block, build_attention

SR_RATIOS = (8, 4, 2, 1)
MLP_RATIOS = (8, 8, 4, 4)


def own_sra_knobs(stage: int, block: int, side: int) -> dict[str, int]:
    return {"sr_ratio": SR_RATIOS[stage]}


class OverlapPatchEmbed(nn.Module):
    """Strided conv with a kernel larger than its stride (neighbouring patches overlap), then LN."""

    def __init__(self, in_channels: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=kernel, stride=stride, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: Tensor) -> Tensor:
        return self.norm(self.proj(images).flatten(2).transpose(1, 2))


class DWConvMlp(nn.Module):
    """fc1 -> 3×3 depthwise conv on the token map -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, side: int):
        super().__init__()
        self.side = side
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        batch, _, channels = x.shape
        x = x.transpose(1, 2).reshape(batch, channels, self.side, self.side)
        x = self.dwconv(x).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class PVTStage(nn.Module):
    def __init__(self, embed: OverlapPatchEmbed, blocks: list[Block], dim: int, side: int):
        super().__init__()
        self.embed = embed
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(dim)
        self.side = side

    def forward(self, maps: Tensor) -> Tensor:
        x = self.norm(self.blocks(self.embed(maps)))
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.side, self.side)


class PVT(Backbone):
    def __init__(self, spec: BackboneSpec, resolution: int, plans: list[list[AttentionPlan]], num_classes: int):
        super().__init__(resolution)
        stages = []
        in_channels = 3
        for stage, blocks in enumerate(plans):
            dim, heads, side = spec.widths[stage], spec.heads[stage], spec.side(resolution, stage)
            kernel, stride = (7, 4) if stage == 0 else (3, 2)
            layers = [
                Block(
                    dim,
                    build_attention(item, dim, heads),
                    DWConvMlp(dim, MLP_RATIOS[stage] * dim, side),
                )
                for item in blocks
            ]
            stages.append(PVTStage(OverlapPatchEmbed(in_channels, dim, kernel, stride), layers, dim, side))
            in_channels = dim
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(spec.widths[-1], num_classes)

    def forward(self, images: Tensor) -> Tensor:
        self.check_input(images)
        return self.head(self.stages(images).flatten(2).mean(dim=2))


SPECS = (
    BackboneSpec(
        name="pvt-t",
        summary="PVTv2-b1-like: widths 64-128-320-512, depths 2-2-2-2, SRA ratios 8-4-2-1, DWConv MLP",
        paper="Wang et al. 2022, PVT v2: Improved baselines with Pyramid Vision Transformer",
        stage_strides=(4, 8, 16, 32),
        widths=(64, 128, 320, 512),
        depths=(2, 2, 2, 2),
        heads=(1, 2, 5, 8),
        own_attention="sra",
        own_knobs=own_sra_knobs,
        factory=PVT,
    ),
)
