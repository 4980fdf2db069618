"""Routing maps are the real attention path: the composed weights reproduce the forward's own output, a hand-set
routing separates two image regions exactly, and the dense map is softmax(q kᵀ·scale)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import attentions
from rpbench.core.errors import UsageError
from rpbench.core.maps import RANDOM_WEIGHTS
from rpbench.measure.map_paths import path_weights, pool_matrix
from rpbench.measure.maps import compute_maps, position_code

GRID = (4, 4)
DIM, HEADS = 8, 2


def two_region_png(path, side=32):
    """Left half red, right half blue: with patch 8 the boundary falls between token columns 1 and 2."""
    image = np.zeros((side, side, 3), np.uint8)
    image[:, : side // 2] = (255, 0, 0)
    image[:, side // 2:] = (0, 0, 255)
    Image.fromarray(image).save(path)
    return path


def hand_set_checkpoint(path, flip=False):
    """rpattention (m=2) whose routing reads only red minus blue, so a token's colour alone picks its representative.

    Embedding channel 0 = 100·(mean normalised red − mean normalised blue) of the patch: about +405 for red, −476
    for blue, far beyond the position code's ±1. The key is that channel alone; the anchors are +1 and −1 on it.
    """
    torch.manual_seed(1)
    module = attentions.build("rpattention", dim=DIM, num_heads=HEADS, grid=GRID, m=2)
    state = {key: value.clone() for key, value in module.state_dict().items()}
    state["qkv.weight"][DIM:2 * DIM] = 0.0
    state["qkv.weight"][DIM, 0] = 1.0
    state["qkv.bias"][DIM:2 * DIM] = 0.0
    sign = -1.0 if flip else 1.0
    state["route.weight"] = torch.zeros(2, DIM)
    state["route.weight"][0, 0], state["route.weight"][1, 0] = sign, -sign
    embed_weight = torch.zeros(DIM, 3, 8, 8)
    embed_weight[0, 0], embed_weight[0, 2] = 100.0 / 64, -100.0 / 64
    state["patch_embed.weight"], state["patch_embed.bias"] = embed_weight, torch.zeros(DIM)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("flip", [False, True])
def test_a_hand_set_routing_separates_two_regions_exactly(tmp_path, flip):
    image = two_region_png(tmp_path / "two.png")
    checkpoint = hand_set_checkpoint(tmp_path / "rp.pt", flip)
    maps = compute_maps("rpattention", image, 32, 8, None, {"m": 2}, DIM, HEADS, 0, checkpoint)
    red, blue = (1, 0) if flip else (0, 1)
    expected = np.array([[red, red, blue, blue]] * 4)
    np.testing.assert_array_equal(maps.assignment, expected)
    assert maps.weights != RANDOM_WEIGHTS and "patch_embed" in maps.embedding
    # The random layer does not separate them: the separation comes from the hand-set routing.
    random_maps = compute_maps("rpattention", image, 32, 8, None, {"m": 2}, DIM, HEADS, 0)
    assert not np.array_equal(random_maps.assignment, expected) and random_maps.weights == RANDOM_WEIGHTS


def _pre_projection(module, x, out_layer):
    seen = []
    handle = out_layer.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            module(x)
    finally:
        handle.remove()
    return seen[0]


def _heads(t):
    return t.reshape(t.shape[0], t.shape[1], HEADS, -1).transpose(1, 2)


def _direct_and_values(name, module, x):
    """The branch that bypasses the representatives (computed from the module itself) and the values per head."""
    with torch.no_grad():
        if name == "cbsa":
            return torch.zeros_like(x), _heads(module.proj(x))
        v = module.qkv(x).chunk(3, dim=-1)[2]
        if name == "rpattention":
            direct = module._local(v) if module.dwc is not None else torch.zeros_like(v)
        else:
            image = v.transpose(1, 2).reshape(1, DIM, *GRID)
            direct = module.dwc(image).flatten(2).transpose(1, 2)
        return direct, _heads(v)


CASES = [
    ("rpattention", {"m": 4}),
    ("rpattention", {"m": 4, "per_head_routing": True, "em_iters": 2, "tau": 0.5}),
    ("rpattention", {"m": 4, "interact": False, "route_over": "tokens", "dwc": 0}),
    ("rpattention", {"m": 3, "normalize": False}),
    ("agent", {"m": 4}),
    ("cbsa", {"m": 4}),
]


@pytest.mark.parametrize(("name", "knobs"), CASES)
def test_the_response_rows_compose_to_the_forwards_own_output(name, knobs):
    """Σ_j response[h, p, j]·V_h[j] = the forward's projection input at p minus its non-representative branch."""
    torch.manual_seed(0)
    module = attentions.build(name, dim=DIM, num_heads=HEADS, grid=GRID, **knobs).double().eval()
    x = torch.randn(1, GRID[0] * GRID[1], DIM, dtype=torch.float64)
    out_layer = module.to_out if name == "cbsa" else module.proj
    expected = _pre_projection(module, x, out_layer)
    direct, values = _direct_and_values(name, module, x)
    rows = torch.arange(GRID[0] * GRID[1])
    weights = path_weights(name, module, x, rows)
    assert weights.response.shape == (HEADS, 16, 16)
    through = (weights.response @ values[0]).transpose(0, 1).reshape(16, DIM)
    torch.testing.assert_close(through, (expected - direct)[0], rtol=0, atol=1e-5)
    assert (expected - direct).abs().max() > 1e-3  # the identity is not 0 = 0
    if name != "cbsa" and knobs.get("normalize", True):  # products of row-stochastic maps: distributions
        torch.testing.assert_close(weights.response.sum(-1), torch.ones(HEADS, 16, dtype=torch.float64))
    # A subset of rows gives the same rows: what the page draws for its query points.
    subset = path_weights(name, module, x, torch.tensor([5, 0]))
    torch.testing.assert_close(subset.response, weights.response[:, [5, 0]], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("name", "knobs"), [CASES[0], CASES[4], CASES[5]])
