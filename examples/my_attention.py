"""A plain factory in a file: `rpbench run --attention ./examples/my_attention.py:ReluAttention --tokens 1024`.

Any class or function taking (dim, num_heads, grid, **knobs) and returning a module that maps (B, N, C) to
(B, N, C) works; knobs come from `--knob key=value` or a suite's [[attention]] table, as given. Without a FLOP
formula rpbench reports the FLOPs it counts and says so on every row; register the class with
`@attentions.register` (see examples/rpbench-example-plugin) to give knobs with docs, a formula and a check.
"""
from __future__ import annotations

from torch import Tensor, nn


class ReluAttention(nn.Module):
    """Linear attention with a ReLU feature map (Katharopoulos-style, normalised by the mean key)."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], eps: float = 1e-6):
        super().__init__()
        self.num_heads, self.eps = num_heads, float(eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = q.relu(), k.relu()
        context = k.transpose(-2, -1) @ v / tokens  # (B, h, d, d): averaged, so float16 does not overflow
        norm = q @ k.mean(dim=2, keepdim=True).transpose(-2, -1) + self.eps
        out = (q @ context) / norm
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
