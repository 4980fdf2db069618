"""RPAttention: degenerate cases with known answers, invariants, FLOPs, and a plain reference."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import attentions
from attentions._common import merge_heads, split_heads
from attentions.rpattention import RPAttention, gather, representative_attention

DIM, HEADS = 32, 4
GRID = (4, 8)
TOKENS = GRID[0] * GRID[1]


def make(seed: int = 0, grid=GRID, **knobs) -> RPAttention:
    torch.manual_seed(seed)
    return attentions.build("rpattention", dim=DIM, num_heads=HEADS, grid=grid, **{"m": 8, **knobs}).eval()


def randn(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(s·QKᵀ)V per head with an explicit score matrix; (B, N, C) in and out."""
    q, k, v = (split_heads(t, HEADS) for t in (q, k, v))
    scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    return merge_heads(scores.softmax(dim=-1) @ v)


def permutation_routing(batch: int, tokens: int) -> tuple[Tensor, Tensor]:
    """One-hot routing: token i goes to representative perm[i]; returns (routing, perm)."""
    perm = torch.randperm(tokens, generator=torch.Generator().manual_seed(3))
    routing = torch.zeros(batch, tokens, tokens, dtype=torch.float64)
    routing[:, torch.arange(tokens), perm] = 1.0
    return routing, perm


def straightforward_rpattention(module: RPAttention, x: Tensor) -> Tensor:
    """The plain reading of the figure (default knobs), with the module's weights."""
    batch, tokens, channels = x.shape
    q, k, v = module.qkv(x).chunk(3, dim=-1)
    routing = torch.softmax(k @ module.route.weight.T, dim=-1)
    routing = routing / routing.sum(dim=1, keepdim=True)
    k_rep, u = (routing.transpose(1, 2) @ torch.cat([k, v], dim=-1)).chunk(2, dim=-1)
    q, k_rep, u = (split_heads(t, module.num_heads) for t in (q, k_rep, u))
    v_rep = F.scaled_dot_product_attention(u, u, u)
    out = merge_heads(F.scaled_dot_product_attention(q, k_rep, v_rep))
    image = v.transpose(1, 2).reshape(batch, channels, *module.grid)
    out = out + module.dwc(image).flatten(2).transpose(1, 2)
    return module.proj(out)


def test_identity_routing_without_interaction_is_dense_attention():
    q, k, v = randn(2, TOKENS, DIM, seed=1), randn(2, TOKENS, DIM, seed=2), randn(2, TOKENS, DIM, seed=3)
    routing, _ = permutation_routing(2, TOKENS)
    out = representative_attention(q, torch.cat([k, v], dim=-1), routing, HEADS, interact=False)
    torch.testing.assert_close(out, explicit_attention(q, k, v))


def test_identity_routing_with_interaction_is_dense_attention_on_mixed_values():
    q, k, v = randn(2, TOKENS, DIM, seed=1), randn(2, TOKENS, DIM, seed=2), randn(2, TOKENS, DIM, seed=3)
    routing, _ = permutation_routing(2, TOKENS)
    out = representative_attention(q, torch.cat([k, v], dim=-1), routing, HEADS, interact=True)
    mixed_values = explicit_attention(v, v, v)  # softmax(s·VVᵀ)V per head
    torch.testing.assert_close(out, explicit_attention(q, k, mixed_values))
    assert not torch.allclose(out, explicit_attention(q, k, v))


