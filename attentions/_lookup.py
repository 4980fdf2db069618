"""Looking mechanisms up by name: the registry first, then installed plugins (entry points, loaded once) and
`pkg.module:Factory` / `file.py:Factory` references (imported on first use; see `_plugins`)."""
from __future__ import annotations

from typing import Any

from torch import nn

from ._plugins import failure, is_reference, load_entry_points, load_reference
from ._registry import _REGISTRY, AttentionSpec, Grid, UnsupportedConfig, lookup


def available() -> list[str]:
    """Registry names, sorted (plugins installed under the `rpbench.attentions` entry point included)."""
    load_entry_points()
    return sorted(_REGISTRY)


def builtin() -> list[str]:
    """The names of the mechanisms shipped in this package, sorted (plugins left out)."""
    return sorted(name for name, found in _REGISTRY.items() if found.origin == "built-in")


def spec(name: str) -> AttentionSpec:
    """The spec of a registered name, or of a plugin reference `pkg.module:Factory` / `path/file.py:Factory`
    (imported on first use); UnsupportedConfig with one line otherwise."""
    load_entry_points()
    if name not in _REGISTRY and is_reference(name):
        return load_reference(name)
    failed = failure(name)
    if failed:
        raise UnsupportedConfig(failed)
    return lookup(_REGISTRY, name, "attention")


def build(name: str, dim: int, num_heads: int, grid: Grid, **knobs: Any) -> nn.Module:
    """Build mechanism `name` for a fixed (H, W) token grid: (B, H·W, C) -> (B, H·W, C)."""
    return spec(name).build(dim=dim, num_heads=num_heads, grid=grid, **knobs)
