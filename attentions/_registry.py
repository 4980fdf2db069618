"""The registry: one `AttentionSpec` per mechanism, looked up by name.

A spec knows a mechanism's knobs (with defaults and docs), its analytic FLOPs, and which
configurations it cannot run. `build` validates through `check` first, so a sweep can record an
unsupported case as a reason instead of crashing.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from torch import nn

Grid = tuple[int, int]
T = TypeVar("T")

FLOP_CONVENTION = (
    "1 multiply-add = 2 FLOPs, counted over matmuls and convolutions only "
    "(softmax, normalisation and other elementwise work excluded), as torch's FlopCounterMode counts"
)


class UnsupportedConfig(ValueError):
    """A mechanism cannot be built for these arguments; the message is a one-line reason."""


@dataclass(frozen=True)
class Knob:
    """One tunable argument of a mechanism."""

    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None  # inclusive bounds of a numeric knob (numbers must also be finite)
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        """None when a numeric value is finite and within [low, high], else what is wrong."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            return f"must be in [{low}, {high}], got {value!r}"
        return None

    @property
    def type(self) -> type:
        return type(self.default)


@dataclass(frozen=True)
class AttentionSpec:
    """Everything the harness may know about a mechanism without building it."""

    name: str
    summary: str
    paper: str
    complexity: str  # e.g. "O(N²·C)"
    scaling: str  # "quadratic" | "linear"
    factory: Callable[..., nn.Module]
    flops_fn: Callable[..., dict[str, int]] | None  # None: no formula; the harness counts FLOPs and says so
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    check_fn: Callable[..., str | None] | None = None
    state_dict_compat: str = ""
    # (grid, **knobs) -> the knobs the module actually runs with, where it fits them to the grid (a window clamped
    # to the map). None: it runs the knobs as given.
    effective_fn: Callable[..., dict[str, Any]] | None = None
    origin: str = "built-in"  # where it came from: "built-in", or the module / file / entry point of a plugin
    # A plain factory given by reference declares no knobs: it takes any `key=value` as given.
    open_knobs: bool = False

    # -- knobs -------------------------------------------------------------------------
    def resolve(self, knobs: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults and validate names, types and choices; raises UnsupportedConfig."""
        if self.open_knobs:
            return dict(knobs)
        unknown = sorted(set(knobs) - set(self.knobs))
        if unknown:
            valid = ", ".join(sorted(self.knobs)) or "none"
            raise UnsupportedConfig(
                f"{self.name}: unknown knob(s) {', '.join(unknown)}; valid knobs: {valid}"
            )
        resolved = {k: v.default for k, v in self.knobs.items()}
        for key, value in knobs.items():
            knob = self.knobs[key]
            if isinstance(knob.default, bool):
                ok = isinstance(value, bool)
            elif isinstance(knob.default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(knob.default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            else:
                ok = isinstance(value, type(knob.default))
            if not ok:
                raise UnsupportedConfig(
                    f"{self.name}: knob {key} must be {type(knob.default).__name__}, got {value!r}"
                )
            if knob.choices is not None and value not in knob.choices:
                allowed = ", ".join(map(str, knob.choices))
                raise UnsupportedConfig(f"{self.name}: {key}={value!r} is not one of {allowed}")
            problem = knob.problem(value)
            if problem:
                raise UnsupportedConfig(f"{self.name}: knob {key} {problem}")
            resolved[key] = value
        return resolved

    # -- validity ----------------------------------------------------------------------
    def check(self, grid: Grid, dim: int, num_heads: int, **knobs: Any) -> str | None:
        """None when the configuration can be built, else a one-line reason."""
        try:
            resolved = self.resolve(knobs)
        except UnsupportedConfig as err:
            return str(err)
        height, width = grid
        if height < 1 or width < 1:
            return f"grid must be positive, got {height}x{width}"
        if dim < 1 or num_heads < 1:
            return f"dim and num_heads must be positive, got dim={dim}, num_heads={num_heads}"
        if dim % num_heads:
            return f"dim {dim} is not divisible by num_heads {num_heads}"
        if self.check_fn is not None:
            return self.check_fn(grid=(height, width), dim=dim, num_heads=num_heads, **resolved)
        return None

    def effective(self, grid: Grid, **knobs: Any) -> dict[str, Any]:
        """The resolved knobs as the module runs them on `grid` (see effective_fn)."""
        resolved = self.resolve(knobs)
        if self.effective_fn is None:
            return resolved
        return {**resolved, **self.effective_fn(grid=tuple(grid), **resolved)}

    # -- cost --------------------------------------------------------------------------
    def flops(self, batch: int, grid: Grid, dim: int, num_heads: int, **knobs: Any) -> dict[str, int] | None:
        """Analytic forward FLOPs: {"core", "proj", "total"} (see FLOP_CONVENTION); None without a formula."""
        reason = self.check(grid, dim, num_heads, **knobs)
        if reason:
            raise UnsupportedConfig(reason)
        if self.flops_fn is None:
            return None
        parts = self.flops_fn(
            batch=batch, grid=tuple(grid), dim=dim, num_heads=num_heads, **self.resolve(knobs)
        )
        if isinstance(parts, (int, float)):  # a plugin's formula may give one number
            parts = {"core": parts, "proj": 0}
        core, proj = int(parts["core"]), int(parts.get("proj", 0))
        return {"core": core, "proj": proj, "total": core + proj}

    # -- construction ------------------------------------------------------------------
    def build(self, dim: int, num_heads: int, grid: Grid, **knobs: Any) -> nn.Module:
        reason = self.check(grid, dim, num_heads, **knobs)
        if reason:
            raise UnsupportedConfig(reason)
        return self.factory(dim=dim, num_heads=num_heads, grid=tuple(grid), **self.resolve(knobs))


_REGISTRY: dict[str, AttentionSpec] = {}


def register(
    spec_or_name: AttentionSpec | str,
    *,
    knobs: Mapping[str, Knob] | None = None,
    flops: Callable[..., Any] | None = None,
    check: Callable[..., str | None] | None = None,
    summary: str | None = None,
    paper: str = "",
    complexity: str = "?",
    scaling: str = "unknown",
) -> Any:
    """Add a mechanism to the registry. Two forms:

        register(AttentionSpec(...))            # the built-in mechanisms: returns the spec

        @attentions.register("my-attn", knobs={"r": Knob(4, "reduction ratio", low=1)},
                             flops=my_flops, check=my_check)
        class MyAttention(nn.Module):           # the decorator: returns the class unchanged
            def __init__(self, dim, num_heads, grid, r=4): ...
            def forward(self, x): ...           # (B, N, C) -> (B, N, C), N = grid[0] * grid[1]

    `knobs`: name -> Knob (default, doc, choices or bounds), validated before every build. `flops(batch, grid,
    dim, num_heads, **knobs)` returns {"core": ..., "proj": ...} or one number of forward FLOPs (1 multiply-add
    = 2 FLOPs); without it the harness uses the counted FLOPs and says so. `check(grid, dim, num_heads, **knobs)`
    returns None or a one-line reason the configuration cannot run. The origin (the class's module) is recorded
    and shown by `rpbench list`. A name registered twice raises ValueError.
    """
    if isinstance(spec_or_name, AttentionSpec):
        return _add(spec_or_name)
    name = spec_or_name

    def decorate(factory: Any) -> Any:
        doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
        _add(AttentionSpec(name=name, summary=summary or (doc[0] if doc else name), paper=paper,
                           complexity=complexity, scaling=scaling, factory=factory, flops_fn=flops,
                           knobs=dict(knobs or {}), check_fn=check, origin=getattr(factory, "__module__", "?")))
        return factory

    return decorate


def _add(spec: AttentionSpec) -> AttentionSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"attention {spec.name!r} registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def registered(name: str) -> AttentionSpec | None:
    return _REGISTRY.get(name)


def specs_with_factory(factory: Any) -> list[AttentionSpec]:
    return [spec for spec in _REGISTRY.values() if spec.factory is factory]


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """table[name], or UnsupportedConfig naming the closest match and every valid name."""
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, table, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnsupportedConfig(f"unknown {kind} {name!r}{hint}; available: {', '.join(sorted(table))}") from None
