"""Swin-T/S (Liu et al. 2021): four stages of pre-norm blocks joined by patch merging.

The backbone's own attention is the registry's `window` mechanism (W-MSA with relative position
bias): window 7, shifted by 3 on odd blocks. Two rules decide the window of a stage:
- a grid no larger than the window gets one window of the whole grid and no shift (Swin's
  classification rule, applied by the mechanism itself; this is stage 4 at 224 px);
- any other grid the window does not divide is zero-padded to a multiple of it and cropped after
  (Swin's detection rule, applied by the mechanism too), so every resolution divisible by 32 runs.
Blocks given to the layout's chosen attention get exactly the layout's knobs (no alternating shift).
"""
from __future__ import annotations

from torch import Tensor, nn

from ._base import AttentionPlan, Backbone, BackboneSpec, Block, Mlp, build_attention

PATCH = 4
WINDOW = 7
SHIFT = 3
MLP_RATIO = 4


def own_window_knobs(stage: int, block: int, side: int) -> dict[str, int]:
    return {"window": WINDOW, "shift": SHIFT if block % 2 else 0}


class PatchMerging(nn.Module):
    """Each 2×2 neighbourhood concatenated (4C), normalised and projected to 2C: halves the grid."""

    def __init__(self, dim: int, side: int):
        super().__init__()
        self.side = side
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, channels = x.shape
        x = x.reshape(batch, self.side, self.side, channels)
        x = x.reshape(batch, self.side // 2, 2, self.side // 2, 2, channels)
        # Channel order (row offset, column offset) = (0,0), (1,0), (0,1), (1,1), as in Swin.
        x = x.permute(0, 1, 3, 4, 2, 5).reshape(batch, (self.side // 2) ** 2, 4 * channels)
        return self.reduction(self.norm(x))


class Swin(Backbone):
    def __init__(self, spec: BackboneSpec, resolution: int, plans: list[list[AttentionPlan]], num_classes: int):
        super().__init__(resolution)
        self.patch_embed = nn.Conv2d(3, spec.widths[0], kernel_size=PATCH, stride=PATCH)
        self.patch_norm = nn.LayerNorm(spec.widths[0])
        stages = []
        for stage, blocks in enumerate(plans):
            dim, heads = spec.widths[stage], spec.heads[stage]
            layers = [
                Block(dim, build_attention(item, dim, heads), Mlp(dim, MLP_RATIO * dim))
                for item in blocks
            ]
            if stage + 1 < spec.stages:
                layers.append(PatchMerging(dim, spec.side(resolution, stage)))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(spec.widths[-1])
        self.head = nn.Linear(spec.widths[-1], num_classes)

    def forward(self, images: Tensor) -> Tensor:
        self.check_input(images)
        x = self.patch_norm(self.patch_embed(images).flatten(2).transpose(1, 2))
        x = self.norm(self.stages(x))
        return self.head(x.mean(dim=1))


def _spec(name: str, depths: tuple[int, ...]) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        summary=f"hierarchical, widths 96-192-384-768, depths {'-'.join(map(str, depths))}, window 7 shift 3",
        paper="Liu et al. 2021, Swin Transformer (ICCV)",
        stage_strides=(4, 8, 16, 32),
        widths=(96, 192, 384, 768),
        depths=depths,
        heads=(3, 6, 12, 24),
        own_attention="window",
        own_knobs=own_window_knobs,
        factory=Swin,
    )


SPECS = (_spec("swin-t", (2, 2, 6, 2)), _spec("swin-s", (2, 2, 18, 2)))
