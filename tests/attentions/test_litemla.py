"""litemla: official state-dict layout, outputs against timm's and the authors' LiteMLA, a hand-written check."""
from __future__ import annotations

import types
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from official import load_official, stub_module
from seeded import random_tokens
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import attentions
from attentions.litemla import relu_linear_attention

DIM, HEADS = 32, 4
TIMM = "huggingface/pytorch-image-models"
AUTHORS = "mit-han-lab/efficientvit"


def build(grid=(8, 8), seed: int = 0, dtype=torch.float32, **knobs) -> nn.Module:
    torch.manual_seed(seed)
    module = attentions.build("litemla", dim=DIM, num_heads=HEADS, grid=grid, **knobs).to(dtype).eval()
    with torch.no_grad():  # BatchNorm away from identity, so the checks see it
        norm = module.proj.norm
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.normal_()
        norm.bias.normal_()
    return module


tokens = partial(random_tokens, dim=DIM)


def as_map(x: torch.Tensor, grid) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


def as_tokens(y: torch.Tensor) -> torch.Tensor:
    return y.flatten(2).transpose(1, 2)


def test_litemla_matches_official_state_dict():
    # timm timm/models/efficientvit_mit.py @ aa4b5850 (file last changed c0e3d24f), LiteMLA.__init__ as
    # EfficientVitBlock builds it in efficientvit_b1 stage 3 (in = out = 128 channels, head_dim 16 -> 8 heads,
    # scales (5,), use_bias False, norm (None, BatchNorm2d)): qkv = ConvNormAct(128, 384, 1) with no norm,
    # aggreg.0 = [depthwise 5×5 Conv2d(384, groups 384), Conv2d(384, 384, 1, groups 24)] without bias,
    # proj = ConvNormAct(256, 128, 1) with BatchNorm2d. mit-han-lab efficientvit/models/nn/ops.py @ de7d773
    # (ConvLayer: conv, norm) gives the same keys and shapes.
    module = attentions.build("litemla", dim=128, num_heads=8, grid=(14, 14))
    expected = {
        "qkv.conv.weight": (384, 128, 1, 1),
        "aggreg.0.0.weight": (384, 1, 5, 5),
        "aggreg.0.1.weight": (384, 16, 1, 1),
        "proj.conv.weight": (128, 256, 1, 1),
        "proj.norm.weight": (128,),
        "proj.norm.bias": (128,),
        "proj.norm.running_mean": (128,),
        "proj.norm.running_var": (128,),
        "proj.norm.num_batches_tracked": (),
    }
    assert {key: tuple(value.shape) for key, value in module.state_dict().items()} == expected
    module.load_state_dict({key: torch.zeros(shape) for key, shape in expected.items()}, strict=True)


def test_kernel_size_sets_the_one_branch_or_none():
    module = attentions.build("litemla", dim=DIM, num_heads=HEADS, grid=(8, 8), kernel_size=3)
    assert [branch[0].kernel_size for branch in module.aggreg] == [(3, 3)]
    assert module.proj.conv.in_channels == 2 * DIM
    plain = attentions.build("litemla", dim=DIM, num_heads=HEADS, grid=(8, 8), kernel_size=0)
    assert len(plain.aggreg) == 0 and plain.proj.conv.in_channels == DIM


# -- the official modules, where mirrored -------------------------------------------------------------


def _passthrough(name: str) -> types.ModuleType:
    """A module whose every missing attribute is a function returning its first argument (decorators, cfgs)."""
    return stub_module(name, __getattr__=lambda attr: (lambda *args, **kwargs: args[0] if args else None))


def _conv2d(in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1, bias=False, **_):
    # timm.layers.create_conv2d with its default padding: symmetric ((stride - 1) + dilation·(k - 1)) // 2
    padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


def timm_efficientvit() -> types.ModuleType:
    """timm's efficientvit_mit.py from the mirror, executed inside a stand-in `timm.models` package."""
    layers = _passthrough("timm.layers")
    layers.create_conv2d = _conv2d
    stubs = {name: _passthrough(name) for name in (
        "timm", "timm.data", "timm.models", "timm.models._builder", "timm.models._features",
        "timm.models._features_fx", "timm.models._manipulate", "timm.models._registry")}
    stubs["timm.layers"] = layers
    return load_official(TIMM, "timm/models/efficientvit_mit.py", stubs=stubs, package="timm.models")


def authors_ops() -> types.ModuleType:
    """mit-han-lab's efficientvit/models/nn/ops.py, its act/norm registries and utils given by tiny stand-ins."""
    lists = load_official(AUTHORS, "efficientvit/models/utils/list.py")
    acts = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "silu": nn.SiLU}
    stubs = {
        "efficientvit": stub_module("efficientvit"),
        "efficientvit.models": stub_module("efficientvit.models"),
        "efficientvit.models.nn": stub_module("efficientvit.models.nn"),
        "efficientvit.models.nn.act": stub_module(
            "efficientvit.models.nn.act", build_act=lambda name, **kw: acts[name](**kw) if name in acts else None),
        "efficientvit.models.nn.norm": stub_module(
            "efficientvit.models.nn.norm",
            build_norm=lambda name="bn2d", num_features=None, **kw: nn.BatchNorm2d(num_features)
            if name == "bn2d" else None),
        "efficientvit.models.utils": stub_module(
            "efficientvit.models.utils", get_same_padding=lambda k: k // 2, list_sum=lists.list_sum,
            resize=None, val2list=lists.val2list, val2tuple=lists.val2tuple),
    }
    return load_official(AUTHORS, "efficientvit/models/nn/ops.py", stubs=stubs)


