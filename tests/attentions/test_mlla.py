"""MLLA's token mixer: official layouts and outputs, the 2-D RoPE table, and plain ELU+1 linear attention underneath."""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from official import load_official, stub_module
from seeded import random_tokens
from torch import nn

import attentions
import attentions.mlla
from attentions._common import merge_heads, split_heads
from attentions.mlla import NORMALISER_EPS

DIM, HEADS = 32, 4
OFFICIAL = ("LeapLabTHU/MLLA", "models/mlla.py")
NOT_IN_OURS = ("cpe1.", "cpe2.", "norm1.", "norm2.", "mlp.")


def build(grid=(8, 8), seed: int = 0, dim: int = DIM, num_heads: int = HEADS):
    torch.manual_seed(seed)
    return attentions.build("mlla", dim=dim, num_heads=num_heads, grid=grid).eval()


tokens = partial(random_tokens, dim=DIM)


# -- state-dict layout read from the official code ------------------------------------------------


def test_matches_official_state_dict():
    # LeapLabTHU/MLLA models/mlla.py @ 66b6d29 (file @ 5a17196), MLLABlock.__init__ for MLLA-T stage 1
    # (cfgs/mlla_t.yaml: embed_dim 64, 2 heads, 56x56 tokens, qkv_bias True): in_proj, act_proj, out_proj =
    # Linear(dim, dim); dwc = Conv2d(dim, dim, 3, groups=dim); attn = LinearAttention: qk = Linear(dim, 2·dim),
    # lepe = Conv2d(dim, dim, 3, groups=dim), rope = RoPE((56, 56, dim)) whose persistent buffer rotations is
    # (H, W, 2·(dim // 4), 2); elu holds no state. Left out: cpe1, cpe2, norm1, norm2, mlp.
    module = attentions.build("mlla", dim=64, num_heads=2, grid=(56, 56))
    expected = {
        "in_proj.weight": (64, 64),
        "in_proj.bias": (64,),
        "act_proj.weight": (64, 64),
        "act_proj.bias": (64,),
        "dwc.weight": (64, 1, 3, 3),
        "dwc.bias": (64,),
        "attn.qk.weight": (128, 64),
        "attn.qk.bias": (128,),
        "attn.lepe.weight": (64, 1, 3, 3),
        "attn.lepe.bias": (64,),
        "attn.rope.rotations": (56, 56, 32, 2),
        "out_proj.weight": (64, 64),
        "out_proj.bias": (64,),
    }
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


def test_rotation_table_rows_then_columns():
    # RoPE.__init__: k_max = C // 4 frequencies θ_t = 1 / 10000^(t / k_max); pair p < k_max turns by row·θ_p,
    # pair p >= k_max by column·θ_(p - k_max); the last axis holds (cos, sin).
    grid = (3, 5)
    rotations = build(grid).attn.rope.rotations.double()
    freqs = DIM // 4
    theta = 10000.0 ** (-torch.arange(freqs, dtype=torch.float64) / freqs)
    for row in range(grid[0]):
        for col in range(grid[1]):
            angles = torch.cat([row * theta, col * theta])
            expected = torch.stack([angles.cos(), angles.sin()], dim=-1)
            torch.testing.assert_close(rotations[row, col], expected, rtol=0, atol=1e-6)


# -- the official module ----------------------------------------------------------------------------


def official_module():
    stubs = {
        "timm": stub_module("timm"),
        "timm.models": stub_module("timm.models"),
        "timm.models.layers": stub_module("timm.models.layers", DropPath=nn.Identity, to_2tuple=None,
                                          trunc_normal_=None),
    }
    return load_official(*OFFICIAL, stubs=stubs)


@pytest.mark.parametrize("grid", [(4, 8), (8, 4), (5, 3)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_rope_matches_official_on_non_square_grids(grid):
    official = official_module().RoPE(shape=(*grid, DIM))
    ours = build(grid).attn.rope
    torch.testing.assert_close(ours.rotations, official.rotations, rtol=0, atol=0)
    x = tokens(grid)
    expected = official(x.view(2, *grid, DIM)).reshape(2, -1, DIM)
    torch.testing.assert_close(ours(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dim, num_heads, side", [(32, 4, 8), (12, 4, 6)], ids=["d8", "odd-head-width"])
def test_attention_matches_official_linear_attention(dim, num_heads, side):
    grid = (side, side)  # the official forward takes h = w = sqrt(N)
    ours = build(grid, dim=dim, num_heads=num_heads).attn
    official = official_module().LinearAttention(dim=dim, input_resolution=grid, num_heads=num_heads).eval()
    official.load_state_dict(ours.state_dict(), strict=True)
    x = tokens(grid, dim=dim)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), official(x), rtol=1e-5, atol=1e-5)


def test_mixer_matches_official_block_path():
    # The official block with its norms made identities and cpe1, cpe2 and the MLP's last layer zeroed computes
    # x + mixer(x); the rest of its state dict loads into ours with strict=True.
    grid = (8, 8)
    block = official_module().MLLABlock(dim=DIM, input_resolution=grid, num_heads=HEADS).eval()
    with torch.no_grad():  # built alone, the block keeps PyTorch's default init: every bias is nonzero
        for conv in (block.cpe1, block.cpe2, block.mlp.fc2):
            conv.weight.zero_()
            conv.bias.zero_()
    block.norm1, block.norm2 = nn.Identity(), nn.Identity()
    ours = build(grid, seed=3)
    weights = {k: v for k, v in block.state_dict().items() if not k.startswith(NOT_IN_OURS)}
    ours.load_state_dict(weights, strict=True)
    x = tokens(grid)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), block(x) - x, rtol=1e-5, atol=1e-5)


