"""Mechanism-specific properties of agent, focused and cbsa, and their official state-dict layouts."""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from seeded import random_tokens

import attentions
from attentions._common import merge_heads, split_heads
from attentions.focused import NORMALISER_EPS

DIM, HEADS = 32, 4


def build(name: str, grid=(8, 8), seed: int = 0, **knobs):
    torch.manual_seed(seed)
    return attentions.build(name, dim=DIM, num_heads=HEADS, grid=grid, **knobs).eval()


tokens = partial(random_tokens, dim=DIM)


def shapes(module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def assert_loads_official_layout(module, expected: dict[str, tuple[int, ...]]) -> None:
    assert shapes(module) == expected
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


def capture_softmax(softmax: torch.nn.Module, inputs: bool = False) -> list[torch.Tensor]:
    """Record every tensor a softmax submodule returns (or receives, with inputs=True)."""
    seen: list[torch.Tensor] = []
    if inputs:
        softmax.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    else:
        softmax.register_forward_hook(lambda *hook_args: seen.append(hook_args[2].detach()))
    return seen


def without_agent_extras(module):
    """Agent attention with every position bias and the DWC branch set to zero."""
    with torch.no_grad():
        for name in ("an_bias", "na_bias", "ah_bias", "aw_bias", "ha_bias", "wa_bias"):
            getattr(module, name).zero_()
        module.dwc.weight.zero_()
        module.dwc.bias.zero_()
    return module


# -- state-dict layouts read from the official code -------------------------------------------


def test_agent_matches_official_state_dict():
    # LeapLabTHU/Agent-Attention agent_transformer/models/agent_swin.py @ 36cf0da3, class
    # AgentAttention.__init__, as SwinTransformerBlock builds it for Agent-Swin-T stage 1
    # (dim 96, 3 heads, window clamped to the 56×56 resolution, agent_num 49, qkv_bias True):
    # qkv/proj Linears, dwc = depthwise 3×3 Conv2d with bias, an/na_bias (heads, agents, 7, 7),
    # ah_bias (1, heads, agents, Wh, 1), aw_bias (1, heads, agents, 1, Ww),
    # ha_bias (1, heads, Wh, 1, agents), wa_bias (1, heads, 1, Ww, agents); pool/softmax hold no state.
    module = attentions.build("agent", dim=96, num_heads=3, grid=(56, 56), m=49)
    assert_loads_official_layout(
        module,
        {
            "qkv.weight": (288, 96),
            "qkv.bias": (288,),
            "proj.weight": (96, 96),
            "proj.bias": (96,),
            "dwc.weight": (96, 1, 3, 3),
            "dwc.bias": (96,),
            "an_bias": (3, 49, 7, 7),
            "na_bias": (3, 49, 7, 7),
            "ah_bias": (1, 3, 49, 56, 1),
            "aw_bias": (1, 3, 49, 1, 56),
            "ha_bias": (1, 3, 56, 1, 49),
            "wa_bias": (1, 3, 1, 56, 49),
        },
    )


def test_focused_matches_official_state_dict():
    # LeapLabTHU/FLatten-Transformer models/flatten_swin.py @ e743f011 (same layout @ e205a01e),
    # class FocusedLinearAttention.__init__ for FLatten-Swin-T stage 1 (dim 96, window 56, 3 heads,
    # kernel_size 5, qkv_bias True): qkv/proj Linears, dwc = Conv2d(head_dim, head_dim, 5,
    # groups=head_dim) with bias, scale (1, 1, dim), positional_encoding (1, Wh·Ww, dim).
    module = attentions.build("focused", dim=96, num_heads=3, grid=(56, 56))
    assert_loads_official_layout(
        module,
        {
            "qkv.weight": (288, 96),
            "qkv.bias": (288,),
            "proj.weight": (96, 96),
            "proj.bias": (96,),
            "dwc.weight": (32, 1, 5, 5),
            "dwc.bias": (32,),
            "scale": (1, 1, 96),
            "positional_encoding": (1, 3136, 96),
        },
    )


def test_cbsa_matches_official_state_dict():
    # QishuaiWen/CBSA CBSA_image_classification/attn_layers.py @ 5a5a053e, class CBSA.__init__ for
    # CBT-S (dim 384, heads 6, dim_head 64): proj = Linear(dim, inner, bias=False),
    # step_x and step_rep (heads, 1, 1), to_out = Linear(inner, dim) with bias;
    # attend/pool/qkv (Identity) hold no state.
    module = attentions.build("cbsa", dim=384, num_heads=6, grid=(14, 14), m=64)
    assert_loads_official_layout(
        module,
        {
            "proj.weight": (384, 384),
            "step_x": (6, 1, 1),
            "step_rep": (6, 1, 1),
            "to_out.weight": (384, 384),
            "to_out.bias": (384,),
        },
    )


# -- agent -------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_agent_softmax_rows_sum_to_one(grid):
    module = build("agent", grid, m=4)
    probabilities = capture_softmax(module.softmax)
    module(tokens(grid))
    tokens_count = grid[0] * grid[1]
    agent_to_token, token_to_agent = probabilities
    assert agent_to_token.shape == (2, HEADS, 4, tokens_count)
    assert token_to_agent.shape == (2, HEADS, tokens_count, 4)
    for probs in probabilities:
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]))


