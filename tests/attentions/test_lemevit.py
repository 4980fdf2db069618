"""LeMeViT's dual cross-attention: official layout and outputs, hand-written cross-attention identities, the meta branch."""
from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from official import load_official, stub_module
from seeded import random_tokens
from torch import nn

import attentions
import attentions.lemevit
from attentions._common import merge_heads, split_heads

DIM, HEADS = 32, 4
OFFICIAL = ("ViTAE-Transformer/LeMeViT", "models/lemevit.py")


def build(grid=(8, 8), seed: int = 0, **knobs):
    torch.manual_seed(seed)
    return attentions.build("lemevit", dim=DIM, num_heads=HEADS, grid=grid, **knobs).eval()


tokens = partial(random_tokens, dim=DIM)


# -- state-dict layout read from the official code ------------------------------------------------


def test_matches_official_state_dict():
    # ViTAE-Transformer/LeMeViT models/lemevit.py @ 1b48783 (file @ 4c412d7): DualCrossAttention.__init__ as
    # LeMeBlock builds it (attn_type "D") in lemevit_small stage 1 (embed_dim 96, head_dim 32 -> 3 heads, 56x56
    # tokens): qkv1/qkv2 = Linear(dim, 3·dim), proj_x/proj_c = Linear(dim, dim), all with bias; attn_drop,
    # proj_drop, attn_viz hold no state. meta_tokens: LeMeViT.__init__'s Parameter(randn(queries_len, embed_dim[0])),
    # queries_len = 16 in every released variant.
    module = attentions.build("lemevit", dim=96, num_heads=3, grid=(56, 56))
    expected = {
        "meta_tokens": (16, 96),
        "qkv1.weight": (288, 96),
        "qkv1.bias": (288,),
        "qkv2.weight": (288, 96),
        "qkv2.bias": (288,),
        "proj_x.weight": (96, 96),
        "proj_x.bias": (96,),
        "proj_c.weight": (96, 96),
        "proj_c.bias": (96,),
    }
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


def test_default_is_the_released_meta_token_count_with_standard_normal_init():
    spec = attentions.spec("lemevit")
    assert spec.knobs["m"].default == 16
    torch.manual_seed(0)
    meta = attentions.build("lemevit", dim=256, num_heads=8, grid=(16, 16)).meta_tokens.detach()
    assert meta.shape == (16, 256)
    assert abs(meta.mean().item()) < 0.05 and abs(meta.std().item() - 1) < 0.05  # randn, no trunc_normal


# -- the official module ----------------------------------------------------------------------------


def rearrange(tensor: torch.Tensor, pattern: str, **axes) -> torch.Tensor:
    """Stand-in for the two einops patterns DualCrossAttention's torch path uses; anything else fails loudly."""
    lhs, rhs = (side.split() for side in pattern.split("->"))
    if lhs[1:] in (["N", "(x", "h", "d)"], ["M", "(x", "h", "d)"]) and rhs[0] == "x":
        batch, count, _ = tensor.shape
        return tensor.reshape(batch, count, axes["x"], axes["h"], -1).permute(2, 0, 3, 1, 4)
    if lhs[1] == "h" and rhs[2:] == ["(h", "d)"]:
        return tensor.transpose(1, 2).flatten(2)
    raise NotImplementedError(pattern)


def official_module():
    stubs = {
        "einops": stub_module("einops", rearrange=rearrange, repeat=None),
        "einops.layers": stub_module("einops.layers"),
        "einops.layers.torch": stub_module("einops.layers.torch", Rearrange=None),
        "fairscale": stub_module("fairscale"),
        "fairscale.nn": stub_module("fairscale.nn"),
        "fairscale.nn.checkpoint": stub_module("fairscale.nn.checkpoint", checkpoint_wrapper=None),
        "timm": stub_module("timm"),
        "timm.models": stub_module("timm.models", register_model=lambda fn: fn),
        "timm.models.layers": stub_module("timm.models.layers", DropPath=nn.Identity, to_2tuple=None,
                                          trunc_normal_=None),
        "timm.models.vision_transformer": stub_module("timm.models.vision_transformer", _cfg=dict),
    }
    source = load_official(*OFFICIAL, stubs=stubs)
    assert source.has_torchfunc and not source.has_flash_attn and not source.has_xformers
    return source


@pytest.mark.parametrize("grid, m", [((8, 8), 4), ((4, 8), 4), ((4, 8), 16), ((8, 8), 100)],
                         ids=["8x8-m4", "4x8-m4", "4x8-m16", "8x8-m100"])
def test_matches_official_output(grid, m):
    ours = build(grid, m=m)
    official = official_module().DualCrossAttention(dim=DIM, num_heads=HEADS).eval()
    weights = ours.state_dict()
    meta_tokens = weights.pop("meta_tokens")
    official.load_state_dict(weights, strict=True)
    x = tokens(grid)
    with torch.no_grad():
        expected_x, expected_c = official(x, meta_tokens.expand(2, -1, -1))
        image, meta = ours.forward_with_meta(x)
        torch.testing.assert_close(image, expected_x, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(meta, expected_c, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x), expected_x, rtol=1e-5, atol=1e-5)


