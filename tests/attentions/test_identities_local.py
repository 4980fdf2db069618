"""Exact identities for dense-naive, window, grid and sra (float64, small CPU problems)."""
from __future__ import annotations

import re
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from seeded import random_tokens
from torch import nn

import attentions

DIM, HEADS = 32, 4


def make(name: str, grid: tuple[int, int], seed: int = 0, **knobs) -> nn.Module:
    torch.manual_seed(seed)
    return attentions.build(name, dim=DIM, num_heads=HEADS, grid=grid, **knobs).double().eval()


tokens = partial(random_tokens, dim=DIM, dtype=torch.float64, draw=torch.float64)


def share_dense_weights(dense: nn.Module, other: nn.Module) -> None:
    """Give `other` dense's qkv/proj weights and a zero bias table (dense has no positional term)."""
    other.qkv.load_state_dict(dense.qkv.state_dict())
    other.proj.load_state_dict(dense.proj.state_dict())
    with torch.no_grad():
        other.relative_position_bias_table.zero_()


def as_map(y: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    return y.view(y.shape[0], *grid, y.shape[-1])


# -- dense-naive --------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)])
def test_dense_naive_equals_dense(grid):
    dense, naive = make("dense", grid), make("dense-naive", grid, seed=3)
    naive.load_state_dict(dense.state_dict(), strict=True)
    x = tokens(grid)
    torch.testing.assert_close(naive(x), dense(x))


# -- window ---------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [8, 12], ids=["equal", "clamped"])
def test_single_window_equals_dense(window):
    grid = (8, 8)
    dense, win = make("dense", grid), make("window", grid, seed=3, window=window)
    assert win.window == 8
    share_dense_weights(dense, win)
    x = tokens(grid)
    torch.testing.assert_close(win(x), dense(x))


def test_forced_shift_on_single_window_is_clamped_to_zero():
    grid = (8, 8)
    dense, win = make("dense", grid), make("window", grid, seed=3, window=8, shift=3)
    assert win.shift == 0 and win.shift_mask is None
    share_dense_weights(dense, win)
    x = tokens(grid)
    torch.testing.assert_close(win(x), dense(x))


def test_each_window_is_dense_attention_on_its_own_tokens():
    grid, w = (8, 8), 4
    win = make("window", grid, window=w)
    local_dense = make("dense", (w, w), seed=3)
    share_dense_weights(local_dense, win)
    x = tokens(grid)
    rows, cols = slice(w, 2 * w), slice(0, w)  # the window in the second window-row, first column
    window_tokens = as_map(x, grid)[:, rows, cols].reshape(x.shape[0], w * w, DIM)
    expected = local_dense(window_tokens)
    got = as_map(win(x), grid)[:, rows, cols].reshape(x.shape[0], w * w, DIM)
    torch.testing.assert_close(got, expected)


def test_window_bias_follows_relative_offsets():
    """softmax(q·kᵀ·s + table[offset(i, j)]) v, with the offset index written out per token pair."""
    grid = w = 4
    win = make("window", (grid, grid), window=w)
    with torch.no_grad():
        win.relative_position_bias_table.normal_()
    x = tokens((grid, grid))
    q, k, v = (t.view(2, w * w, HEADS, -1).transpose(1, 2) for t in win.qkv(x).chunk(3, dim=-1))
    bias = torch.empty(HEADS, w * w, w * w, dtype=torch.float64)
    for i in range(w * w):
        for j in range(w * w):
            (yi, xi), (yj, xj) = divmod(i, w), divmod(j, w)
            offset = (yi - yj + w - 1) * (2 * w - 1) + (xi - xj + w - 1)
            bias[:, i, j] = win.relative_position_bias_table[offset]
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5 + bias
    expected = win.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, w * w, DIM))
    torch.testing.assert_close(win(x), expected)


