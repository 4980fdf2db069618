"""Seeded random tokens for the mechanism tests: one generator per call, so a test's input depends only on its
arguments, never on what ran before it."""
from __future__ import annotations

import torch


def random_tokens(grid: tuple[int, int], batch: int = 2, dtype: torch.dtype = torch.float32, seed: int = 1, *,
                  dim: int, draw: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, H·W, dim) standard-normal tokens, drawn in `draw` and cast to `dtype` (drawing in float64 gives
    different numbers than drawing in float32 and casting: the tests that compare against float64 references pick
    which they were written with)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, grid[0] * grid[1], dim, generator=gen, dtype=draw).to(dtype)
