"""Properties every registered mechanism must have, on small CPU problems."""
from __future__ import annotations

import importlib
import json
import os

import pytest
import torch

import attentions

DIM, HEADS = 32, 4
GRIDS = [(8, 8), (4, 8)]

# Small knobs that make every mechanism valid on both GRIDS.
KNOBS = {
    "dense": {},
    "dense-naive": {},
    "window": {"window": 4},
    "grid": {"window": 4},
    "sra": {"sr_ratio": 2},
    "agent": {"m": 4},
    "linear": {},
    "efficient": {},
    "focused": {},
    "rpattention": {"m": 8},
    "cbsa": {"m": 4},
    "biformer": {"n_win": 2, "topk": 2},
    "lemevit": {"m": 4},
    "mlla": {},
    "litemla": {},
    "channel": {},
    "axial": {},
    "neighborhood": {"kernel": 3, "backend": "reference"},
}

# A mechanism being written, before it joins attentions._MECHANISM_MODULES, is held to these properties with
# RPBENCH_ZOO_EXTRA='{"name": {"module": "file_stem", "knobs": {...}}}' (imported here, so it registers).
for _name, _entry in json.loads(os.environ.get("RPBENCH_ZOO_EXTRA", "{}")).items():
    importlib.import_module(f"attentions.{_entry['module']}")
    KNOBS[_name] = _entry.get("knobs", {})

NAMES = attentions.builtin()  # the zoo; plugins installed here are not held to its knob table


def make(name: str, grid=(8, 8), seed: int = 0, **extra):
    torch.manual_seed(seed)
    return attentions.build(name, dim=DIM, num_heads=HEADS, grid=grid, **{**KNOBS[name], **extra})


def inputs(grid, batch: int = 2, dtype=torch.float32, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, grid[0] * grid[1], DIM, generator=gen).to(dtype)


def test_every_mechanism_is_covered():
    assert set(NAMES) == set(KNOBS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_shape_and_dtype(name, grid):
    module = make(name, grid).eval()
    x = inputs(grid)
    y = module(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    module = make(name)
    module(inputs((8, 8))).square().mean().backward()
    missing = [n for n, p in module.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_seeded_build_is_deterministic(name):
    x = inputs((8, 8))
    a, b = make(name).eval()(x), make(name).eval()(x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_float64_agrees_with_float32(name):
    module = make(name).eval()
    x = inputs((8, 8))
    y32 = module(x)
    y64 = module.double()(x.double())
    rel = (y32.double() - y64).norm() / y64.norm()
    assert rel < 1e-4, f"relative difference {rel:.2e}"


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_forward_runs(name):
    module = make(name).eval().to(torch.bfloat16)
    y = module(inputs((8, 8), dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_analytic_flops_equal_counted(name, grid):
    module = make(name, grid).eval()
    x = inputs(grid, batch=3)
    counted = attentions.count_flops(lambda: module(x))
    analytic = attentions.spec(name).flops(batch=3, grid=grid, dim=DIM, num_heads=HEADS, **KNOBS[name])
    assert analytic["total"] == analytic["core"] + analytic["proj"]
    assert analytic["total"] == counted


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    source, target = make(name, seed=0), make(name, seed=5)
    target.load_state_dict(source.state_dict(), strict=True)
    x = inputs((8, 8))
    assert torch.equal(source.eval()(x), target.eval()(x))


@pytest.mark.parametrize("name", NAMES)
def test_batch_elements_are_independent(name):
    module = make(name).eval()
    x = inputs((8, 8), batch=3)
    whole = module(x)
    parts = torch.cat([module(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_token_count_is_a_clear_error(name):
    module = make(name)
    with pytest.raises(ValueError, match="expected input"):
        module(torch.randn(1, 10, DIM))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_flops_are_counted_as_the_harness_runs_a_forward(name, mode):
    """The harness counts a fwd case under inference_mode with batch 1 (FlopCounterMode's module hooks choke on
    a parameter's view passed to a submodule there)."""
    module = make(name).eval()
    x = inputs((8, 8), batch=1)
    with mode():
        counted = attentions.count_flops(lambda: module(x))
    assert counted == attentions.spec(name).flops(batch=1, grid=(8, 8), dim=DIM, num_heads=HEADS, **KNOBS[name])["total"]
