"""Neighborhood attention: NATTEN's window and bias rules, the dense identity, backends, official layout and mask."""
from __future__ import annotations

import logging
import sys
import typing
import warnings
from functools import partial

import pytest
import torch
from official import load_official, stub_module
from seeded import random_tokens
from torch.nn.attention.flex_attention import (
    BlockMask,
    create_block_mask,
    create_mask,
    flex_attention,
)

import attentions
import attentions.neighborhood
from attentions._common import merge_heads, split_heads
from attentions.neighborhood import (
    flex_block_tables,
    natten_problem,
    neighbour_table,
    neighbourhood_mask_mod,
    resolve_backend,
)

DIM, HEADS = 32, 4
NATTEN = "SHI-Labs/NATTEN"
NATTEN_HEAD = "8c8729f496a47804e04f4b57b818edd6797d0926"  # 0.21.7.dev1
NAT, NAT_COMMIT = "SHI-Labs/Neighborhood-Attention-Transformer", "eab2a1c41ecad017a6049b168ca31ff16152b6b2"

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def build(grid=(8, 8), seed: int = 0, dtype=torch.float32, **knobs):
    torch.manual_seed(seed)
    module = attentions.build("neighborhood", dim=DIM, num_heads=HEADS, grid=grid, **knobs).to(dtype).eval()
    if module.rpb is not None:
        with torch.no_grad():  # a bias far from zero, so a wrong offset shows
            module.rpb.normal_()
    return module


tokens = partial(random_tokens, dim=DIM)


def dense_mask(grid, kernel, dilation) -> torch.Tensor:
    keys, _ = neighbour_table(grid, kernel, dilation)
    return torch.zeros(keys.shape[0], keys.shape[0], dtype=torch.bool).scatter_(1, keys, True)


# -- official layouts -----------------------------------------------------------------------


def test_matches_official_state_dicts():
    # NAT-Mini stage 1 (dim 64, 2 heads, kernel 7, 56×56). NATTEN v0.14.6 src/natten/natten2d.py @ 3b54c76
    # (bias=True) and v0.17.5 src/natten/na2d.py @ 4831f05 (rel_pos_bias=True): qkv Linear(C, 3C), rpb
    # (heads, 2k-1, 2k-1), proj Linear(C, C). NATTEN 0.21.7.dev1 src/natten/modules.py @ 8c8729f
    # (NeighborhoodAttentionGeneric): qkv and proj only. Neighbour and block tables are not state.
    linears = {"qkv.weight": (192, 64), "qkv.bias": (192,), "proj.weight": (64, 64), "proj.bias": (64,)}
    for bias, expected in ((True, {**linears, "rpb": (2, 13, 13)}), (False, linears)):
        module = attentions.build("neighborhood", dim=64, num_heads=2, grid=(56, 56), kernel=7, bias=bias)
        assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected
        module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


# -- NATTEN's rules --------------------------------------------------------------------------


