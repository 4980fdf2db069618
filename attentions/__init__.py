"""Vision attention mechanisms as plain PyTorch modules behind one registry.

    import attentions
    attentions.available()
    m = attentions.build("rpattention", dim=384, num_heads=6, grid=(64, 64), m=64)
    y = m(x)                      # (B, H*W, C) -> (B, H*W, C)
    attentions.spec("rpattention").flops(batch=1, grid=(64, 64), dim=384, num_heads=6, m=64)

Your own mechanism joins the same registry (see `register` and `_plugins`): decorate it with
`@attentions.register("name", knobs=..., flops=..., check=...)`, name it as `pkg.module:Factory` or
`path/to/file.py:Factory`, or install a package with an `rpbench.attentions` entry point.

Nothing here knows about the rpbench harness.
"""
from __future__ import annotations

import importlib

from ._lookup import available, build, builtin, spec
from ._registry import (
    FLOP_CONVENTION,
    AttentionSpec,
    Knob,
    UnsupportedConfig,
    register,
)
from ._plugins import ENTRY_POINT_GROUP, is_reference, plugin_failures
from ._plugins import failure as plugin_failure
from .flop_count import count_flops, uncounted_flops

# One module per mechanism; each registers its AttentionSpec when imported.
_MECHANISM_MODULES = (
    "dense",
    "dense_naive",
    "window",
    "grid",
    "sra",
    "agent",
    "linear",
    "efficient",
    "focused",
    "rpattention",
    "cbsa",
    "biformer",
    "lemevit",
    "mlla",
    "litemla",
    "channel",
    "axial",
    "neighborhood",
)

for _module in _MECHANISM_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "ENTRY_POINT_GROUP",
    "FLOP_CONVENTION",
    "AttentionSpec",
    "Knob",
    "UnsupportedConfig",
    "available",
    "build",
    "builtin",
    "count_flops",
    "is_reference",
    "plugin_failure",
    "plugin_failures",
    "register",
    "spec",
    "uncounted_flops",
]
