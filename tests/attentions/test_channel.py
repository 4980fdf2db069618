"""channel: DaViT's state-dict layout, timm's ChannelAttention from the mirror, a hand-written check, cost in N."""
from __future__ import annotations

import types
from functools import partial

import pytest
import torch
from official import load_official, stub_module
from seeded import random_tokens
from torch import nn

import attentions
import attentions.channel

DIM, HEADS = 32, 4
TIMM = "huggingface/pytorch-image-models"


def build(grid=(8, 8), seed: int = 0, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return attentions.build("channel", dim=DIM, num_heads=HEADS, grid=grid).to(dtype).eval()


tokens = partial(random_tokens, dim=DIM)


def test_channel_matches_official_state_dict():
    # timm timm/models/davit.py @ aa4b5850 (file last changed c0e3d24f), ChannelAttention.__init__ as
    # ChannelBlock builds it for DaViT-T stage 1 (dim 96, 3 heads, DaVit's qkv_bias=True):
    # qkv = Linear(96, 288) with bias, proj = Linear(96, 96) with bias.
    module = attentions.build("channel", dim=96, num_heads=3, grid=(56, 56))
    expected = {"qkv.weight": (288, 96), "qkv.bias": (288,), "proj.weight": (96, 96), "proj.bias": (96,)}
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


# -- timm's ChannelAttention, where mirrored ---------------------------------------------------------


def timm_davit() -> types.ModuleType:
    """timm's davit.py from the mirror, executed inside a stand-in `timm.models` package."""
    passthrough = lambda attr: (lambda *args, **kwargs: args[0] if args else None)
    stubs = {name: stub_module(name, __getattr__=passthrough) for name in (
        "timm", "timm.data", "timm.layers", "timm.models", "timm.models._builder", "timm.models._features",
        "timm.models._features_fx", "timm.models._manipulate", "timm.models._registry")}
    return load_official(TIMM, "timm/models/davit.py", stubs=stubs, package="timm.models")


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_matches_timm_channel_attention(grid):
    ours = build(grid)
    theirs = timm_davit().ChannelAttention(DIM, num_heads=HEADS, qkv_bias=True).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = tokens(grid)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


# -- always ------------------------------------------------------------------------------------------------


def hand_written(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per batch element and head, the d×d channel map as explicit sums over tokens, then Q's channels mixed."""
    d = DIM // HEADS
    qkv = x @ module.qkv.weight.T + module.qkv.bias
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for head in range(HEADS):
            cols = slice(head * d, (head + 1) * d)
            q, k, v = (qkv[b, :, part * DIM :][:, cols] for part in range(3))  # (N, d) each
            logits = torch.stack([torch.stack([(k[:, i] * v[:, j]).sum() for j in range(d)]) for i in range(d)])
            weights = torch.softmax(logits * d**-0.5, dim=1)  # row i: key channel i over value channels j
            for i in range(d):
                out[b, :, head * d + i] = (q * weights[i]).sum(dim=1)
    return out @ module.proj.weight.T + module.proj.bias


@pytest.mark.parametrize("grid", [(4, 8), (3, 5)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_equals_hand_written_channel_attention(grid):
    module = build(grid, dtype=torch.float64)
    x = tokens(grid, dtype=torch.float64)
    torch.testing.assert_close(module(x), hand_written(module, x), rtol=1e-5, atol=1e-5)


def test_tokens_are_permutation_equivariant():
    # Attention over channels sums over all tokens, so reordering tokens only reorders the output.
    module = build((8, 8), dtype=torch.float64)
    x = tokens((8, 8), dtype=torch.float64)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(module(x[:, order]), module(x)[:, order], rtol=1e-10, atol=1e-10)


def test_cost_is_linear_in_tokens():
    counted = {}
    for grid in [(4, 8), (8, 8), (16, 8), (32, 8)]:
        module, x = build(grid), tokens(grid, batch=1)
        counted[grid[0] * grid[1]] = attentions.count_flops(lambda m=module, x=x: m(x))
        analytic = attentions.spec("channel").flops(batch=1, grid=grid, dim=DIM, num_heads=HEADS)
        assert analytic["total"] == counted[grid[0] * grid[1]]
    per_token = {n: flops / n for n, flops in counted.items()}
    assert len(set(per_token.values())) == 1, per_token


def test_check_rejects_only_what_the_registry_rejects():
    # No mechanism-specific limits: any grid and any dim divisible by the heads runs.
    spec = attentions.spec("channel")
    assert spec.check_fn is None
    assert spec.check((1, 1), DIM, HEADS) is None
    assert spec.check((8, 8), 30, HEADS) == "dim 30 is not divisible by num_heads 4"
