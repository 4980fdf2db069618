"""timm models as backbones: `--backbone timm:<model_name>` (and `timm:<model_name>` in a backbone suite).

The model is built by `timm.create_model(name, pretrained=False, img_size=R)` (no weights are downloaded). With an
attention chosen, every attention module that sees the whole token grid as (B, H·W, C) is swapped for the
registry mechanism built on that grid (layout letter A; B keeps timm's own module), so the mechanism is measured
inside a real timm model like inside our own backbones (params, MACs, attention share).

What is swapped: modules whose class is called `Attention` and that carry `qkv`/`num_heads` (timm's ViT family:
vit_*, deit_*, eva-less plain ViTs), in a model whose tokens are exactly the patch grid. For that, ViT-family models
are built with `class_token=False, global_pool="avg"` when an attention is swapped in (a class token is not on the
grid; the head classifies the mean of the patch tokens, as our DeiT does). Models whose attention sees windows
(Swin), pooled or strided tokens, or prefix tokens are measured with their own attention only; asking to swap
them is one line saying why. timm is an optional extra: without it, one line says how to install it.

The attention share is measured around every module of a timm attention family (ATTENTION_CLASSES: the grid, its
windows, pooled keys, channels or class tokens), outermost ones only; a model with none of them (a CNN, a pooling
mixer) gets no share and a note saying why, never 0.
"""
from __future__ import annotations

import difflib
import functools
from typing import Any

from torch import Tensor, nn

import attentions
from attentions import UnsupportedConfig

from ..core.case import Layout
from ._base import BackboneSpec

PREFIX = "timm:"
OWN = "timm"  # the `own_attention` of a timm backbone: timm's own module
INSTALL = "pip install 'rpbench[timm]'"


def is_timm(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def _timm() -> Any:
    try:
        import timm
    except Exception as err:  # ImportError, or a torchvision that does not match this torch
        raise UnsupportedConfig(f"timm backbones need timm: {INSTALL} (here: {type(err).__name__}: "
                                f"{' '.join(str(err).split())[:160]})") from None
    return timm


def _model_name(name: str) -> str:
    model = name[len(PREFIX):]
    known = _timm().list_models()
    if model not in known:
        close = difflib.get_close_matches(model, known, n=1)
        hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
        raise UnsupportedConfig(f"{name}: timm has no model {model!r}{hint}; see timm.list_models()")
    return model


def create(name: str, resolution: int | None, swappable: bool) -> nn.Module:
    """timm.create_model without weights, at `resolution` when the model takes an image size."""
    timm = _timm()
    model = _model_name(name)
    options: dict[str, Any] = {"pretrained": False, "num_classes": 1000}
    if swappable:
        options.update(class_token=False, global_pool="avg")
    if resolution is not None:
        options["img_size"] = resolution
    for attempt in (options, {k: v for k, v in options.items() if k != "img_size"},
                    {"pretrained": False, "num_classes": 1000}):
        try:
            return timm.create_model(model, **attempt)
        except TypeError:  # a model that does not take img_size / class_token
            continue
    raise UnsupportedConfig(f"{name}: timm could not build it at {resolution} px")


# timm's attention modules by family (their class names in timm 1.0; a class moved between timm modules keeps its
# name). Blocks that hold one (PartitionAttentionCl, XCABlock, LayerScaleBlockClassAttn) are not listed: the share
# times the attention alone.
ATTENTION_FAMILIES = {
    "ViT, DeiT, PVT v2, LeViT, NesT, TinyViT, EfficientFormer, MobileViT": ("Attention", "AttentionDownsample"),
    "EVA, relative-position ViTs": ("EvaAttention", "AttentionRope", "RelPosAttention"),
    "Swin, Swin V2, DaViT, GC ViT, EfficientViT (MSRA)": ("WindowAttention", "WindowMultiHeadAttention",
                                                           "WindowAttentionGlobal", "LocalWindowAttention",
                                                           "CascadedGroupAttention"),
    "DaViT channels, XCiT, EdgeNeXt": ("ChannelAttention", "ChannelAttentionV2", "XCA", "CrossCovarianceAttn"),
    "MaxViT": ("AttentionCl", "Attention2d"),
    "CaiT, XCiT class attention": ("TalkingHeadAttn", "ClassAttn"),
    "Twins": ("LocallyGroupedAttn", "GlobalSubSampleAttn"),
    "EfficientViT (MIT)": ("LiteMLA",),
    "ConViT": ("GPSA", "MHSA"),
    "CoaT": ("FactorAttnConvRelPosEnc",),
    "Hiera, MViT v2": ("MaskUnitAttention", "MultiScaleAttention"),
}
ATTENTION_CLASSES = frozenset(name for names in ATTENTION_FAMILIES.values() for name in names)


def family_attention_modules(model: nn.Module) -> list[nn.Module]:
    """Every outermost module of a timm attention family (or swapped in by rpbench), in forward order: what the
    attention share is measured around. One inside another (EfficientViT's cascaded heads) counts once."""
    found: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, _Swapped) or type(module).__name__ in ATTENTION_CLASSES:
            found.append(module)
            inside.update(id(child) for child in module.modules())
    return found