def test_the_dense_rows_are_softmax_of_the_layers_own_q_and_k(name, knobs):
    torch.manual_seed(0)
    module = attentions.build(name, dim=DIM, num_heads=HEADS, grid=GRID, **knobs).double().eval()
    x = torch.randn(1, 16, DIM, dtype=torch.float64)
    with torch.no_grad():
        q, k = (module.proj(x),) * 2 if name == "cbsa" else module.qkv(x).chunk(3, dim=-1)[:2]
        full = torch.softmax(_heads(q)[0] @ _heads(k)[0].transpose(-1, -2) * (DIM // HEADS) ** -0.5, dim=-1)
    dense = path_weights(name, module, x, torch.tensor([3, 9, 14])).dense
    torch.testing.assert_close(dense.sum(-1), torch.ones(HEADS, 3, dtype=torch.float64))
    torch.testing.assert_close(dense, full[:, [3, 9, 14]], rtol=0, atol=1e-12)


def test_the_assignment_is_each_tokens_largest_weight():
    torch.manual_seed(2)
    module = attentions.build("rpattention", dim=DIM, num_heads=HEADS, grid=GRID, m=4).double()
    x = torch.randn(1, 16, DIM, dtype=torch.float64)
    with torch.no_grad():
        routing = module.routing_weights(module.qkv(x).chunk(3, dim=-1)[1])
    weights = path_weights("rpattention", module, x, torch.tensor([0]))
    torch.testing.assert_close(weights.assignment, routing[0].argmax(-1))
    assert len(set(weights.assignment.tolist())) > 1


def test_the_pool_matrix_is_adaptive_average_pooling():
    grid = (5, 3)  # uneven bins: adaptive pooling overlaps them
    pool = pool_matrix(grid, 2, torch.float64)
    maps = torch.randn(1, 7, *grid, dtype=torch.float64)
    expected = torch.nn.functional.adaptive_avg_pool2d(maps, 2).flatten(2)
    torch.testing.assert_close(maps.flatten(2) @ pool.T, expected)


def test_interact_proj_has_no_per_token_path():
    module = attentions.build("rpattention", dim=DIM, num_heads=HEADS, grid=GRID, m=4, interact_proj=True)
    with pytest.raises(UsageError, match="interact_proj"):
        path_weights("rpattention", module, torch.randn(1, 16, DIM), torch.tensor([0]))


def test_the_position_code_is_the_2d_sin_cos_code():
    code = position_code((2, 3), 10)  # quarter = 2: 8 coded channels, 2 zero
    assert code.shape == (6, 10) and torch.all(code[:, 8:] == 0)
    token = 1 * 3 + 2  # row 1, column 2
    omega = torch.tensor([1.0, 0.01], dtype=torch.float64)
    torch.testing.assert_close(code[token, :8], torch.cat([(1 * omega).sin(), (1 * omega).cos(),
                                                           (2 * omega).sin(), (2 * omega).cos()]))
