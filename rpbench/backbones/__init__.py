"""Whole vision backbones into which any registry attention plugs (plain PyTorch, random init).

    from rpbench import backbones
    layout = backbones.parse_layout("swin-t", "rpattention", "AAAB", {"m": [9, 16, 49, 49]})
    str(layout)                                   # "rpattention:AAAB m=9,16,49,49"
    backbones.check("swin-t", 224, layout)        # None, or a one-line reason
    model = backbones.build("swin-t", 224, layout)

Layer benchmarks say how an attention scales; these say what it changes for a whole model. Each
block's attention comes from `attentions.build` on the token grid of its stage; `B` blocks keep the
backbone's own attention (dense for DeiT, shifted windows for Swin, spatial reduction for PVT).
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from attentions import UnsupportedConfig
from attentions._registry import lookup

from ..core.case import Layout
from . import deit, pvt, swin, timm_models
from ._base import BackboneSpec, check_plan, plan
from .costs import count_macs, count_params
from .layout import parse

_SPECS: dict[str, BackboneSpec] = {spec.name: spec for spec in (*deit.SPECS, *swin.SPECS, *pvt.SPECS)}


def available() -> list[str]:
    return sorted(_SPECS)


def spec(name: str) -> BackboneSpec:
    """Our own backbones by name; `timm:<model>` reads a timm model's stride, width, depth and heads."""
    if timm_models.is_timm(name):
        return timm_models.spec(name)
    return lookup(_SPECS, name, "backbone")


def total_stride(name: str) -> int:
    """Image pixels per token of the last stage; resolutions must be a multiple of it."""
    return spec(name).total_stride


def parse_layout(
    name: str, attention: str | None, layout: str | None, knobs: Mapping[str, Any] | None = None
) -> Layout:
    """Validate a layout for backbone `name`; raises UnsupportedConfig with a one-line reason.

    `attention` None keeps the backbone's own attention everywhere. `layout` None puts `attention`
    in every stage. Knobs are scalars or per-stage lists; see `layout` for which are kept.
    """
    backbone = spec(name)
    return parse(name, backbone.stages, backbone.depths[0], attention, layout, knobs)


def check(name: str, resolution: int, layout: Layout) -> str | None:
    """None when `build` would succeed, else a one-line reason."""
    try:
        backbone = spec(name)
    except UnsupportedConfig as err:
        return str(err)
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        return f"{name}: resolution must be a positive integer, got {resolution!r}"
    if resolution % backbone.total_stride:
        return f"{name}: resolution {resolution} is not divisible by the total stride {backbone.total_stride}"
    if layout.stages != backbone.stages:
        return f"{name}: layout {layout} was parsed for {layout.stages} stage(s), the backbone has {backbone.stages}"
    if timm_models.is_timm(name):
        return timm_models.check(backbone, resolution, layout)
    return check_plan(backbone, plan(backbone, resolution, layout))


def build(name: str, resolution: int, layout: Layout, num_classes: int = 1000) -> nn.Module:
    """The model for (B, 3, resolution, resolution) images -> (B, num_classes) logits."""
    reason = check(name, resolution, layout)
    if not reason and (not isinstance(num_classes, int) or num_classes < 1):
        reason = f"{name}: num_classes must be a positive integer, got {num_classes!r}"
    if reason:
        raise UnsupportedConfig(reason)
    backbone = spec(name)
    if timm_models.is_timm(name):
        return backbone.factory(backbone, resolution, layout, num_classes)
    return backbone.factory(backbone, resolution, plan(backbone, resolution, layout), num_classes)


__all__ = [
    "Layout",
    "UnsupportedConfig",
    "available",
    "build",
    "check",
    "count_macs",
    "count_params",
    "parse_layout",
    "spec",
    "total_stride",
]