@pytest.mark.parametrize(("grid", "kernel_size"), [((8, 8), 5), ((4, 8), 5), ((4, 8), 3), ((4, 8), 0)])
def test_matches_timm_litemla(grid, kernel_size):
    ours = build(grid, kernel_size=kernel_size, eps=1e-5)
    scales = (kernel_size,) if kernel_size else ()
    theirs = timm_efficientvit().LiteMLA(DIM, DIM, dim=DIM // HEADS, scales=scales, eps=1e-5).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = tokens(grid)
    torch.testing.assert_close(ours(x), as_tokens(theirs(as_map(x, grid))), rtol=1e-5, atol=1e-5)
    ours.train()  # batch statistics: the same function in train mode too
    theirs.train()
    torch.testing.assert_close(ours(x), as_tokens(theirs(as_map(x, grid))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid", [(8, 8), (4, 8)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_matches_the_authors_litemla_with_their_eps(grid):
    ours = build(grid)  # eps 1e-15, the authors' default
    theirs = authors_ops().LiteMLA(DIM, DIM, dim=DIM // HEADS).eval()
    assert theirs.eps == ours.eps == 1e-15
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = tokens(grid)
    torch.testing.assert_close(ours(x), as_tokens(theirs(as_map(x, grid))), rtol=1e-5, atol=1e-5)


# -- always: a hand-written LiteMLA in the quadratic form ----------------------------------------------


def hand_written(module: nn.Module, x: torch.Tensor, grid, eps: float) -> torch.Tensor:
    """Each head as explicit N×N ReLU attention, q/k/v cut by hand from the official channel layout."""
    d, (height, width) = DIM // HEADS, grid
    qkv = F.conv2d(as_map(x, grid), module.qkv.conv.weight)
    dw, pw = module.aggreg[0][0].weight, module.aggreg[0][1].weight
    stacked = torch.cat([qkv, F.conv2d(F.conv2d(qkv, dw, padding=2, groups=3 * DIM), pw, groups=3 * HEADS)], 1)
    outs = []
    for head in range(2 * HEADS):  # HEADS plain heads, then HEADS aggregated ones
        block = stacked[:, 3 * d * head : 3 * d * (head + 1)].flatten(2)  # (B, 3d, N)
        q, k, v = F.relu(block[:, :d]), F.relu(block[:, d : 2 * d]), block[:, 2 * d :]
        scores = q.transpose(1, 2) @ k  # (B, N, N): query n, key m
        outs.append((scores @ v.transpose(1, 2)) / (scores.sum(-1, keepdim=True) + eps))
    out = torch.cat([o.transpose(1, 2) for o in outs], 1).reshape(x.shape[0], -1, height, width)
    norm = module.proj.norm
    y = F.batch_norm(F.conv2d(out, module.proj.conv.weight), norm.running_mean, norm.running_var,
                     norm.weight, norm.bias, eps=norm.eps)
    return as_tokens(y)


@pytest.mark.parametrize("grid", [(8, 8), (4, 8), (3, 5)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_equals_hand_written_quadratic_form(grid):
    module = build(grid, dtype=torch.float64)
    x = tokens(grid, dtype=torch.float64)
    torch.testing.assert_close(module(x), hand_written(module, x, grid, module.eps), rtol=1e-5, atol=1e-5)


def test_low_precision_attention_runs_in_float32():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 16, 8, generator=gen).to(torch.bfloat16) for _ in range(3))
    q, k = q.relu(), k.relu()
    out = relu_linear_attention(q, k, v, 1e-15)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, relu_linear_attention(q.float(), k.float(), v.float(), 1e-15).to(torch.bfloat16))


class MatmulDtypes(TorchDispatchMode):
    """Records the dtype of every matrix product as it reaches the kernels (after autocast's casts)."""

    def __init__(self):
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.bmm, torch.ops.aten.mm):
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_autocast_does_not_narrow_the_attention():
    module = build((4, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16), MatmulDtypes() as seen:
        y = module(tokens((4, 8)))
    assert seen.dtypes == [torch.float32, torch.float32]  # the state and the read-out
    assert y.dtype == torch.bfloat16  # the 1×1 convs ran under autocast, the result cast back as official


@pytest.mark.parametrize("kernel_size", [0, 3, 7])
@pytest.mark.parametrize("grid", [(4, 8), (5, 3)], ids=lambda g: f"{g[0]}x{g[1]}")
def test_flops_equal_counted_for_other_kernels(grid, kernel_size):
    module = build(grid, kernel_size=kernel_size)
    x = tokens(grid, batch=3)
    analytic = attentions.spec("litemla").flops(batch=3, grid=grid, dim=DIM, num_heads=HEADS, kernel_size=kernel_size)
    assert analytic["total"] == attentions.count_flops(lambda: module(x))


@pytest.mark.parametrize("knobs", [{"kernel_size": 4}, {"kernel_size": 65}, {"kernel_size": -3},
                                   {"kernel_size": "5"}, {"eps": -1.0}])
def test_check_rejects_bad_knobs(knobs):
    reason = attentions.spec("litemla").check((8, 8), DIM, HEADS, **knobs)
    assert reason and reason.startswith("litemla") and "\n" not in reason


def test_check_accepts_the_official_scales_on_any_grid():
    for kernel_size, grid in [(5, (8, 8)), (3, (1, 9)), (0, (2, 2)), (5, (1, 1)), (1, (3, 4))]:
        assert attentions.spec("litemla").check(grid, DIM, HEADS, kernel_size=kernel_size) is None