def natten_cpp_window(index: int, length: int, kernel: int, dilation: int) -> tuple[int, int]:
    """get_window_start and get_pb_start of NATTEN v0.17.5 (4831f05), csrc/include/natten/cpu/naive/
    natten_cpu_commons.h, non-causal, transcribed: (first key position, first bias entry); key t of the
    window is start + t·dilation, its bias entry pb_start + t."""
    n = kernel // 2
    group, rank = index % dilation, index // dilation
    length_pdp = -(-length // dilation)
    length_pdp -= 1 if group >= dilation - (length_pdp * dilation - length) else 0
    start = max(rank - n, 0) + (rank + n >= length_pdp) * (length_pdp - rank - n - 1)
    if dilation <= 1:
        pb = n + (index < n) * (n - index) + (index + n >= length) * (length - index - 1 - n)
    elif index - n * dilation < 0:
        pb = kernel - 1 - index // dilation
    elif index + n * dilation >= length:
        pb = (length - index - 1) // dilation
    else:
        pb = n
    return start * dilation + group, pb


@pytest.mark.parametrize("grid,kernel,dilation", [((8, 8), 3, 1), ((6, 10), 3, 2), ((9, 11), 3, 3),
                                                  ((7, 7), 7, 1), ((12, 10), 5, 2), ((17, 16), 5, 3)])
def test_tables_follow_natten_window_and_bias_rule(grid, kernel, dilation):
    keys, bias = neighbour_table(grid, kernel, dilation)
    width, side = grid[1], 2 * kernel - 1
    assert all(len(set(row)) == kernel * kernel for row in keys.tolist())  # k² distinct keys, never padding
    for query in range(grid[0] * grid[1]):
        (row, row_pb), (col, col_pb) = (natten_cpp_window(p, length, kernel, dilation)
                                        for p, length in zip(divmod(query, width), grid))
        steps = [(a, b) for a in range(kernel) for b in range(kernel)]
        assert keys[query].tolist() == [(row + a * dilation) * width + col + b * dilation for a, b in steps]
        assert bias[query].tolist() == [(row_pb + a) * side + col_pb + b for a, b in steps]


def test_corner_and_centre_neighbourhoods_by_hand():
    def attended(grid, kernel, dilation, row, col):
        keys, bias = neighbour_table(grid, kernel, dilation)
        query = row * grid[1] + col
        cells = sorted(divmod(key, grid[1]) for key in keys[query].tolist())
        offsets = sorted(divmod(b, 2 * kernel - 1) for b in bias[query].tolist())
        return cells, offsets

    def square(rows, cols):
        return sorted((r, c) for r in rows for c in cols)

    # 8×8, k=3: the corner's window shifts inward to rows/cols 0..2, offsets 0..+2 (table entries 2..4);
    # the centre's is centred, offsets -1..+1 (entries 1..3)
    assert attended((8, 8), 3, 1, 0, 0) == (square((0, 1, 2), (0, 1, 2)), square((2, 3, 4), (2, 3, 4)))
    assert attended((8, 8), 3, 1, 4, 4) == (square((3, 4, 5), (3, 4, 5)), square((1, 2, 3), (1, 2, 3)))
    assert attended((8, 8), 3, 1, 7, 0) == (square((5, 6, 7), (0, 1, 2)), square((0, 1, 2), (2, 3, 4)))
    # dilation 2: the window stays in the query's parity class and shifts inward inside it
    assert attended((8, 8), 3, 2, 0, 0)[0] == square((0, 2, 4), (0, 2, 4))
    assert attended((8, 8), 3, 2, 4, 4)[0] == square((2, 4, 6), (2, 4, 6))
    assert attended((8, 8), 3, 2, 7, 7) == (square((3, 5, 7), (3, 5, 7)), square((0, 1, 2), (0, 1, 2)))
    # 6×10, k=3, d=2, top-right corner: rows 0, 2, 4 (entries 2..4); cols 5, 7, 9 (odd class, entries 0..2)
    assert attended((6, 10), 3, 2, 0, 9) == (square((0, 2, 4), (5, 7, 9)), square((2, 3, 4), (0, 1, 2)))


# -- identities -------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [5, 7])
@pytest.mark.parametrize("backend", ["reference", "flex"])
def test_kernel_covering_the_grid_is_dense_attention_with_the_bias(side, backend):
    grid = (side, side)
    dtype = torch.float64 if backend == "reference" else torch.float32  # flex on CPU: float32 (and below)
    module = build(grid, kernel=side, backend=backend, dtype=dtype)
    module.compile_flex = False
    x = tokens(grid, dtype=dtype)
    q, k, v = (split_heads(t, HEADS) for t in module.qkv(x).chunk(3, dim=-1))
    position = torch.arange(side)
    delta = position[None, :] - position[:, None] + side - 1  # delta[query, key] = key - query + k - 1
    bias = module.rpb[:, delta[:, None, :, None], delta[None, :, None, :]]  # (h, H, W, H, W)
    logits = (q @ k.transpose(-2, -1)) * (DIM // HEADS) ** -0.5 + bias.reshape(HEADS, side**2, side**2)
    expected = module.proj(merge_heads(logits.softmax(-1) @ v))
    with torch.no_grad():  # flex has no CPU backward
        torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid,dilation,compiled", [
    ((8, 8), 1, False), ((8, 8), 2, False), ((6, 10), 1, False), ((6, 10), 2, False),
    pytest.param((6, 10), 2, True, marks=pytest.mark.slow),  # inductor's CPU flex kernel: 10-20 s to compile
])
def test_reference_and_flex_agree(grid, dilation, compiled):
    """Unfused: torch's flex path runs the same mask_mod / score_mod as the kernel; compiled: the CPU kernel."""
    reference = build(grid, kernel=3, dilation=dilation, backend="reference")
    flex = build(grid, kernel=3, dilation=dilation, backend="flex", seed=7)
    flex.load_state_dict(reference.state_dict(), strict=True)
    flex.compile_flex = compiled
    x = tokens(grid)
    with torch.no_grad():  # flex has no CPU backward
        torch.testing.assert_close(flex(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid,kernel,dilation,block", [((8, 8), 7, 1, 4), ((7, 7), 7, 1, 16), ((6, 10), 5, 1, 16),
                                                        ((9, 11), 3, 3, 8), ((16, 20), 5, 2, 128)])
