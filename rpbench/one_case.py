"""Command-line flags of `rpbench run` / `rpbench profile` -> one validated Case."""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from .cases import DEVICES, DTYPES, MODES, Case, SuiteError, parse_grid, resolve_device


@dataclass
class CaseArgs:
    attention: str | None
    tokens: int | None = None
    grid: str | None = None
    resolution: int | None = None
    patch: int = 16
    dim: int = 384
    heads: int = 6
    m: int | None = None
    knobs: list[str] = field(default_factory=list)
    batch: int = 1
    dtype: str = "float32"
    mode: str = "fwd"
    device: str = "auto"
    backbone: str | None = None
    layout: str | None = None


def parse_knobs(items: list[str]) -> dict[str, object]:
    """key=value pairs; values read as Python literals (2, 0.5, True, "reps"), else as strings."""
    knobs: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--knob {item!r}: expected key=value")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        knobs[key.strip()] = value
    return knobs


def build_case(args: CaseArgs) -> tuple[Case | None, str | None]:
    """A Case, or (None, one-line reason)."""
    import attentions

    for name, value, allowed in (("dtype", args.dtype, DTYPES), ("mode", args.mode, MODES),
                                 ("device", args.device, DEVICES)):
        if value not in allowed:
            return None, f"--{name} {value!r} is not one of {', '.join(allowed)}"
    for name in ("dim", "heads", "batch", "patch"):
        if getattr(args, name) < 1:
            return None, f"--{name} must be >= 1"
    try:
        knobs = parse_knobs(args.knobs)
    except ValueError as err:
        return None, str(err)
    if args.backbone is not None:
        from .backbone_cases import backbone_case

        return backbone_case(args, knobs)
    if args.attention is None:
        return None, "--attention is required (see `rpbench list`)"
    given = [flag for flag, value in (("--tokens", args.tokens), ("--grid", args.grid),
                                      ("--resolution", args.resolution)) if value is not None]
    if len(given) != 1:
        return None, "give exactly one of --tokens N, --grid HxW or --resolution R"
    try:
        spec = attentions.spec(args.attention)
        if args.resolution is not None:
            if args.resolution % args.patch:
                return None, f"--resolution {args.resolution} is not divisible by --patch {args.patch}"
            height = width = args.resolution // args.patch
        else:
            height, width = parse_grid(args.tokens if args.tokens is not None else args.grid, Path("<cli>"),
                                       given[0].lstrip("-"))
        if args.m is not None:
            if "m" not in spec.knobs:
                return None, f"--m: {args.attention} has no m knob (its knobs: {', '.join(spec.knobs) or 'none'})"
            knobs["m"] = args.m
        resolved = spec.resolve(knobs)
    except (attentions.UnsupportedConfig, SuiteError) as err:
        return None, str(err)
    reason = spec.check(grid=(height, width), dim=args.dim, num_heads=args.heads, **resolved)
    if reason:
        return None, reason
    case = Case(scope="layer", attention=args.attention, label=args.attention, knobs=tuple(sorted(resolved.items())),
                batch=args.batch, height=height, width=width, dim=args.dim, heads=args.heads, dtype=args.dtype,
                mode=args.mode, device=resolve_device(args.device), m=resolved.get("m"),
                resolution=args.resolution, patch=args.patch if args.resolution is not None else None)
    return case, None
