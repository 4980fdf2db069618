"""BiFormer's bi-level routing attention: official layout and outputs, a hand-written routed reference, identities."""
from __future__ import annotations

import math
import re
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from official import load_official, stub_module
from seeded import random_tokens

import attentions
import attentions.biformer
from attentions._common import merge_heads, split_heads

DIM, HEADS = 32, 4
OFFICIAL = ("rayleizhu/BiFormer", "ops/bra_legacy.py")


def build(grid=(8, 8), seed: int = 0, **knobs):
    torch.manual_seed(seed)
    module = attentions.build("biformer", dim=DIM, num_heads=HEADS, grid=grid, **knobs).eval()
    with torch.no_grad():  # nonzero biases everywhere, so padded tokens are not silent
        for param in module.parameters():
            if param.dim() == 1:
                param.normal_(0, 0.1)
    return module


tokens = partial(random_tokens, dim=DIM)


def reference(module, x: torch.Tensor, routed: bool = True) -> torch.Tensor:
    """BRA written out on the padded token grid: masked dense attention (keys outside the routed regions
    removed; all keys when routed=False) + lepe(v) -> wo, cropped. Independent of the module's partitioning."""
    batch, _, channels = x.shape
    (height, width), (hp, wp), n_win = module.grid, module.padded, module.n_win
    maps = F.pad(x.view(batch, height, width, channels), (0, 0, 0, wp - width, 0, hp - height))
    q, k, v = module.qkv.qkv(maps.reshape(batch, hp * wp, channels)).chunk(3, dim=-1)
    scale = channels ** -0.5  # the official qk_dim ** -0.5, not head_dim ** -0.5
    rows, cols = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
    region = ((rows // (hp // n_win)) * n_win + cols // (wp // n_win)).flatten()  # (Np,) region of each token
    one_hot = F.one_hot(region, n_win * n_win).to(x.dtype)  # (Np, S²)

    def means(t: torch.Tensor) -> torch.Tensor:  # (B, Np, C) -> (B, S², C)
        return (one_hot.T @ t) / one_hot.sum(0)[:, None]

    allowed = torch.ones(batch, n_win * n_win, n_win * n_win, dtype=torch.bool)
    if routed:
        top = torch.topk((means(q) * scale) @ means(k).transpose(1, 2), module.topk, dim=-1).indices
        allowed = torch.zeros_like(allowed).scatter_(-1, top, True)
    mask = allowed[:, region][:, :, region]  # (B, Np, Np): query token -> key token
    logits = (split_heads(q, HEADS) @ split_heads(k, HEADS).transpose(-2, -1)) * scale
    logits = logits.masked_fill(~mask[:, None], float("-inf"))
    out = merge_heads(logits.softmax(-1) @ split_heads(v, HEADS))
    if module.lepe is not None:
        out = out + module.lepe(v.transpose(1, 2).reshape(batch, channels, hp, wp)).flatten(2).transpose(1, 2)
    out = module.wo(out).view(batch, hp, wp, channels)[:, :height, :width]
    return out.reshape(batch, height * width, channels)


# -- the official module -----------------------------------------------------------------------


def test_matches_official_state_dict():
    # rayleizhu/BiFormer ops/bra_legacy.py @ 1697bbb, BiLevelRoutingAttention.__init__ as biformer_tiny's
    # stage 2 builds it (dim 128, qk_dim 128, 4 heads of 32, n_win 7, topk 4, side_dwconv 5,
    # kv_downsample_mode 'identity', param_attention 'qkvo', param_routing False): lepe = depthwise Conv2d
    # with bias; qkv = QKVLinear holding qkv = Linear(dim, 2·qk_dim + dim); wo = Linear(dim, dim).
    # TopkRouting (emb = Identity), KVGather, kv_down (Identity) and attn_act hold no state.
    module = attentions.build("biformer", dim=128, num_heads=4, grid=(28, 28), n_win=7, topk=4)
    expected = {
        "lepe.weight": (128, 1, 5, 5),
        "lepe.bias": (128,),
        "qkv.qkv.weight": (384, 128),
        "qkv.qkv.bias": (384,),
        "wo.weight": (128, 128),
        "wo.bias": (128,),
    }
    assert [(key, tuple(value.shape)) for key, value in module.state_dict().items()] == list(expected.items())
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


def test_no_lepe_keys_without_side_dwconv():
    # side_dwconv=0: the official lepe is a lambda returning zeros, with no state.
    module = build(n_win=2, topk=2, side_dwconv=0)
    assert sorted(module.state_dict()) == ["qkv.qkv.bias", "qkv.qkv.weight", "wo.bias", "wo.weight"]


def _groups(side: str) -> list[list[str]]:
    return [m.group(1).split() if m.group(1) is not None else [m.group(2)]
            for m in re.finditer(r"\(([^)]*)\)|(\S+)", side)]


def rearrange(tensor: torch.Tensor, pattern: str, **sizes: int) -> torch.Tensor:
    """einops.rearrange for the patterns bra_legacy uses: named axes and (a b) groups, no ellipsis or 1s."""
    left, right = (_groups(side) for side in pattern.split("->"))
    sizes = dict(sizes)
    for group, length in zip(left, tensor.shape, strict=True):
        unknown = [axis for axis in group if axis not in sizes]
        assert len(unknown) <= 1, pattern
        if unknown:
            sizes[unknown[0]] = length // math.prod(sizes[axis] for axis in group if axis in sizes)
    names = [axis for group in left for axis in group]
    flat = tensor.reshape([sizes[axis] for axis in names])
    flat = flat.permute([names.index(axis) for group in right for axis in group])
    return flat.reshape([math.prod(sizes[axis] for axis in group) for group in right])


def test_rearrange_stand_in_agrees_with_reshapes():
    x = torch.arange(2 * 4 * 6 * 3).view(2, 4, 6, 3)
    regions = rearrange(x, "n (j h) (i w) c -> n (j i) h w c", j=2, i=2)
    assert torch.equal(regions[:, 1], x[:, :2, 3:])  # region (0, 1): top rows, right columns
    assert torch.equal(rearrange(regions, "n (j i) h w c -> n (j h) (i w) c", j=2, i=2), x)
    assert torch.equal(rearrange(x, "n h w (m c) -> n m c (h w)", m=3), x.flatten(1, 2).permute(0, 2, 1)[:, :, None])


def official_module(grid, auto_pad: bool, **kwargs):
    bra = load_official(*OFFICIAL, stubs={"einops": stub_module("einops", rearrange=rearrange)})
    return bra.BiLevelRoutingAttention(dim=DIM, num_heads=HEADS, qk_dim=DIM, kv_downsample_mode="identity",
                                       auto_pad=auto_pad, **kwargs).eval()


@pytest.mark.parametrize(
    "grid, knobs, auto_pad",
    [
        ((8, 8), {"n_win": 2, "topk": 2}, False),
        ((4, 8), {"n_win": 2, "topk": 2}, False),
        ((8, 8), {"n_win": 4, "topk": 3, "side_dwconv": 3}, False),
        ((4, 8), {"n_win": 2, "topk": 1, "side_dwconv": 0}, False),
        ((7, 10), {"n_win": 3, "topk": 4}, True),  # padded to 9x12
        ((5, 5), {"n_win": 7, "topk": 4}, True),  # padded to 7x7: one token per region
    ],
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_matches_official_output(grid, knobs, auto_pad):
    ours = build(grid, **knobs)
    official = official_module(grid, auto_pad, **{"side_dwconv": 5, **knobs})
    official.load_state_dict(ours.state_dict(), strict=True)
    x = tokens(grid)
    with torch.no_grad():
        expected = official(x.view(2, *grid, DIM)).reshape(2, -1, DIM)
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


# -- the routed reference and identities ---------------------------------------------------------


@pytest.mark.parametrize(
    "grid, knobs",
    [((8, 8), {"n_win": 2, "topk": 1}), ((8, 8), {"n_win": 4, "topk": 5}), ((4, 8), {"n_win": 2, "topk": 3}),
     ((6, 9), {"n_win": 3, "topk": 2, "side_dwconv": 3}), ((7, 10), {"n_win": 3, "topk": 4})],
    ids=str,
)
def test_equals_masked_dense_attention_over_routed_regions(grid, knobs):
    module = build(grid, **knobs)
    x = tokens(grid)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(module, x), rtol=1e-5, atol=1e-5)


def dense_with_lepe(module, x: torch.Tensor) -> torch.Tensor:
    """Plain dense softmax attention with the module's weights and scale C^-½, plus lepe(v), then wo."""
    batch, _, channels = x.shape
    height, width = module.grid
    q, k, v = module.qkv.qkv(x).chunk(3, dim=-1)
    attn = ((split_heads(q, HEADS) @ split_heads(k, HEADS).transpose(-2, -1)) * channels ** -0.5).softmax(-1)
    lepe = module.lepe(v.transpose(1, 2).reshape(batch, channels, height, width)).flatten(2).transpose(1, 2)
    return module.wo(merge_heads(attn @ split_heads(v, HEADS)) + lepe)


@pytest.mark.parametrize(
    "grid, knobs",
    [((8, 8), {"n_win": 2, "topk": 4}), ((4, 8), {"n_win": 4, "topk": 16}), ((8, 8), {"n_win": 1, "topk": 1}),
     ((4, 8), {"n_win": 1, "topk": 1})],
    ids=str,
)
def test_routing_to_every_region_is_dense_attention_plus_lepe(grid, knobs):
    module = build(grid, **knobs)
    x = tokens(grid)
    with torch.no_grad():
        torch.testing.assert_close(module(x), dense_with_lepe(module, x), rtol=1e-5, atol=1e-5)


def test_routing_is_sparse_and_differs_from_dense():
    module = build((8, 8), n_win=2, topk=1)
    x = tokens((8, 8))
    with torch.no_grad():
        assert not torch.allclose(module(x), reference(module, x, routed=False), atol=1e-3)


def test_padded_tokens_do_not_leak_into_the_output_shape_and_flops_count_the_padded_map():
    grid, knobs = (7, 10), {"n_win": 3, "topk": 4}
    module = build(grid, **knobs)
    assert module.padded == (9, 12)
    x = tokens(grid, batch=3)
    assert module(x).shape == x.shape
    analytic = attentions.spec("biformer").flops(batch=3, grid=grid, dim=DIM, num_heads=HEADS, **knobs)
    assert analytic["total"] == attentions.count_flops(lambda: module(x))
    tokens_padded, area = 9 * 12, 12
    assert analytic["proj"] == 3 * 8 * tokens_padded * DIM * DIM
    assert analytic["core"] == 3 * (2 * 81 * DIM + 4 * tokens_padded * 4 * area * DIM + 2 * tokens_padded * DIM * 25)


@pytest.mark.parametrize("knobs", [{}, {"n_win": 7, "topk": 49, "side_dwconv": 0}, {"n_win": 2, "topk": 1}], ids=str)
def test_analytic_flops_equal_counted_beyond_the_zoo_knobs(knobs):
    grid = (14, 14)
    module = build(grid, **knobs)
    x = tokens(grid, batch=2)
    analytic = attentions.spec("biformer").flops(batch=2, grid=grid, dim=DIM, num_heads=HEADS, **knobs)
    assert analytic["total"] == attentions.count_flops(lambda: module(x))


# -- check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knobs, fragment",
    [({"n_win": 2, "topk": 5}, "topk=5 exceeds the n_win²=4 regions"),
     ({"n_win": 2, "topk": 0}, "knob topk must be in [1,"),
     ({"n_win": 2, "topk": -2}, "knob topk must be in [1,"),
     ({"n_win": 0}, "knob n_win must be in [1,"),
     ({"n_win": 2, "topk": 2, "side_dwconv": 4}, "side_dwconv=4 must be odd")],
    ids=str,
)
def test_check_gives_one_line_reason(knobs, fragment):
    reason = attentions.spec("biformer").check((8, 8), DIM, HEADS, **knobs)
    assert reason is not None and fragment in reason and "\n" not in reason
    with pytest.raises(attentions.UnsupportedConfig, match=re.escape(fragment)):
        attentions.build("biformer", dim=DIM, num_heads=HEADS, grid=(8, 8), **knobs)


@pytest.mark.parametrize("grid, knobs", [((8, 8), {"n_win": 2, "topk": 4}), ((7, 10), {"n_win": 3, "topk": 9}),
                                         ((14, 14), {}), ((3, 3), {"n_win": 7, "topk": 1})], ids=str)
def test_check_accepts_valid_configs_including_grids_it_pads(grid, knobs):
    assert attentions.spec("biformer").check(grid, DIM, HEADS, **knobs) is None