# -- identities with a hand-written cross-attention -------------------------------------------------


def masked_dense(x: torch.Tensor, qkv: nn.Linear, keys: torch.Tensor, scale: float) -> torch.Tensor:
    """Dense multi-head self-attention over x (B, N, C) with only the token indices `keys` as keys: explicit
    logits, -inf elsewhere, softmax, before any output projection."""
    q, k, v = (split_heads(t, HEADS) for t in qkv(x).chunk(3, dim=-1))
    logits = scale * q @ k.transpose(-2, -1)
    allowed = torch.zeros(x.shape[1], dtype=torch.bool)
    allowed[keys] = True
    logits = logits.masked_fill(~allowed, float("-inf"))
    return merge_heads(logits.softmax(dim=-1) @ v)


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("m", [1, 5, None], ids=["m1", "m5", "mN"])
def test_meta_tokens_copied_from_the_image_give_dense_attention_restricted_to_them(grid, m):
    # With the meta tokens equal to image tokens S and qkv2 = qkv1, proj_c = proj_x:
    #   X' = dense attention over X with keys S only, at scale log_N(m)/sqrt(C)
    #   M' = rows S of full dense self-attention over X, at scale 1/sqrt(C)
    # (m = N, S = every token: X' = M' = dense attention with scale 1/sqrt(C), since log_N(N) = 1).
    count = grid[0] * grid[1]
    m = m or count
    module = build(grid, m=m).double()
    x = tokens(grid, batch=1, dtype=torch.float64)
    keys = torch.randperm(count, generator=torch.Generator().manual_seed(4))[:m]
    with torch.no_grad():
        module.meta_tokens.copy_(x[0, keys])
        module.qkv2.load_state_dict(module.qkv1.state_dict())
        module.proj_c.load_state_dict(module.proj_x.state_dict())
        image, meta = module.forward_with_meta(x)
        scale = DIM**-0.5
        expected_image = module.proj_x(masked_dense(x, module.qkv1, keys, math.log(m) / math.log(count) * scale))
        expected_meta = module.proj_x(masked_dense(x, module.qkv1, torch.arange(count), scale))[:, keys]
    torch.testing.assert_close(image, expected_image, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(meta, expected_meta, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(module(x), expected_image, rtol=1e-10, atol=1e-12)


def test_both_directions_read_the_layers_inputs():
    # The image tokens attend to the meta tokens as given, not to their update: changing proj_c (which only
    # forms M') leaves X' bit for bit unchanged.
    module, x = build(m=4), tokens((8, 8))
    with torch.no_grad():
        before, meta_before = module.forward_with_meta(x)
        module.proj_c.weight.mul_(3.0)
        after, meta_after = module.forward_with_meta(x)
    assert torch.equal(before, after) and not torch.allclose(meta_before, meta_after)


def test_meta_branch_is_in_the_graph_with_zero_weight():
    module, x = build(m=4), tokens((8, 8))
    y = module(x)
    image, _ = module.forward_with_meta(x)
    assert torch.equal(y, image)
    y.square().sum().backward()
    # Backward runs through the meta branch (gradients exist) but it adds nothing to X'.
    assert torch.equal(module.proj_c.weight.grad, torch.zeros_like(module.proj_c.weight))
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    module.zero_grad(set_to_none=True)
    module.forward_with_meta(x)[0].square().sum().backward()
    for name, p in module.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, rtol=0, atol=0)


def test_meta_tokens_are_shared_and_each_image_updates_its_own():
    module, x = build(m=4), tokens((8, 8))
    with torch.no_grad():
        _, meta = module.forward_with_meta(x)
        _, meta_first = module.forward_with_meta(x[:1])
    torch.testing.assert_close(meta[:1], meta_first)
    assert not torch.allclose(meta[0], meta[1])


# -- validation -------------------------------------------------------------------------------------


def test_check_rejects_a_single_token_in_one_line():
    reason = attentions.spec("lemevit").check(grid=(1, 1), dim=DIM, num_heads=HEADS, m=4)
    assert reason is not None and "N >= 2" in reason and "\n" not in reason
    with pytest.raises(attentions.UnsupportedConfig, match="N >= 2"):
        attentions.build("lemevit", dim=DIM, num_heads=HEADS, grid=(1, 1), m=4)


def test_check_rejects_zero_meta_tokens():
    reason = attentions.spec("lemevit").check(grid=(8, 8), dim=DIM, num_heads=HEADS, m=0)
    assert reason is not None and "knob m" in reason and "\n" not in reason


def test_more_meta_tokens_than_image_tokens_runs():
    # The official scale log_N(m) exceeds 1 then; nothing in the equations needs m <= N.
    assert attentions.spec("lemevit").check(grid=(2, 2), dim=DIM, num_heads=HEADS, m=16) is None
    module = build((2, 2), m=16)
    assert module(tokens((2, 2))).shape == (2, 4, DIM)