def grid_attention_modules(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, module) of every attention module that sees the whole patch grid."""
    found = []
    for parent in model.modules():
        for attribute, child in parent.named_children():
            if type(child).__name__ == "Attention" and hasattr(child, "qkv") and hasattr(child, "num_heads"):
                found.append((parent, attribute, child))
    return found


def _grid(model: nn.Module) -> tuple[int, int] | None:
    """The patch grid when the model's tokens are exactly that grid (no class, distillation or register token)."""
    embed = getattr(model, "patch_embed", None)
    grid = getattr(embed, "grid_size", None)
    if grid is None or getattr(model, "num_prefix_tokens", 0):
        return None
    return int(grid[0]), int(grid[1])


@functools.lru_cache(maxsize=32)
def _probe(name: str) -> tuple[BackboneSpec, bool]:
    """The BackboneSpec read off the model built on the meta device (nothing allocated): one stage, its patch
    stride, width, depth (attention modules) and heads; and whether its attention can be swapped (its tokens are
    exactly the patch grid and some attention module sees them all)."""
    import torch

    with torch.device("meta"):
        model = create(name, None, swappable=True)
    modules = grid_attention_modules(model)
    family = family_attention_modules(model)
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", (getattr(model, "stride", 32),))
    stride = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    width = getattr(model, "embed_dim", None)
    dim = int(width if isinstance(width, int) else getattr(model, "num_features", 0) or 0)
    # The first attention module's heads (a Swin's stage 1, like our backbones); 1 for a model without attention.
    heads = next((int(m.num_heads) for m in family if isinstance(getattr(m, "num_heads", None), int)), 1)
    found = BackboneSpec(name=name, summary=f"timm {name[len(PREFIX):]} (no weights)", paper="timm",
                         stage_strides=(stride,), widths=(dim,), depths=(max(len(modules) or len(family), 1),),
                         heads=(heads,), own_attention=OWN, own_knobs=lambda stage, block, side: {},
                         factory=_factory)
    return found, bool(modules) and _grid(model) is not None


def spec(name: str) -> BackboneSpec:
    return _probe(name)[0]


def check(backbone: BackboneSpec, resolution: int, layout: Layout) -> str | None:
    """None, or why the layout cannot run in this timm model (the resolution is checked by the caller)."""
    if layout.attention is None or "A" not in layout.pattern:
        return None
    if not _probe(backbone.name)[1]:
        return (f"{backbone.name}: its attention modules do not see the whole token grid as (B, H·W, C) (windows, "
                "pooled or prefix tokens); measure it with its own attention (leave --attention out)")
    side = resolution // backbone.total_stride
    return attentions.spec(layout.attention).check((side, side), backbone.widths[0], backbone.heads[0],
                                                   **layout.stage_knobs(0))


class _Swapped(nn.Module):
    """A registry mechanism where timm calls its attention: forward(x, attn_mask=None, ...) on (B, N, C)."""

    def __init__(self, mechanism: nn.Module):
        super().__init__()
        self.mechanism = mechanism

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return self.mechanism(x)


class TimmBackbone(nn.Module):
    """The timm model, with the list of its attention modules (for the attention share): every module of a timm
    attention family and every one swapped in."""

    def __init__(self, model: nn.Module, name: str, resolution: int):
        super().__init__()
        self.model = model
        self.name = name
        self.resolution = resolution

    def attention_modules(self) -> list[nn.Module]:
        return family_attention_modules(self.model)

    def no_attention_note(self) -> str:
        """Why the share is not measured when `attention_modules` is empty."""
        return (f"attention share not measured: {self.name} has no module of a timm attention family rpbench knows "
                f"({', '.join(sorted(ATTENTION_CLASSES))})")

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)


def _factory(backbone: BackboneSpec, resolution: int, layout: Layout, num_classes: int) -> TimmBackbone:
    swapping = layout.attention is not None and "A" in layout.pattern
    model = create(backbone.name, resolution, swappable=swapping)
    found = grid_attention_modules(model)
    grid = _grid(model)
    if swapping and (grid is None or not found):
        raise UnsupportedConfig(f"{backbone.name}: its attention modules do not see the whole token grid as "
                                "(B, H·W, C); measure it with its own attention (leave --attention out)")
    for block, (parent, attribute, own) in enumerate(found):
        if swapping and layout.letter(0, block) == "A":
            mechanism = attentions.build(layout.attention, dim=own.qkv.in_features, num_heads=own.num_heads,
                                         grid=grid, **layout.stage_knobs(0))
            setattr(parent, attribute, _Swapped(mechanism))
    return TimmBackbone(model, backbone.name, resolution)
