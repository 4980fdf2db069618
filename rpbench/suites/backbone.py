"""Backbone scope: a suite's `[axes]` and `[[layout]]` tables -> one Case per backbone × layout × setting.

A backbone suite:

    scope = "backbone"
    [axes]
    backbone = ["deit-s", "swin-t"]
    resolution = [224, 512, 1024]
    batch = [1]
    dtype = ["bfloat16"]
    mode = ["fwd"]
    [[layout]]
    label = "own"                 # no attention: the backbone's own everywhere
    [[layout]]
    label = "agent"
    attention = "agent"
    pattern = "AAAB"              # A = this attention, B = the backbone's own, one letter per stage
    m = [9, 16, 49, 49]           # scalars or one value per stage
    [layout.deit-s]               # per-backbone overrides (DeiT has one stage)
    pattern = "A"
    m = 49
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from .. import backbones
from ..backbones import timm_models
from ..core.case import Case, Layout, text_problem
from .fields import check_input_size, run_axes, suite_error, typed_list

BACKBONE_AXES = {"backbone", "resolution", "batch", "dtype", "mode", "device", "compile", "precision",
                 "channels_last"}
LAYOUT_KEYS = {"label", "attention", "pattern"}


def _layout_entries(path: Path, layouts: Any, names: list[str]) -> list[tuple[str, dict[str, Layout]]]:
    """(label, {backbone: layout}) per [[layout]], validated for every backbone."""
    if not isinstance(layouts, list) or not layouts:
        raise suite_error(path, "layout", "give at least one [[layout]] table (label = \"own\" keeps each backbone's own)")
    parsed, labels = [], set()
    for index, entry in enumerate(layouts):
        key = f"layout[{index}]"
        if not isinstance(entry, dict):
            raise suite_error(path, key, "must be a table")
        label = entry.get("label", entry.get("attention", "own"))
        problem = text_problem(label, "label") or (f"{label!r} used twice; labels must be unique"
                                                   if label in labels else None)
        if problem:
            raise suite_error(path, f"{key}.label", problem)
        labels.add(label)
        overrides = {k: v for k, v in entry.items() if isinstance(v, dict)}
        stray = sorted(set(overrides) - set(backbones.available()) - set(names))
        if stray:
            raise suite_error(path, f"{key}.{stray[0]}", f"unknown backbone; available: {', '.join(backbones.available())}")
        base = {k: v for k, v in entry.items() if k not in overrides}
        per_backbone = {}
        for name in names:
            merged = {**base, **overrides.get(name, {})}
            attention, pattern = merged.get("attention"), merged.get("pattern")
            knobs = {k: v for k, v in merged.items() if k not in LAYOUT_KEYS}
            try:
                per_backbone[name] = backbones.parse_layout(name, attention, pattern, knobs)
            except backbones.UnsupportedConfig as error:
                raise suite_error(path, key, f"{name}: {error}") from None
        parsed.append((label, per_backbone))
    return parsed


def expand_backbone(path: Path, axes: dict[str, Any], layouts: Any, device_override: str | None) -> list[Case]:
    unknown = sorted(set(axes) - BACKBONE_AXES)
    if unknown:
        raise suite_error(path, f"axes.{unknown[0]}", f"unknown axis for scope = \"backbone\"; allowed: "
                          f"{', '.join(sorted(BACKBONE_AXES))}")
    for required in ("backbone", "resolution"):
        if required not in axes:
            raise suite_error(path, f"axes.{required}", "required for scope = \"backbone\"")
    names = typed_list(path, "axes.backbone", axes["backbone"], str)
    for name in names:  # ours by name, or timm:<model> (needs timm; one line when it is missing)
        if not timm_models.is_timm(name) and name not in backbones.available():
            raise suite_error(path, "axes.backbone", f"{name!r} is not allowed; choose from "
                              f"{', '.join(backbones.available())} or timm:<model_name>")
        try:
            backbones.spec(name)
        except backbones.UnsupportedConfig as error:
            raise suite_error(path, "axes.backbone", str(error)) from None
    resolutions = typed_list(path, "axes.resolution", axes["resolution"], int)
    batches, dtypes, modes, devices = run_axes(path, axes, device_override)
    cases = []
    for label, per_backbone in _layout_entries(path, layouts, names):
        for name, resolution, batch, dtype, mode, device in itertools.product(
            names, resolutions, batches, dtypes, modes, devices
        ):
            case = backbone_case(name, per_backbone[name], label, resolution, batch, dtype, mode, device)
            check_input_size(path, "axes", batch, case.tokens, case.dim)
            cases.append(case)
    return cases


def backbone_case(name: str, layout: Layout, label: str, resolution: int, batch: int, dtype: str, mode: str,
                  device: str) -> Case:
    """The Case of one backbone run; the grid columns describe its first stage (the largest token count)."""
    spec = backbones.spec(name)
    stride = spec.stage_strides[0]
    side = resolution // stride
    stage_m = dict(layout.knobs).get("m")
    return Case(scope="backbone", attention=layout.attention or spec.own_attention, label=label,
                knobs=tuple((k, tuple(v)) for k, v in layout.knobs), batch=batch, height=side, width=side,
                dim=spec.widths[0], heads=spec.heads[0], dtype=dtype, mode=mode, device=device,
                m=stage_m[0] if stage_m else None, resolution=resolution, patch=stride, backbone=name,
                layout=layout)