def test_agent_separable_biases_follow_rows_and_columns_on_a_non_square_grid():
    # With zero projections every logit is a pure position bias, so the softmax inputs expose them.
    grid = (4, 8)
    module = build("agent", grid, m=4)
    with torch.no_grad():
        module.qkv.weight.zero_()
        module.qkv.bias.zero_()
    logits = capture_softmax(module.softmax, inputs=True)
    module(tokens(grid, batch=1))
    agent_to_token, token_to_agent = (t[0] for t in logits)  # (h, m, N), (h, N, m)

    table_an = F.interpolate(module.an_bias, size=grid, mode="bilinear").detach()  # (h, m, H, W)
    table_na = F.interpolate(module.na_bias, size=grid, mode="bilinear").detach()
    ah, aw = module.ah_bias.detach()[0], module.aw_bias.detach()[0]  # (h, m, H, 1), (h, m, 1, W)
    ha, wa = module.ha_bias.detach()[0], module.wa_bias.detach()[0]  # (h, H, 1, m), (h, 1, W, m)
    for row in range(grid[0]):
        for col in range(grid[1]):
            position = row * grid[1] + col
            expected_an = table_an[:, :, row, col] + ah[:, :, row, 0] + aw[:, :, 0, col]
            expected_na = table_na[:, :, row, col] + ha[:, row, 0, :] + wa[:, 0, col, :]
            torch.testing.assert_close(agent_to_token[:, :, position], expected_an)
            torch.testing.assert_close(token_to_agent[:, position, :], expected_na)


def test_agent_single_agent_gives_every_token_the_same_output():
    module = without_agent_extras(build("agent", m=1))
    y = module(tokens((8, 8)))
    torch.testing.assert_close(y, y[:, :1].expand_as(y))


def test_agent_is_not_permutation_equivariant():
    # Pooling ties agents to grid positions, so shuffling tokens changes which queries form them.
    module = without_agent_extras(build("agent", m=4))
    x = tokens((8, 8))
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    difference = (module(x[:, perm]) - module(x)[:, perm]).abs().max()
    assert difference > 1e-3


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_agent_equals_generalised_linear_attention_closed_form(grid):
    module = without_agent_extras(build("agent", grid, m=4)).double()
    x = tokens(grid, dtype=torch.float64)
    height, width = grid
    scale = (DIM // HEADS) ** -0.5

    q_full, k, v = module.qkv(x).chunk(3, dim=-1)
    # 2×2 agents by explicit block means: each agent averages one (H/2)×(W/2) quadrant of queries.
    blocks = q_full.reshape(2, 2, height // 2, 2, width // 2, DIM).mean(dim=(2, 4))
    agents = split_heads(blocks.reshape(2, 4, DIM), HEADS)
    q, k, v = (split_heads(t, HEADS) for t in (q_full, k, v))
    token_to_agent = torch.softmax(scale * q @ agents.transpose(-2, -1), dim=-1)
    agent_to_token = torch.softmax(scale * agents @ k.transpose(-2, -1), dim=-1)
    full_map = token_to_agent @ agent_to_token  # explicit N×N
    torch.testing.assert_close(full_map.sum(-1), torch.ones(full_map.shape[:-1], dtype=torch.float64))
    expected = module.proj(merge_heads(full_map @ v))

    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


# -- focused -----------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_focused_linear_order_equals_explicit_matrix(grid):
    module = build("focused", grid).double()
    with torch.no_grad():  # move the learnable pieces away from their zero init
        module.positional_encoding.normal_(std=0.5)
        module.scale.normal_()
    x = tokens(grid, dtype=torch.float64)
    count = grid[0] * grid[1]

    q, k, v = module.qkv(x).chunk(3, dim=-1)
    q = split_heads(module.feature_map(q), HEADS)
    k = split_heads(module.feature_map(k + module.positional_encoding), HEADS)
    v = split_heads(v, HEADS)
    similarity = q @ k.transpose(-2, -1)  # explicit N×N, then row-normalised (same epsilon)
    attended = (similarity @ v / count) / (similarity.sum(-1, keepdim=True) / count + NORMALISER_EPS)
    # The shared d-channel DWC kernel applied to every head, written as one C-channel depthwise conv.
    kernel = module.dwc.weight.repeat(HEADS, 1, 1, 1)
    v_map = merge_heads(v).transpose(1, 2).reshape(2, DIM, *grid)
    local = F.conv2d(v_map, kernel, module.dwc.bias.repeat(HEADS), padding=2, groups=DIM)
    expected = module.proj(merge_heads(attended) + local.flatten(2).transpose(1, 2))

    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


# -- cbsa --------------------------------------------------------------------------------------


def test_cbsa_contraction_map_is_normalised_over_tokens_only():
    module = build("cbsa", m=4)
    maps = capture_softmax(module.attend)
    module(tokens((8, 8)))
    contraction = maps[0]
    assert contraction.shape == (2, HEADS, 4, 64)
    torch.testing.assert_close(contraction.sum(-1), torch.ones(2, HEADS, 4))
    # The broadcast reuses Aᵀ unnormalised: a token's weights over the 4 representatives average 4/64.
    broadcast_weights = contraction.transpose(-2, -1).sum(-1)
    assert (broadcast_weights - 1).abs().min() > 0.5


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["agent", "cbsa"])
def test_non_square_m_is_rejected_in_one_line(name):
    reason = attentions.spec(name).check(grid=(8, 8), dim=DIM, num_heads=HEADS, m=10)
    assert reason is not None and "perfect square" in reason and "\n" not in reason
    with pytest.raises(attentions.UnsupportedConfig, match="perfect square"):
        attentions.build(name, dim=DIM, num_heads=HEADS, grid=(8, 8), m=10)


def test_focused_rejects_even_kernel_in_one_line():
    reason = attentions.spec("focused").check(grid=(8, 8), dim=DIM, num_heads=HEADS, kernel_size=4)
    assert reason is not None and "odd" in reason and "\n" not in reason