def test_shifted_windows_differ_from_unshifted_and_keep_shape():
    grid = (8, 8)
    plain, shifted = make("window", grid, window=4), make("window", grid, window=4, shift=2)
    shifted.load_state_dict(plain.state_dict(), strict=True)
    x = tokens(grid)
    y_plain, y_shifted = plain(x), shifted(x)
    assert y_shifted.shape == x.shape
    assert not torch.allclose(y_plain, y_shifted, atol=1e-3)


def test_shifted_interior_windows_equal_plain_windows_on_rolled_input():
    """Away from the wrap-around seam no mask applies: SW-MSA = roll⁻¹ ∘ W-MSA ∘ roll."""
    grid, w, s = (12, 12), 4, 2
    plain, shifted = make("window", grid, window=w), make("window", grid, window=w, shift=s)
    shifted.load_state_dict(plain.state_dict(), strict=True)
    x = tokens(grid)
    rolled = torch.roll(as_map(x, grid), shifts=(-s, -s), dims=(1, 2)).reshape_as(x)
    via_roll = torch.roll(as_map(plain(rolled), grid), shifts=(s, s), dims=(1, 2))
    got = as_map(shifted(x), grid)
    interior = (slice(s, s + 2 * w), slice(s, s + 2 * w))  # windows not touching the last window row/column
    torch.testing.assert_close(got[:, interior[0], interior[1]], via_roll[:, interior[0], interior[1]])
    assert not torch.allclose(got, via_roll, atol=1e-3)  # the seam windows are masked


def test_shift_mask_separates_regions_inside_a_seam_window():
    """Original tokens (0,0) and (11,11) share the bottom-right shifted window but not a region."""
    grid = (12, 12)
    shifted = make("window", grid, window=4, shift=2)
    x = tokens(grid, batch=1)

    def output_at_origin_after_bumping(row: int, col: int) -> torch.Tensor:
        bumped = as_map(x.clone(), grid)
        bumped[:, row, col] += 5.0
        return as_map(shifted(bumped.reshape_as(x)), grid)[:, 0, 0]

    reference = as_map(shifted(x), grid)[:, 0, 0]
    torch.testing.assert_close(output_at_origin_after_bumping(11, 11), reference, rtol=0, atol=1e-12)
    assert not torch.allclose(output_at_origin_after_bumping(1, 1), reference, atol=1e-6)  # same region


# -- grid -----------------------------------------------------------------------------------


def test_grid_covering_map_equals_dense():
    grid = (8, 8)
    dense, grid_attn = make("dense", grid), make("grid", grid, seed=3, window=8)
    share_dense_weights(dense, grid_attn)
    x = tokens(grid)
    torch.testing.assert_close(grid_attn(x), dense(x))


@pytest.mark.parametrize(("grid", "offset"), [((8, 8), (1, 0)), ((4, 8), (0, 1))])
def test_each_grid_group_is_dense_attention_on_a_dilated_grid(grid, offset):
    g = 4
    grid_attn = make("grid", grid, window=g)
    local_dense = make("dense", (g, g), seed=3)
    share_dense_weights(local_dense, grid_attn)
    x = tokens(grid)
    stride_h, stride_w = grid[0] // g, grid[1] // g
    rows, cols = slice(offset[0], None, stride_h), slice(offset[1], None, stride_w)
    group_tokens = as_map(x, grid)[:, rows, cols].reshape(x.shape[0], g * g, DIM)
    got = as_map(grid_attn(x), grid)[:, rows, cols].reshape(x.shape[0], g * g, DIM)
    torch.testing.assert_close(got, local_dense(group_tokens))


def test_single_grid_group_equals_single_window_with_bias():
    grid = (8, 8)
    win, grid_attn = make("window", grid, window=8), make("grid", grid, seed=3, window=8)
    with torch.no_grad():
        win.relative_position_bias_table.normal_()
    grid_attn.load_state_dict(win.state_dict(), strict=True)
    x = tokens(grid)
    torch.testing.assert_close(grid_attn(x), win(x))


