"""axial: timm Attention's layout, dense attention on one-row and one-column grids, and a hand-written two-hop check."""
from __future__ import annotations

from functools import partial

import pytest
import torch
from seeded import random_tokens
from torch import nn

import attentions
import attentions.axial

DIM, HEADS = 32, 4


def make(name: str, grid, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return attentions.build(name, dim=DIM, num_heads=HEADS, grid=grid).double().eval()


tokens = partial(random_tokens, dim=DIM, dtype=torch.float64, draw=torch.float64)


def test_axial_matches_timm_attention_state_dict():
    # timm timm/layers/attention.py @ aa4b5850, `Attention` as ViT-S builds it (dim 384, 6 heads, qkv_bias=True):
    # qkv = Linear(384, 1152), proj = Linear(384, 384); q_norm/k_norm/norm are Identity (no state).
    module = attentions.build("axial", dim=384, num_heads=6, grid=(14, 14))
    expected = {"qkv.weight": (1152, 384), "qkv.bias": (1152,), "proj.weight": (384, 384), "proj.bias": (384,)}
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


@pytest.mark.parametrize("grid", [(1, 12), (12, 1), (1, 1)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_one_row_or_one_column_is_dense(grid):
    # One hop runs over a single key (softmax = 1, the identity); the other spans every token.
    dense, axial = make("dense", grid), make("axial", grid, seed=3)
    axial.load_state_dict(dense.state_dict(), strict=True)
    x = tokens(grid)
    torch.testing.assert_close(axial(x), dense(x), rtol=1e-5, atol=1e-5)


def hand_written(module: nn.Module, x: torch.Tensor, grid) -> torch.Tensor:
    """y = proj(A_col (A_row V)) with A_row, A_col the full N×N softmax maps masked to the row / the column."""
    height, width = grid
    d = DIM // HEADS
    rows = torch.arange(height).repeat_interleave(width)  # row of token n (row-major)
    cols = torch.arange(width).repeat(height)
    same_row = rows[:, None] == rows[None, :]
    same_col = cols[:, None] == cols[None, :]
    q, k, v = (x @ module.qkv.weight.T + module.qkv.bias).split(DIM, dim=-1)
    heads = []
    for head in range(HEADS):
        part = slice(head * d, (head + 1) * d)
        logits = q[..., part] @ k[..., part].transpose(-1, -2) * d**-0.5  # (B, N, N)
        a_row = torch.softmax(logits.masked_fill(~same_row, float("-inf")), dim=-1)
        a_col = torch.softmax(logits.masked_fill(~same_col, float("-inf")), dim=-1)
        heads.append(a_col @ (a_row @ v[..., part]))
    return torch.cat(heads, dim=-1) @ module.proj.weight.T + module.proj.bias


@pytest.mark.parametrize("grid", [(4, 6), (6, 4)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_equals_hand_written_two_hops(grid):
    module = make("axial", grid)
    x = tokens(grid)
    torch.testing.assert_close(module(x), hand_written(module, x, grid), rtol=1e-5, atol=1e-5)


def test_two_hops_are_not_dense_attention():
    # A guard on the identities above: on a real 2-D grid axial is a different function from dense.
    grid = (4, 6)
    dense, axial = make("dense", grid), make("axial", grid, seed=3)
    axial.load_state_dict(dense.state_dict(), strict=True)
    x = tokens(grid)
    assert (axial(x) - dense(x)).abs().max() > 1e-3


def test_every_query_reaches_every_value_in_two_hops():
    # The gradient of one output token reaches every input token, though each hop sees one row or column.
    grid = (4, 6)
    module = make("axial", grid)
    x = tokens(grid, batch=1).requires_grad_()
    module(x)[0, 0].sum().backward()
    assert (x.grad[0].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("grid", [(1, 12), (12, 1), (4, 6), (7, 3)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_flops_equal_counted(grid):
    module = make("axial", grid).float()
    x = tokens(grid, batch=3).float()
    analytic = attentions.spec("axial").flops(batch=3, grid=grid, dim=DIM, num_heads=HEADS)
    assert analytic["total"] == attentions.count_flops(lambda: module(x))
    height, width = grid
    assert analytic["core"] == 4 * 3 * height * width * (height + width) * DIM  # 4·B·N·(H+W)·C


def test_check_rejects_only_what_the_registry_rejects():
    spec = attentions.spec("axial")
    assert spec.check_fn is None
    assert spec.check((1, 1), DIM, HEADS) is None
    assert spec.check((8, 8), 30, HEADS) == "dim 30 is not divisible by num_heads 4"
