"""PVT v2 spatial-reduction attention (SRA): every query attends to a shrunken key/value map.

Follows whai362/PVT `classification/pvt_v2.py`, class `Attention` with linear=False and
qkv_bias=True (as every pvt_v2_b* model sets): queries from all N tokens; keys and values from
LayerNorm(Conv2d k=r, stride=r (x)), a map of N' = (H//r)·(W//r) tokens. With r = 1 there is no
conv and no norm and the layer is plain multi-head attention. State-dict keys match that class:
q.*, kv.*, proj.*, plus sr.* and norm.* only when r > 1.

Profiler phases: `qkv` holds q, the reduction conv + norm and kv; `core` the attention; `proj`
the output Linear.

FLOPs: core = Q·Kᵀ and A·V against N' keys = 4·B·N·N'·C; proj = q (2·B·N·C²) + kv (4·B·N'·C²)
+ output (2·B·N·C²) + the reduction conv (2·B·N'·C²·r², r > 1 only).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._common import attention_flops, check_tokens, matmul_flops, merge_heads, phase, split_heads
from ._registry import AttentionSpec, Knob, register


class SpatialReductionAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], sr_ratio: int = 2):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio) if sr_ratio > 1 else None
        self.norm = nn.LayerNorm(dim) if sr_ratio > 1 else None

    def _reduce(self, x: Tensor) -> Tensor:
        """(B, N, C) -> (B, N', C): the map keys and values are computed from."""
        if self.sr is None:
            return x
        batch, _, channels = x.shape
        maps = x.transpose(1, 2).reshape(batch, channels, *self.grid)
        return self.norm(self.sr(maps).flatten(2).transpose(1, 2))

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        with phase("qkv"):
            q = split_heads(self.q(x), self.num_heads)
            k, v = (split_heads(t, self.num_heads) for t in self.kv(self._reduce(x)).chunk(2, dim=-1))
        with phase("core"):
            out = F.scaled_dot_product_attention(q, k, v)
        with phase("proj"):
            return self.proj(merge_heads(out))


def reduced_tokens(grid: tuple[int, int], sr_ratio: int) -> int:
    return (grid[0] // sr_ratio) * (grid[1] // sr_ratio)


def sra_check(grid: tuple[int, int], sr_ratio: int, **_) -> str | None:
    if min(grid) < sr_ratio:
        return f"grid {grid[0]}x{grid[1]} is smaller than sr_ratio {sr_ratio}: nothing left to attend to"
    return None


def sra_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, sr_ratio: int) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    reduced = reduced_tokens(grid, sr_ratio)
    proj = matmul_flops(tokens, dim, dim) * 2 + matmul_flops(reduced, dim, 2 * dim)
    if sr_ratio > 1:
        proj += matmul_flops(reduced, dim * sr_ratio * sr_ratio, dim)
    return {
        "core": attention_flops(batch * num_heads, tokens, reduced, dim // num_heads),
        "proj": batch * proj,
    }


SPEC = register(
    AttentionSpec(
        name="sra",
        summary="PVT v2 spatial-reduction attention: keys/values from an r×r strided conv + LayerNorm "
        "of the map (N' = N/r²); FLOPs core = 4·B·N·N'·C, proj = q/kv/out Linear + reduction conv",
        paper="Wang et al. 2021/2022 (PVT, PVT v2)",
        complexity="O(N²·C/r²)",
        scaling="quadratic",
        factory=SpatialReductionAttention,
        flops_fn=sra_flops,
        knobs={"sr_ratio": Knob(2, "spatial reduction ratio r: conv kernel and stride for keys/values", low=1, high=4096)},
        check_fn=sra_check,
        state_dict_compat="whai362/PVT pvt_v2 `Attention` (linear=False, qkv_bias=True): q.*, kv.*, proj.*, "
        "sr.* and norm.* when sr_ratio > 1",
    )
)