# -- sra ------------------------------------------------------------------------------------


def test_sra_ratio_one_is_dense_without_reduction_layers():
    grid = (8, 8)
    dense, sra = make("dense", grid), make("sra", grid, seed=3, sr_ratio=1)
    assert not any(key.startswith(("sr.", "norm.")) for key in sra.state_dict())
    q_weight, kv_weight = dense.qkv.weight.split([DIM, 2 * DIM])
    q_bias, kv_bias = dense.qkv.bias.split([DIM, 2 * DIM])
    sra.load_state_dict(
        {
            "q.weight": q_weight, "q.bias": q_bias,
            "kv.weight": kv_weight, "kv.bias": kv_bias,
            "proj.weight": dense.proj.weight, "proj.bias": dense.proj.bias,
        },
        strict=True,
    )
    x = tokens(grid)
    torch.testing.assert_close(sra(x), dense(x))


@pytest.mark.parametrize(("grid", "ratio"), [((8, 8), 2), ((6, 9), 4)])
def test_sra_with_averaging_conv_attends_to_pooled_tokens(grid, ratio):
    """Conv weight δ(c_out, c_in)/r², no bias, norm removed: keys/values come from r×r average pools."""
    sra = make("sra", grid, sr_ratio=ratio)
    with torch.no_grad():
        sra.sr.weight.copy_(torch.eye(DIM)[:, :, None, None].expand(-1, -1, ratio, ratio) / ratio**2)
        sra.sr.bias.zero_()
    sra.norm = nn.Identity()
    x = tokens(grid)
    pooled = F.avg_pool2d(as_map(x, grid).permute(0, 3, 1, 2), ratio).flatten(2).transpose(1, 2)
    q = sra.q(x).view(2, -1, HEADS, DIM // HEADS).transpose(1, 2)
    k, v = (t.view(2, -1, HEADS, DIM // HEADS).transpose(1, 2) for t in sra.kv(pooled).chunk(2, dim=-1))
    attn = (q @ k.transpose(-2, -1) * (DIM // HEADS) ** -0.5).softmax(-1)
    expected = sra.proj((attn @ v).transpose(1, 2).reshape(2, -1, DIM))
    torch.testing.assert_close(sra(x), expected)


# -- state-dict compatibility with the official code ----------------------------------------


def test_window_state_dict_matches_swin_window_attention():
    # microsoft/Swin-Transformer models/swin_transformer.py, class WindowAttention (Swin-T stage 1:
    # dim 96, window 7, 3 heads, qkv_bias=True). It registers relative_position_index with the default
    # persistent=True; the shift mask lives on SwinTransformerBlock, so it is not among these keys.
    expected = {
        "relative_position_bias_table": (169, 3),
        "relative_position_index": (49, 49),
        "qkv.weight": (288, 96),
        "qkv.bias": (288,),
        "proj.weight": (96, 96),
        "proj.bias": (96,),
    }
    module = attentions.build("window", dim=96, num_heads=3, grid=(56, 56), window=7, shift=3)
    state = module.state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == expected
    index = state["relative_position_index"]
    assert index.dtype == torch.int64
    # Swin: index(i, j) = (Δrow + w - 1)·(2w - 1) + (Δcol + w - 1), tokens row-major in the window.
    rows, cols = torch.arange(49) // 7, torch.arange(49) % 7
    swin_index = (rows[:, None] - rows[None, :] + 6) * 13 + (cols[:, None] - cols[None, :] + 6)
    assert torch.equal(index, swin_index)


def test_sra_state_dict_matches_pvt_v2_attention():
    # whai362/PVT classification/pvt_v2.py, class Attention (linear=False) as pvt_v2_b1..b5 build
    # their first stage: dim 64, 1 head, sr_ratio 8, qkv_bias=True.
    expected = {
        "q.weight": (64, 64),
        "q.bias": (64,),
        "kv.weight": (128, 64),
        "kv.bias": (128,),
        "proj.weight": (64, 64),
        "proj.bias": (64,),
        "sr.weight": (64, 64, 8, 8),
        "sr.bias": (64,),
        "norm.weight": (64,),
        "norm.bias": (64,),
    }
    module = attentions.build("sra", dim=64, num_heads=1, grid=(56, 56), sr_ratio=8)
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected


# -- check reasons --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "grid", "knobs", "fragment"),
    [
        ("window", (16, 16), {"window": 4, "shift": 4}, "shift 4"),
        ("window", (16, 16), {"window": 4, "shift": -1}, "knob shift must be in [0, 16384], got -1"),
        ("window", (16, 16), {"window": 0}, "knob window must be in [1, 16384], got 0"),
        ("grid", (16, 16), {"window": 0}, "knob window must be in [1, 16384], got 0"),
        ("sra", (4, 64), {"sr_ratio": 8}, "smaller than sr_ratio 8"),
        ("sra", (8, 8), {"sr_ratio": 0}, "knob sr_ratio must be in [1, 4096], got 0"),
        ("agent", (7, 7), {"m": 64}, "m=64 agents for N=49 tokens; m must be at most N"),
        ("cbsa", (7, 7), {"m": 64}, "m=64 representatives for N=49 tokens"),
        ("focused", (8, 8), {"focusing_factor": 0}, "knob focusing_factor must be in [1, 16], got 0"),
    ],
)
def test_check_gives_one_line_reason(name, grid, knobs, fragment):
    reason = attentions.spec(name).check(grid=grid, dim=384, num_heads=6, **knobs)
    assert isinstance(reason, str) and fragment in reason and "\n" not in reason
    with pytest.raises(attentions.UnsupportedConfig, match=re.escape(fragment)):
        attentions.build(name, dim=384, num_heads=6, grid=grid, **knobs)


@pytest.mark.parametrize(
    ("name", "grid", "knobs"),
    [
        ("window", (56, 56), {"window": 7, "shift": 3}),
        ("window", (8, 8), {"window": 8, "shift": 5}),  # single window: the shift is dropped, as Swin does
        ("grid", (56, 56), {"window": 7}),
        ("sra", (7, 9), {"sr_ratio": 2}),  # the strided conv floors, as PVT's does
        ("window", (63, 64), {"window": 8}),  # padded to whole windows, as Swin's detection backbone does
        ("window", (8, 12), {"window": 16}),  # clamped to 8 first, then padded
        ("grid", (63, 64), {"window": 8}),  # padded to multiples of G
        ("grid", (8, 8), {"window": 16}),  # clamped to the map: one global group
    ],
)
def test_check_accepts_valid_configs(name, grid, knobs):
    assert attentions.spec(name).check(grid=grid, dim=384, num_heads=6, **knobs) is None


@pytest.mark.parametrize("name, knobs", [("window", {"shift": 0}), ("window", {"shift": 3}), ("grid", {})])
def test_grouped_attention_pads_to_whole_groups_like_swin_detection(name, knobs):
    """On 10x13 with side 7 the map is zero-padded to 14x14, attended, and cropped: identical to running the
    14x14 module on the zero-padded input and cropping its output."""
    small = make(name, (10, 13), window=7, **knobs)
    big = make(name, (14, 14), window=7, **knobs)
    big.load_state_dict(small.state_dict())
    x = tokens((10, 13)).double()
    small, big = small.double(), big.double()
    padded = F.pad(x.view(2, 10, 13, -1), (0, 0, 0, 1, 0, 4)).reshape(2, 196, -1)
    expected = big(padded).view(2, 14, 14, -1)[:, :10, :13].reshape(2, 130, -1)
    torch.testing.assert_close(small(x), expected, rtol=1e-10, atol=1e-10)
