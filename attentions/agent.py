"""Agent Attention (Han et al., ECCV 2024): softmax attention routed through m pooled agent tokens.

Follows the Swin/PVT form of the official `AgentAttention` (LeapLabTHU/Agent-Attention,
`agent_transformer/models/agent_swin.py`) built with its window equal to the whole grid, so the
layer is global. Agents are Q average-pooled to √m×√m at full width, then split into heads:

    agent_v = softmax(s·A Kᵀ + B_an) V          (agents aggregate the tokens)
    out     = softmax(s·Q Aᵀ + B_na) agent_v    (tokens read the agents back)
    y       = proj(out + DWC3×3(V))

Generalisation: the official forward assumes a square window (side = √N). Here the grid is
(H, W): the 7×7 agent-bias tables are interpolated to H×W, and the separable biases use H for
the row terms (ah_bias, ha_bias) and W for the column terms (aw_bias, wa_bias), which are exactly
the shapes the official constructor gives them for window_size=(H, W). Parameter names and
shapes match, so its checkpoints load with strict=True.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    phase,
    check_tokens,
    dwc_flops,
    matmul_flops,
    merge_heads,
    qkv_out_flops,
    split_heads,
    square_side,
    trunc_normal_,
)
from ._registry import AttentionSpec, Knob, register

BIAS_TABLE_SIDE = 7  # the official an/na bias tables are 7×7, resized to the grid


class AgentAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], m: int = 49):
        super().__init__()
        height, width = grid
        self.num_heads = num_heads
        self.grid = grid
        self.agent_num = m
        self.pool_side = square_side(m)
        if self.pool_side is None:
            raise ValueError(f"agent: m={m} is not a perfect square")
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.dwc = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
        # Shared by both attentions; a module so tests can hook the probabilities.
        self.softmax = nn.Softmax(dim=-1)
        # agent -> token biases (rows: agents, columns: grid positions)
        self.an_bias = nn.Parameter(torch.zeros(num_heads, m, BIAS_TABLE_SIDE, BIAS_TABLE_SIDE))
        self.ah_bias = nn.Parameter(torch.zeros(1, num_heads, m, height, 1))
        self.aw_bias = nn.Parameter(torch.zeros(1, num_heads, m, 1, width))
        # token -> agent biases (rows: grid positions, columns: agents)
        self.na_bias = nn.Parameter(torch.zeros(num_heads, m, BIAS_TABLE_SIDE, BIAS_TABLE_SIDE))
        self.ha_bias = nn.Parameter(torch.zeros(1, num_heads, height, 1, m))
        self.wa_bias = nn.Parameter(torch.zeros(1, num_heads, 1, width, m))
        for bias in (self.an_bias, self.na_bias, self.ah_bias, self.aw_bias, self.ha_bias, self.wa_bias):
            trunc_normal_(bias)

    def _agent_to_token_bias(self) -> Tensor:
        """(1, h, m, N): the interpolated table plus the separable row/column terms."""
        table = F.interpolate(self.an_bias, size=self.grid, mode="bilinear")
        separable = self.ah_bias + self.aw_bias
        return table.flatten(2).unsqueeze(0) + separable.flatten(3)

    def _token_to_agent_bias(self) -> Tensor:
        """(1, h, N, m): the same construction, with positions along the rows."""
        table = F.interpolate(self.na_bias, size=self.grid, mode="bilinear")
        separable = self.ha_bias + self.wa_bias
        return table.flatten(2).transpose(1, 2).unsqueeze(0) + separable.flatten(2, 3)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.grid)
        batch, tokens, channels = x.shape
        height, width = self.grid
        with phase("qkv"):
            q_full, k, v = self.qkv(x).chunk(3, dim=-1)
            q, k, v = (split_heads(t, self.num_heads) for t in (q_full, k, v))
        with phase("agent.pool"):
            q_map = q_full.transpose(1, 2).reshape(batch, channels, height, width)
            pooled = F.adaptive_avg_pool2d(q_map, self.pool_side)
            agents = split_heads(pooled.flatten(2).transpose(1, 2), self.num_heads)
        with phase("agent.aggregate"):
            logits = (agents * self.scale) @ k.transpose(-2, -1) + self._agent_to_token_bias()
            agent_v = self.softmax(logits) @ v
        with phase("agent.broadcast"):
            logits = (q * self.scale) @ agents.transpose(-2, -1) + self._token_to_agent_bias()
            out = merge_heads(self.softmax(logits) @ agent_v)
        with phase("agent.dwc"):
            v_map = merge_heads(v).transpose(1, 2).reshape(batch, channels, height, width)
            out = out + self.dwc(v_map).flatten(2).transpose(1, 2)
        with phase("proj"):
            return self.proj(out)


def agent_flops(batch: int, grid: tuple[int, int], dim: int, num_heads: int, m: int, **_) -> dict[str, int]:
    tokens = grid[0] * grid[1]
    # Per head: agent logits, agent aggregation, token logits, token read-out; d·h = C.
    two_attentions = 4 * batch * matmul_flops(m, dim, tokens)
    return {
        "core": two_attentions + dwc_flops(batch, tokens, dim, 3),
        "proj": batch * qkv_out_flops(tokens, dim),
    }


def agent_check(grid: tuple[int, int], dim: int, num_heads: int, m: int, **_) -> str | None:
    if m > grid[0] * grid[1]:
        return f"agent: m={m} agents for N={grid[0] * grid[1]} tokens; m must be at most N"
    if square_side(m) is None:
        return f"agent: m={m} is not a perfect square (agents are pooled to a √m×√m grid)"
    return None


SPEC = register(
    AttentionSpec(
        name="agent",
        summary="softmax attention through m pooled agent tokens, with agent biases and a 3×3 DWC on V",
        paper="Han et al. 2024, Agent Attention (ECCV), arXiv 2312.08874",
        complexity="O(N·m·C)",
        scaling="linear",
        factory=AgentAttention,
        flops_fn=agent_flops,
        knobs={"m": Knob(49, "number of agents, a perfect square (pooled to √m×√m), at most N", low=1,
                        high=1_048_576)},
        check_fn=agent_check,
        state_dict_compat=(
            "LeapLabTHU/Agent-Attention agent_swin.AgentAttention with window_size=grid, agent_num=m: "
            "keys qkv.*, proj.*, dwc.*, an_bias, na_bias, ah_bias, aw_bias, ha_bias, wa_bias"
        ),
    )
)
