"""Linear and Efficient attention: the two product orders agree; Efficient's matrix is row-stochastic."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attentions.efficient import efficient_attention
from attentions.linear import linear_attention

SHAPE = (2, 3, 40, 8)  # (B, h, N, d)


def randn(seed: int, shape=SHAPE) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("core", [linear_attention, efficient_attention], ids=["linear", "efficient"])
def test_product_orders_agree(core):
    q, k, v = randn(1), randn(2), randn(3)
    torch.testing.assert_close(core(q, k, v, order="linear"), core(q, k, v, order="quadratic"))


def test_linear_attention_matches_its_definition():
    q, k, v = randn(1), randn(2), randn(3)
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    scores = phi_q @ phi_k.transpose(-1, -2)
    expected = (scores @ v) / (scores.sum(dim=-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(linear_attention(q, k, v), expected)


def test_efficient_attention_matrix_is_row_stochastic():
    q, k = randn(1), randn(2)
    # With V = I the output is the N×N matrix ρq(Q)ρk(K)ᵀ itself.
    identity = torch.eye(SHAPE[2], dtype=torch.float64).expand(*SHAPE[:2], -1, -1)
    matrix = efficient_attention(q, k, identity, order="quadratic")
    torch.testing.assert_close(matrix.sum(dim=-1), torch.ones(SHAPE[:3], dtype=torch.float64))
    assert (matrix > 0).all()
    torch.testing.assert_close(efficient_attention(q, k, identity, order="linear"), matrix)


@pytest.mark.parametrize("core", [linear_attention, efficient_attention], ids=["linear", "efficient"])
def test_unknown_order_is_a_clear_error(core):
    q = randn(1)
    with pytest.raises(ValueError, match="order must be one of"):
        core(q, q, q, order="cubic")
