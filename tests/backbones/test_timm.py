"""timm models as backbones (`--backbone timm:<model>`): built without weights, their grid attention swapped for a
registry mechanism. A stand-in `timm` module (same create_model/list_models interface, a ViT and a windowed model)
tests the adapter everywhere; the checks against the real timm run where it is installed (the GPU image has it)."""
from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rpbench import backbones
from rpbench.backbones import timm_models
from rpbench.measure.probes import attention_share
from rpbench.measure.runner import run_case
from rpbench.results.rows import row_of
from rpbench.core.case import CaseFlags, Timing
from rpbench.suites import case_from_flags, load_suite

from cli_helpers import invoke


class Attention(nn.Module):
    """Named and shaped like timm's ViT attention: qkv, proj, num_heads, forward(x, attn_mask=None)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads, self.qkv, self.proj = num_heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, attn_mask=None):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch, dim):
        super().__init__()
        self.patch_size, self.grid_size = (patch, patch), (img_size // patch, img_size // patch)
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.attn, self.norm2 = nn.LayerNorm(dim), Attention(dim, heads), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FakeViT(nn.Module):
    def __init__(self, img_size=64, class_token=True, global_pool="token", num_classes=1000, dim=64, depth=2,
                 heads=4, patch=16):
        super().__init__()
        self.embed_dim, self.num_prefix_tokens, self.global_pool = dim, int(class_token), global_pool
        self.patch_embed = PatchEmbed(img_size, patch, dim)
        tokens = (img_size // patch) ** 2 + self.num_prefix_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def forward(self, images):
        x = self.patch_embed(images)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        return self.head(x.mean(1) if self.global_pool == "avg" else x[:, 0])


class FakeWindowed(nn.Module):
    """Attention over 4-token windows: named Attention, but it never sees the grid."""

    def __init__(self, img_size=64, num_classes=1000):
        super().__init__()
        self.embed_dim, self.stem = 32, nn.Conv2d(3, 32, 16, 16)
        self.attn, self.head = Attention(32, 2), nn.Linear(32, num_classes)

    def forward(self, images):
        x = self.stem(images).flatten(2).transpose(1, 2)
        b, n, c = x.shape
        return self.head(self.attn(x.reshape(b * n // 4, 4, c)).reshape(b, n, c).mean(1))


class WindowAttention(Attention):
    """Named and shaped like timm's Swin attention: (B·windows, tokens of a window, C) in, the same out."""


