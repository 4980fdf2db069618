"""DeiT-T/S/B (Touvron et al. 2021): an isotropic ViT, patch 16, 12 pre-norm blocks, MLP ratio 4.

Attention mechanisms are defined on a token grid, and a cls token has no place on it. So this DeiT
has no cls token: every block's attention sees exactly the (H/16)×(W/16) patch grid, and the head
classifies the mean of the final patch tokens (global average pooling, as Swin and PVT do). This
drops one token of 197 at 224 px: parameters move by 2·C (the cls token and its position) and MACs
by about 1 %, well inside the published figures (DeiT-T 5.7 M / 1.26 GMACs, DeiT-S 22.1 M / 4.6,
DeiT-B 86.6 M / 17.6).

The learned position embedding is sized to the resolution the model is built for.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from attentions._common import trunc_normal_

from ._base import AttentionPlan, Backbone, BackboneSpec, Block, Mlp, build_attention

PATCH = 16
MLP_RATIO = 4


class DeiT(Backbone):
    def __init__(self, spec: BackboneSpec, resolution: int, plans: list[list[AttentionPlan]], num_classes: int):
        super().__init__(resolution)
        dim, heads = spec.widths[0], spec.heads[0]
        side = resolution // PATCH
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, dim))
        self.blocks = nn.Sequential(
            *(
                Block(dim, build_attention(item, dim, heads), Mlp(dim, MLP_RATIO * dim))
                for item in plans[0]
            )
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        trunc_normal_(self.pos_embed)

    def forward(self, images: Tensor) -> Tensor:
        self.check_input(images)
        x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x.mean(dim=1))


def _no_knobs(stage: int, block: int, side: int) -> dict:
    return {}


def _spec(name: str, width: int, heads: int) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        summary=f"isotropic ViT, width {width}, 12 blocks, {heads} heads, patch 16, mean-pooled head",
        paper="Touvron et al. 2021, Training data-efficient image transformers (DeiT)",
        stage_strides=(PATCH,),
        widths=(width,),
        depths=(12,),
        heads=(heads,),
        own_attention="dense",
        own_knobs=_no_knobs,
        factory=DeiT,
    )


SPECS = (_spec("deit-t", 192, 3), _spec("deit-s", 384, 6), _spec("deit-b", 768, 12))