def test_mask_mod_and_block_tables_equal_the_neighbour_table(grid, kernel, dilation, block):
    """Full and partial tiles, ragged last tiles included, as create_block_mask derives them from the dense mask."""
    tokens_ = grid[0] * grid[1]
    keys, _ = neighbour_table(grid, kernel, dilation)
    dense = dense_mask(grid, kernel, dilation)

    def mask_mod(b, h, q_idx, kv_idx):
        return dense[q_idx, kv_idx]

    ours_dense = create_mask(neighbourhood_mask_mod(grid, kernel, dilation), None, None, tokens_, tokens_, "cpu")
    assert torch.equal(ours_dense[0, 0], dense)  # the module's mask_mod says what its tables say
    expected = create_block_mask(mask_mod, None, None, tokens_, tokens_, device="cpu", BLOCK_SIZE=block)
    ours = BlockMask.from_kv_blocks(*flex_block_tables(keys, tokens_, block), BLOCK_SIZE=block,
                                    mask_mod=mask_mod, seq_lengths=(tokens_, tokens_))

    def tiles(mask, count, index):
        counts, indices = getattr(mask, count)[0, 0], getattr(mask, index)[0, 0]
        return [sorted(indices[row, : counts[row]].tolist()) for row in range(counts.shape[0])]

    for names in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        assert tiles(ours, *names) == tiles(expected, *names)


# -- official code: NAT's pure-PyTorch NA, NATTEN's Flex mask ----------------------------------------------


def test_output_matches_official_pure_pytorch_nat():
    """NAT's own unfold + replicate-pad NA with rpb (dilation 1), LegacyNeighborhoodAttention2D (keys qkv, rpb,
    proj) of SHI-Labs/Neighborhood-Attention-Transformer natten/nattentorch2d.py @ eab2a1c, both its modes."""
    legacy = load_official(NAT, "natten/nattentorch2d.py", commit=NAT_COMMIT)
    for grid, kernel in (((8, 8), 3), ((6, 10), 5), ((7, 7), 7), ((9, 12), 5)):
        ours = build(grid, kernel=kernel, backend="reference", dtype=torch.float64)
        x = tokens(grid, dtype=torch.float64)
        for mode in (0, 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "This is the legacy version of NAT"
                theirs = legacy.LegacyNeighborhoodAttention2D(DIM, kernel, HEADS, mode=mode).double().eval()
            theirs.load_state_dict(ours.state_dict(), strict=True)
            expected = theirs(x.view(x.shape[0], *grid, DIM)).reshape(x.shape)
            torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)


def official_flex():
    """NATTEN's flex backend module, its natten imports stubbed (get_na_flex_mask needs none of them)."""
    def unused(*args, **kwargs):
        raise AssertionError("not used by get_na_flex_mask")

    names = {
        "natten.backends.configs.checks": dict(_FLEX_COMPILE_SUPPORTED=True, _FLEX_SUPPORTED=True,
                                               can_run_flex_attention=unused),
        "natten.backends.configs.flex": dict(check_flex_fmha_forward_config=unused,
                                             check_flex_fna_forward_config=unused),
        "natten.token_permute": dict(token_permute_operation=unused, token_unpermute_operation=unused),
        "natten.types": {name: typing.Any for name in (
            "CausalArgType", "CausalArgTypeOrDed", "DimensionType", "DimensionTypeOrDed",
            *(f"{kind}{n}D{tail}" for kind in ("CausalArg", "Dimension") for n in (1, 2, 3)
              for tail in ("Type", "TypeOrDed")))},
        "natten.utils.log": dict(get_logger=logging.getLogger),
        "natten.utils.checks": {name: unused for name in (
            "check_all_args", "check_args_against_input", "check_input_size_arg", "fmha_tensor_checks",
            "na_tensor_checks", "varlen_tensor_checks")},
        "natten.utils.environment": dict(is_torch_compiling=lambda: False),
    }
    stubs = {name: stub_module(name) for name in ("natten", "natten.backends", "natten.backends.configs")}
    stubs.update({name: stub_module(name, **attributes) for name, attributes in names.items()})
    stubs["natten.utils"] = stub_module("natten.utils", log=stubs["natten.utils.log"])
    return load_official(NATTEN, "src/natten/backends/flex.py", commit=NATTEN_HEAD, stubs=stubs)