class FakeSwin(nn.Module):
    """A Swin-like stage: a 4 px patch grid in 2x2 windows, attention inside each window, no whole-grid attention."""

    def __init__(self, img_size=32, num_classes=1000, embed_dim=32):
        super().__init__()
        self.embed_dim, self.num_features = embed_dim, 2 * embed_dim
        self.patch_embed = PatchEmbed(img_size, 4, embed_dim)
        self.attn, self.mlp = WindowAttention(embed_dim, 2), nn.Linear(embed_dim, embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, images):
        x = self.patch_embed(images)
        b, n, c = x.shape
        side = int(n ** 0.5)
        windows = x.view(b, side // 2, 2, side // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, 4, c)
        x = self.attn(windows).reshape(b, n, c)
        return self.head((x + self.mlp(x)).mean(1))


class FakeConvNet(nn.Module):
    """No attention module at all (a ResNet-like model): its share is unknown, never 0."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.num_features, self.stem, self.head = 16, nn.Conv2d(3, 16, 4, 4), nn.Linear(16, num_classes)

    def forward(self, images):
        return self.head(self.stem(images).mean((2, 3)))


def fake_timm() -> types.ModuleType:
    module = types.ModuleType("timm")
    models = {"vit_fake": FakeViT, "windowed_fake": FakeWindowed, "swin_fake": FakeSwin, "convnet_fake": FakeConvNet}
    module.list_models = lambda: sorted(models)

    def create_model(name, pretrained=False, **kwargs):
        assert pretrained is False  # never weights
        return models[name](**kwargs)

    module.create_model = create_model
    return module


@pytest.fixture()
def timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", fake_timm())
    timm_models._probe.cache_clear()
    yield
    timm_models._probe.cache_clear()


def layout(name, attention="rpattention", pattern=None, knobs=None):
    return backbones.parse_layout(name, attention, pattern, knobs if knobs is not None else {"m": 4})


def test_every_grid_attention_is_swapped_and_the_output_kept(timm):
    spec = backbones.spec("timm:vit_fake")
    assert (spec.stage_strides, spec.widths, spec.depths, spec.heads) == ((16,), (64,), (2,), (4,))
    model = backbones.build("timm:vit_fake", 64, layout("timm:vit_fake"))
    swapped = model.attention_modules()
    assert len(swapped) == 2 and all(isinstance(m, timm_models._Swapped) for m in swapped)
    assert not any(type(m).__name__ == "Attention" for m in model.modules())  # timm's own modules are gone
    assert model.model.cls_token is None  # tokens are exactly the 4x4 grid
    images = torch.randn(2, 3, 64, 64)
    assert model(images).shape == (2, 1000)
    share, note = attention_share(model, images, "cpu")
    assert 0.0 < share < 1.0 and note == ""


def test_a_per_block_layout_keeps_timms_own_attention_in_b_blocks(timm):
    model = backbones.build("timm:vit_fake", 64, layout("timm:vit_fake", pattern="AB"))
    first, second = model.attention_modules()
    assert isinstance(first, timm_models._Swapped) and type(second).__name__ == "Attention"
    own = backbones.build("timm:vit_fake", 64, layout("timm:vit_fake", attention=None, knobs={}))
    assert own.model.cls_token is not None and all(type(m).__name__ == "Attention" for m in own.attention_modules())


def test_a_timm_backbone_is_measured_like_ours(timm):
    case = case_from_flags(CaseFlags(backbone="timm:vit_fake", attention="rpattention", m=4, resolution=64,
                                     device="cpu"))
    assert (case.dim, case.heads, case.height, case.patch) == (64, 4, 4, 16)
    measured = run_case(case, Timing(warmup_ms=1, repeat=3, rounds=1))
    assert measured.status == "ok", measured.note
    assert measured.params > 0 and measured.model.macs > 0 and 0.0 < measured.model.attention_share < 1.0
    assert "attention share" not in (row_of(measured)["notes"] or "")


@pytest.mark.parametrize("name,classes", [("windowed_fake", ["Attention"]), ("swin_fake", ["WindowAttention"])])
def test_the_share_of_a_model_whose_attention_sees_windows_is_measured(timm, name, classes):
    """Swin's WindowAttention (and attention over any windows) is timed like a ViT's Attention: never 0."""
    model = backbones.build(f"timm:{name}", 64 if name == "windowed_fake" else 32,
                            layout(f"timm:{name}", attention=None, knobs={}))
    assert [type(m).__name__ for m in model.attention_modules()] == classes
    share, note = attention_share(model, torch.randn(1, 3, *(2 * [model.resolution])), "cpu")
    assert 0.0 < share < 1.0 and note == ""


def test_a_swin_like_model_takes_its_heads_from_its_window_attention(timm):
    spec = backbones.spec("timm:swin_fake")
    assert (spec.widths, spec.heads, spec.depths) == ((32,), (2,), (1,))  # not 1 head made up


def test_a_model_without_attention_has_no_share_and_a_note_never_zero(timm):
    case = case_from_flags(CaseFlags(backbone="timm:convnet_fake", resolution=32, device="cpu"))
    measured = run_case(case, Timing(warmup_ms=1, repeat=3, rounds=1))
    assert measured.status == "ok", measured.note
    assert measured.model.attention_share is None
    row = row_of(measured)
    assert row.get("attention_share") is None and row["gmacs"] > 0
    assert "attention share not measured: timm:convnet_fake has no module of a timm attention family" in row["notes"]


def test_a_backbone_suite_takes_timm_models(timm, tmp_path):
    suite = tmp_path / "timm.toml"
    suite.write_text('name = "t"\nscope = "backbone"\n[axes]\nbackbone = ["deit-t", "timm:vit_fake"]\n'
                     'resolution = [64]\ndevice = "cpu"\n[[layout]]\nattention = "rpattention"\nm = 4\n')
    cases = load_suite(suite).cases
    assert [case.backbone for case in cases] == ["deit-t", "timm:vit_fake"]


@pytest.mark.parametrize("args,words", [
    (("--backbone", "timm:windowed_fake", "--attention", "dense"), "do not see the whole token grid"),
    (("--backbone", "timm:vit_fak", "--attention", "dense"), "did you mean timm:vit_fake?"),
    (("--backbone", "timm:vit_fake", "--attention", "dense", "--resolution", "72"), "not divisible by the total stride 16"),
])
def test_what_cannot_be_done_is_one_line(timm, args, words):
    resolution = () if "--resolution" in args else ("--resolution", "64")
    result = invoke("run", *args, *resolution, "--device", "cpu")
    assert result.exit_code in (1, 2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines


def test_without_timm_one_line_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    timm_models._probe.cache_clear()
    result = invoke("run", "--backbone", "timm:vit_tiny_patch16_224", "--resolution", "224", "--device", "cpu")
    timm_models._probe.cache_clear()
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "timm backbones need timm: pip install 'rpbench[timm]'" in result.output


# ---- against the real timm (where it imports: the GPU image has it)

def real_timm():
    try:
        import timm
    except Exception as err:  # not installed, or a torchvision built for another torch
        pytest.skip(f"timm is not importable here ({type(err).__name__})")
    timm_models._probe.cache_clear()
    return timm


@pytest.mark.parametrize("ours,theirs,options", [
    ("deit-t", "deit_tiny_patch16_224", {"class_token": False, "global_pool": "avg"}),
    ("deit-s", "deit_small_patch16_224", {"class_token": False, "global_pool": "avg"}),
    ("swin-t", "swin_tiny_patch4_window7_224", {}),
])
def test_our_parameter_counts_match_timms_for_the_same_configuration(ours, theirs, options):
    timm = real_timm()
    with torch.device("meta"):
        mine = sum(p.numel() for p in backbones.build(ours, 224, backbones.parse_layout(ours, None, None)).parameters())
        reference = sum(p.numel() for p in timm.create_model(theirs, pretrained=False, **options).parameters())
    assert mine == pytest.approx(reference, rel=0.005), (mine, reference)


def test_a_real_timm_vit_gets_every_attention_swapped():
    real_timm()
    model = backbones.build("timm:vit_tiny_patch16_224", 224, layout("timm:vit_tiny_patch16_224", knobs={"m": 16}))
    assert len(model.attention_modules()) == 12
    assert all(isinstance(m, timm_models._Swapped) for m in model.attention_modules())
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


# Every timm attention family the README names, and others whose attention sees the grid or windows: (model,
# resolution, the timm classes its attention share is timed around).
REAL_FAMILIES = [
    ("vit_tiny_patch16_224", 224, {"Attention"}),
    ("deit_tiny_patch16_224", 224, {"Attention"}),
    ("swin_tiny_patch4_window7_224", 224, {"WindowAttention"}),
    ("swinv2_tiny_window8_256", 256, {"WindowAttention"}),
    ("pvt_v2_b0", 224, {"Attention"}),
    ("davit_tiny", 224, {"WindowAttention", "ChannelAttention"}),
    ("cait_xxs24_224", 224, {"TalkingHeadAttn", "ClassAttn"}),
    ("xcit_nano_12_p16_224", 224, {"XCA", "ClassAttn"}),
    ("efficientvit_b0", 224, {"LiteMLA"}),
    ("convit_tiny", 224, {"GPSA", "MHSA"}),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,resolution,classes", REAL_FAMILIES, ids=[f[0] for f in REAL_FAMILIES])
def test_real_timm_attention_shares_are_measured(name, resolution, classes):
    real_timm()
    torch.manual_seed(0)
    model = backbones.build(f"timm:{name}", resolution, layout(f"timm:{name}", attention=None, knobs={})).eval()
    found = model.attention_modules()
    assert {type(m).__name__ for m in found} == classes
    share, note = attention_share(model, torch.randn(1, 3, resolution, resolution), "cpu")
    print(f"{name}: attention_share {share:.3f} over {len(found)} module(s) of {sorted(classes)}")
    assert 0.0 < share < 1.0 and note == ""


def test_a_real_timm_cnn_has_no_share_and_says_why():
    real_timm()
    model = backbones.build("timm:resnet18", 64, layout("timm:resnet18", attention=None, knobs={}))
    share, note = attention_share(model, torch.randn(1, 3, 64, 64), "cpu")
    assert share is None and "timm:resnet18 has no module of a timm attention family" in note


@pytest.mark.slow
def test_the_issues_swin_run_reports_a_share():
    """`rpbench run --backbone timm:swin_tiny_patch4_window7_224` printed attention_share 0.0 (Swin's
    WindowAttention was not recognised)."""
    import json

    real_timm()
    result = invoke("run", "--backbone", "timm:swin_tiny_patch4_window7_224", "--resolution", "224", "--device",
                    "cpu", "--rounds", "1", "--warmup-ms", "0", "--repeat-ms", "1", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    print(f"swin_tiny_patch4_window7_224 via rpbench run: attention_share {row['attention_share']}, heads "
          f"{row['heads']}")
    assert 0.0 < row["attention_share"] < 1.0 and row["heads"] == 3