def test_one_representative_gives_every_token_the_mean_value():
    module = make(m=1, dwc=0).double()
    x = randn(2, TOKENS, DIM)
    with torch.no_grad():
        v = module.qkv(x)[..., 2 * DIM :]
        expected = module.proj(v.mean(dim=1, keepdim=True)).expand_as(x)
        torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize(
    "knobs",
    [{}, {"per_head_routing": True, "em_iters": 2}, {"route_over": "tokens", "interact_proj": True}],
    ids=["default", "per_head_em2", "tokens_proj"],
)
def test_permutation_equivariant_without_dwc(knobs):
    module = make(dwc=0, **knobs).double()
    x = randn(2, TOKENS, DIM)
    perm = torch.randperm(TOKENS, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(module(x[:, perm]), module(x)[:, perm])


@pytest.mark.parametrize("per_head", [False, True], ids=["shared", "per_head"])
def test_routing_rows_sum_to_one_and_normalised_columns_sum_to_one(per_head):
    module = make(per_head_routing=per_head).double()
    k = randn(2, TOKENS, DIM)
    with torch.no_grad():
        routing = module.routing_weights(k)
        torch.testing.assert_close(routing.sum(dim=-1), torch.ones_like(routing[..., 0]))
        # Gathering all-ones token features returns each normalised column's sum over N.
        ones = torch.ones(*routing.shape[:-1], 1, dtype=routing.dtype)
        column_sums = gather(routing, ones, normalize=True)
        torch.testing.assert_close(column_sums, torch.ones_like(column_sums))
        assert not torch.allclose(gather(routing, ones, normalize=False), torch.ones(1, dtype=routing.dtype))


def test_routing_over_tokens_has_stochastic_columns():
    module = make(route_over="tokens").double()
    with torch.no_grad():
        routing = module.routing_weights(randn(2, TOKENS, DIM))
    torch.testing.assert_close(routing.sum(dim=-2), torch.ones_like(routing[:, 0]))


@pytest.mark.parametrize(
    "knobs",
    [
        {},
        {"em_iters": 2},
        {"interact": False},
        {"interact_proj": True},
        {"per_head_routing": True},
        {"per_head_routing": True, "em_iters": 3},
        {"dwc": 0},
        {"dwc": 5},
        {"route_over": "tokens"},
        {"m": 1, "normalize": False, "tau": 0.5},
    ],
    ids=lambda knobs: "-".join(f"{k}={v}" for k, v in knobs.items()) or "default",
)
def test_analytic_flops_equal_counted(knobs):
    module = make(**knobs)
    x = torch.randn(3, TOKENS, DIM)
    counted = attentions.count_flops(lambda: module(x))
    rpattention = attentions.spec("rpattention")
    analytic = rpattention.flops(batch=3, grid=GRID, dim=DIM, num_heads=HEADS, **{"m": 8, **knobs})
    assert analytic["total"] == counted


def test_module_equals_straightforward_reference():
    module = make(grid=(8, 8)).double()
    x = randn(2, 64, DIM)
    with torch.no_grad():
        torch.testing.assert_close(module(x), straightforward_rpattention(module, x))


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"m": 0}, r"knob m must be in \[1, "),
        ({"m": GRID[0] * GRID[1] + 1}, "m must be at most N"),
        ({"em_iters": 0}, r"knob em_iters must be in \[1, 100\]"),
        ({"em_iters": 10**9}, r"knob em_iters must be in \[1, 100\]"),
        ({"dwc": 4}, "odd kernel"),
        ({"dwc": -3}, r"knob dwc must be in \[0, 63\]"),
        ({"tau": 0.0}, r"knob tau must be in \[1e-06, "),
        ({"tau": float("nan")}, "knob tau must be finite"),
        ({"tau": float("inf")}, "knob tau must be finite"),
        ({"interact": False, "interact_proj": True}, "needs interact"),
        ({"route_over": "heads"}, "not one of"),
    ],
)
def test_bad_knobs_are_one_line_reasons(knobs, message):
    knobs = {"m": 16, **knobs}  # the default m = 64 is more than the 32 tokens of GRID
    reason = attentions.spec("rpattention").check(grid=GRID, dim=DIM, num_heads=HEADS, **knobs)
    assert re.search(message, reason) and "\n" not in reason
    with pytest.raises(attentions.UnsupportedConfig, match=message):
        attentions.build("rpattention", dim=DIM, num_heads=HEADS, grid=GRID, **knobs)
