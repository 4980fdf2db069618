"""What `rpbench maps` hands from the measuring room (torch) to the view that draws it (no torch): plain numpy.

It lives in core because both sides need it and neither may import the other (measure computes the maps from a
module's tensors, views renders them into a page and static files).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

RANDOM_WEIGHTS = "weights are random (no --checkpoint)"


@dataclass(frozen=True)
class RoutingMaps:
    """Figure 1 of the RPAttention paper for one mechanism and one image, as arrays on the token grid.

    `assignment[i, j]` is the representative (or agent) token (i, j) is assigned to; `path[p]` is, for query point p,
    the head-averaged weight with which that output token depends on every token's value through the
    representatives; `dense[p]` is dense softmax attention's map for the same point from the same q/k projections.
    """

    attention: str
    knobs: Mapping[str, Any]
    resolution: int
    patch: int
    grid: tuple[int, int]
    dim: int
    heads: int
    reps: int  # M: representatives (agents for agent attention)
    seed: int
    image: np.ndarray  # (R, R, 3) uint8: the image as the model saw it (cropped and resized)
    assignment: np.ndarray  # (H, W) int
    points: tuple[tuple[int, int], ...]  # (x, y) in pixels of the R×R image
    path: np.ndarray  # (P, H, W)
    dense: np.ndarray  # (P, H, W)
    embedding: str  # how pixels became tokens, in words
    weights: str  # RANDOM_WEIGHTS, or where the weights came from
    rep_word: str = "representative"  # what the mechanism calls its M tokens
    path_formula: str = ""  # the composed stages, in words
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM_WEIGHTS

    def point_token(self, index: int) -> tuple[int, int]:
        """(row, column) on the token grid of query point `index`."""
        x, y = self.points[index]
        return y // self.patch, x // self.patch