# -- identities ---------------------------------------------------------------------------------------


def hand_linear_attention(u: torch.Tensor, qk: nn.Linear) -> torch.Tensor:
    """φ(Q)φ(K)ᵀV / (φ(Q)·Σφ(K) + N·ε) per head with φ = elu + 1 and V = u, through the explicit N×N map. The
    official z = 1 / (φ(Q)·mean φ(K) + ε) with the 1/N inside the state is this with ε scaled by N."""
    count = u.shape[1]
    q, k = (F.elu(t) + 1 for t in qk(u).chunk(2, dim=-1))
    q, k, v = (split_heads(t, HEADS) for t in (q, k, u))
    scores = q @ k.transpose(-2, -1)
    return merge_heads((scores @ v) / (scores.sum(-1, keepdim=True) + count * NORMALISER_EPS))


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_without_rope_and_lepe_it_is_gated_elu_linear_attention(grid):
    module = build(grid).double()
    with torch.no_grad():
        module.attn.rope.rotations[..., 0] = 1.0  # every angle 0: the rotation is the identity
        module.attn.rope.rotations[..., 1] = 0.0
        module.attn.lepe.weight.zero_()
        module.attn.lepe.bias.zero_()
    x = tokens(grid, dtype=torch.float64)
    with torch.no_grad():
        gate = F.silu(module.act_proj(x))
        u_map = module.in_proj(x).transpose(1, 2).reshape(2, DIM, *grid)
        u = F.silu(F.conv2d(u_map, module.dwc.weight, module.dwc.bias, padding=1, groups=DIM))
        u = u.flatten(2).transpose(1, 2)
        expected = module.out_proj(hand_linear_attention(u, module.attn.qk) * gate)
        torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grid", [(6, 6), (4, 7)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_rope_scores_depend_only_on_relative_position(grid):
    # One query vector and one key vector at every position: per head, RoPE(q)_a · RoPE(k)_b depends on the grid
    # offset a - b only, so moving both tokens one row down or one column right leaves the score unchanged (to the
    # float32 precision of the official rotation table).
    rope = build(grid).attn.rope.double()
    gen = torch.Generator().manual_seed(2)
    q, k = (torch.randn(1, 1, DIM, generator=gen, dtype=torch.float64).expand(1, grid[0] * grid[1], DIM)
            for _ in range(2))
    scores = split_heads(rope(q), HEADS) @ split_heads(rope(k), HEADS).transpose(-2, -1)
    scores = scores[0].view(HEADS, *grid, *grid)
    height, width = grid
    torch.testing.assert_close(scores[:, 1:, :, 1:, :], scores[:, :-1, :, :-1, :], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(scores[:, :, 1:, :, 1:], scores[:, :, :-1, :, :-1], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(scores[:, 0, 0, 0, 0], scores[:, 0, 0, height - 1, width - 1])


def test_rope_keeps_each_pairs_length():
    grid = (4, 8)
    rope = build(grid).attn.rope.double()
    x = tokens(grid, dtype=torch.float64)
    pair_norms = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)
    torch.testing.assert_close(pair_norms(rope(x)), pair_norms(x), rtol=1e-6, atol=1e-6)  # a float32 table


def test_float64_is_not_rounded_to_float32():
    # The official RoPE casts to float32 for its complex product; ours keeps the input's dtype.
    module = build((4, 8)).double()
    x = tokens((4, 8), dtype=torch.float64)
    assert module(x).dtype == torch.float64
    assert module.attn.rope(x).dtype == torch.float64


# -- validation -------------------------------------------------------------------------------------


def test_check_needs_dim_a_multiple_of_four_in_one_line():
    # dim 6 with 3 heads: the head width 2 is even, but RoPE needs dim/4 pairs per axis.
    reason = attentions.spec("mlla").check(grid=(8, 8), dim=6, num_heads=3)
    assert reason is not None and "multiple of 4" in reason and "\n" not in reason
    with pytest.raises(attentions.UnsupportedConfig, match="multiple of 4"):
        attentions.build("mlla", dim=6, num_heads=3, grid=(8, 8))
    # An odd head width is fine: the rotation acts on the full width before the head split (the official does too).
    assert attentions.spec("mlla").check(grid=(4, 8), dim=12, num_heads=4) is None
    assert build((4, 8), dim=12, num_heads=4)(tokens((4, 8), dim=12)).shape == (2, 32, 12)
