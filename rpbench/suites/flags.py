"""Command-line flags of `rpbench run` / `rpbench profile` -> one validated Case (raises one-line errors)."""
from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import attentions

from .. import backbones
from ..core.case import DEVICES, DTYPES, MODES, SIZE_LIMITS, Case, CaseFlags
from ..core.errors import UsageError
from .backbone import backbone_case
from .fields import canonical_dtype, check_input_size, checked_grid, parse_grid, resolve_device


def parse_knobs(items: list[str]) -> dict[str, object]:
    """key=value pairs; values read as Python literals (2, 0.5, True, "reps"), else as strings."""
    knobs: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--knob {item!r}: expected key=value")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            value = raw.strip()
        knobs[key.strip()] = value
    return knobs


def case_from_flags(flags: CaseFlags) -> Case:
    """The Case the flags name; raises UsageError, SuiteError or attentions.UnsupportedConfig with one line."""
    flags = replace(flags, dtype=canonical_dtype(flags.dtype))
    for name, value, allowed in (("dtype", flags.dtype, DTYPES), ("mode", flags.mode, MODES),
                                 ("device", flags.device, DEVICES)):
        if value not in allowed:
            raise UsageError(f"--{name} {value!r} is not one of {', '.join(allowed)}")
    for name in ("dim", "heads", "batch", "patch", "m", "resolution"):
        value, (low, high) = getattr(flags, name), SIZE_LIMITS[name]
        if value is not None and not low <= value <= high:
            raise UsageError(f"--{name} {value}: must be between {low} and {high}")
    knobs = parse_knobs(flags.knobs)
    if flags.m is not None and "m" in knobs:
        raise UsageError(f"--m {flags.m} and --knob m={knobs['m']!r} both set m; give one")
    if flags.backbone is not None:
        return _backbone_case(flags, knobs)
    if flags.attention is None:
        raise UsageError("--attention is required (see `rpbench list`)")
    if flags.layout is not None:
        raise UsageError("--layout places an attention in a backbone's stages; it needs --backbone")
    given = [flag for flag, value in (("--tokens", flags.tokens), ("--grid", flags.grid),
                                      ("--resolution", flags.resolution)) if value is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --tokens N, --grid HxW or --resolution R")
    spec = attentions.spec(flags.attention)
    if flags.resolution is not None:
        if flags.resolution % flags.patch:
            raise UsageError(f"--resolution {flags.resolution} is not divisible by --patch {flags.patch}")
        height = width = flags.resolution // flags.patch
    else:
        height, width = parse_grid(flags.tokens if flags.tokens is not None else flags.grid, key=given[0].lstrip("-"))
    if flags.m is not None:
        if "m" not in spec.knobs:
            raise UsageError(f"--m: {flags.attention} has no m knob (its knobs: {', '.join(spec.knobs) or 'none'})")
        knobs["m"] = flags.m
    checked_grid(Path("<cli>"), given[0], height, width)
    check_input_size(Path("<cli>"), "--batch × N × --dim", flags.batch, height * width, flags.dim)
    resolved = spec.resolve(knobs)
    reason = spec.check(grid=(height, width), dim=flags.dim, num_heads=flags.heads, **resolved)
    if reason:
        raise attentions.UnsupportedConfig(reason)
    return Case(scope="layer", attention=flags.attention, label=flags.attention,
                knobs=tuple(sorted(resolved.items())), batch=flags.batch, height=height, width=width,
                dim=flags.dim, heads=flags.heads, dtype=flags.dtype, mode=flags.mode,
                device=resolve_device(flags.device), m=resolved.get("m"), resolution=flags.resolution,
                patch=flags.patch if flags.resolution is not None else None)


def _backbone_case(flags: CaseFlags, knobs: dict[str, object]) -> Case:
    """`--backbone NAME [--attention A] [--layout AAAB] --resolution R` -> a Case."""
    if flags.resolution is None:
        raise UsageError("--backbone needs --resolution R (image side in px)")
    if flags.tokens is not None or flags.grid is not None:
        raise UsageError("--backbone takes --resolution, not --tokens/--grid")
    if flags.m is not None:
        knobs["m"] = flags.m
    layout = backbones.parse_layout(flags.backbone, flags.attention, flags.layout, knobs)
    reason = backbones.check(flags.backbone, flags.resolution, layout)
    if reason:
        raise backbones.UnsupportedConfig(reason)
    return backbone_case(flags.backbone, layout, flags.attention or "own", flags.resolution, flags.batch,
                         flags.dtype, flags.mode, resolve_device(flags.device))
