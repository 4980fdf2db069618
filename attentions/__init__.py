"""Vision attention mechanisms as plain PyTorch modules behind one registry.

    import attentions
    attentions.available()
    m = attentions.build("rpattention", dim=384, num_heads=6, grid=(64, 64), m=64)
    y = m(x)                      # (B, H*W, C) -> (B, H*W, C)
    attentions.spec("rpattention").flops(batch=1, grid=(64, 64), dim=384, num_heads=6, m=64)

Nothing here knows about the rpbench harness.
"""
from __future__ import annotations

import importlib

from ._registry import (
    FLOP_CONVENTION,
    AttentionSpec,
    Knob,
    UnsupportedConfig,
    available,
    build,
    register,
    spec,
)
from .flop_count import count_flops

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
)

for _module in _MECHANISM_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "FLOP_CONVENTION",
    "AttentionSpec",
    "Knob",
    "UnsupportedConfig",
    "available",
    "build",
    "count_flops",
    "register",
    "spec",
]