def test_mask_and_output_match_official_flex_mask(monkeypatch):
    natten_flex = official_flex()
    monkeypatch.setitem(sys.modules, natten_flex.__name__, natten_flex)  # flex's eager path runs Dynamo over it
    for grid, kernel, dilation in (((8, 8), 3, 1), ((6, 10), 3, 2), ((9, 11), 3, 3), ((7, 7), 7, 1),
                                   ((12, 10), 5, 2)):
        official = natten_flex.get_na_flex_mask("cpu", 2, grid, (kernel,) * 2, (1, 1), (dilation,) * 2,
                                                (False, False))
        tokens_ = grid[0] * grid[1]
        official_dense = create_mask(official.mask_mod, None, None, tokens_, tokens_, device="cpu")[0, 0]
        assert torch.equal(official_dense, dense_mask(grid, kernel, dilation)), (grid, kernel, dilation)
        # bias off (NATTEN 0.21 has none): our output against flex_attention run with NATTEN's own mask
        module = build(grid, kernel=kernel, dilation=dilation, bias=False, backend="reference", dtype=torch.float64)
        x = tokens(grid, dtype=torch.float64)
        with warnings.catch_warnings(), torch.no_grad():  # flex has no CPU backward
            warnings.simplefilter("ignore")
            q, k, v = (split_heads(t, HEADS) for t in module.qkv(x).chunk(3, dim=-1))
            attended = flex_attention(q, k, v, block_mask=official, scale=module.scale)
            torch.testing.assert_close(module(x), module.proj(merge_heads(attended)), rtol=1e-5, atol=1e-5)


# -- check, backends, FLOPs -------------------------------------------------------------------------------


def test_check_rejects_what_natten_rejects():
    spec = attentions.spec("neighborhood")
    assert spec.check((8, 8), DIM, HEADS, kernel=3, dilation=2) is None
    assert spec.check((8, 8), DIM, HEADS, kernel=7) is None
    assert "odd" in spec.check((8, 8), DIM, HEADS, kernel=4)
    assert "exceeds" in spec.check((8, 8), DIM, HEADS, kernel=9)
    assert "exceeds" in spec.check((4, 8), DIM, HEADS, kernel=5)
    assert "exceeds" in spec.check((8, 8), DIM, HEADS, kernel=5, dilation=2)
    assert "must be in" in spec.check((8, 8), DIM, HEADS, kernel=3, dilation=0)
    assert "must be in" in spec.check((8, 8), DIM, HEADS, kernel=1)
    assert "is not one of" in spec.check((8, 8), DIM, HEADS, backend="cuda")
    for reason in filter(None, (spec.check((8, 8), DIM, HEADS, kernel=4), spec.check((4, 8), DIM, HEADS))):
        assert "\n" not in reason
    if natten_problem(False) is not None:  # natten absent here: asked for, it is refused in one line
        reason = spec.check((8, 8), DIM, HEADS, kernel=3, backend="natten")
        assert reason.startswith("neighborhood: backend=natten needs natten") and "\n" not in reason
        assert resolve_backend("auto", True, "cuda") == "flex"


def test_auto_resolves_per_device_and_effective_records_it():
    for bias in (True, False):
        assert resolve_backend("auto", bias, "cpu") == "reference"
        for explicit in ("reference", "flex", "natten"):
            assert resolve_backend(explicit, bias, "cpu") == explicit
    spec = attentions.spec("neighborhood")
    assert spec.effective((8, 8), kernel=3, backend="flex")["backend"] == "flex"
    if not torch.cuda.is_available():
        assert spec.effective((8, 8), kernel=3)["backend"] == "reference"
        assert build(kernel=3).resolved_backend(torch.device("cpu")) == "reference"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_flex_on_cuda_matches_reference_forward_and_backward():
    grid = (14, 14)
    reference = build(grid, kernel=5, dilation=2, backend="reference").cuda()
    flex = build(grid, kernel=5, dilation=2, backend="flex", seed=7).cuda()
    flex.load_state_dict(reference.state_dict(), strict=True)
    x = tokens(grid).cuda()
    outs = [module(x) for module in (flex, reference)]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    for out in outs:
        out.square().mean().backward()
    for (name, got), want in zip(flex.named_parameters(), reference.parameters()):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-3, atol=1e-4, msg=name)
