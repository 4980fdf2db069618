from __future__ import annotations

import pytest
import torch

import attentions
from rpbench import backbones
from rpbench.measure.probes import attention_share

pytestmark = pytest.mark.slow  # the fast lane leaves these out: whole backbones built and run, several per test

SMALL_KNOBS = {"m": 4, "window": 2, "kernel": 3}  # each mechanism takes the ones it has (NAT: k <= a 4x4 stage)
# Two resolutions per family, small enough for CPU, chosen so Swin pads (3 -> 4 with window 2).
RESOLUTIONS = {"deit": (32, 48), "swin": (64, 96), "pvt": (64, 96)}
# Neighborhood attention cannot run on a stage smaller than its kernel (NATTEN's rule, k·d <= each side; its check
# says so in one line): it plugs in from 3x3 last stages on.
RESOLUTIONS_FOR = {"neighborhood": {"deit": (48, 64), "swin": (96, 128), "pvt": (96, 128)}}
REAL = ("deit-t", "swin-t", "pvt-t")  # run for real; the wider/deeper variants share their code

# Published params (M) and GMACs at 224 px: DeiT, Swin and PVTv2 (b1) papers.
PUBLISHED = {
    "deit-t": (5.7, 1.26),
    "deit-s": (22.1, 4.6),
    "deit-b": (86.6, 17.6),
    "swin-t": (28.3, 4.5),
    "swin-s": (49.6, 8.7),
    "pvt-t": (14.0, 2.1),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a shared 2-core machine, thread contention slows small ops tenfold
    and skews the attention-share comparison; single-threaded CPU runs are steadier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def family(name: str) -> str:
    return name.split("-")[0]


def meta_build(name: str, resolution: int, layout: backbones.Layout):
    """Build and feed on the meta device: full-size models cost nothing, shapes and counts are real."""
    with torch.device("meta"):
        return backbones.build(name, resolution, layout), torch.empty(1, 3, resolution, resolution)


def one_line_error(fn, *args) -> str:
    with pytest.raises(attentions.UnsupportedConfig) as err:
        fn(*args)
    message = str(err.value)
    assert message and "\n" not in message
    return message


def test_available_and_strides():
    assert backbones.available() == ["deit-b", "deit-s", "deit-t", "pvt-t", "swin-s", "swin-t"]
    assert [backbones.total_stride(n) for n in ("deit-s", "swin-t", "pvt-t")] == [16, 32, 32]


@pytest.mark.parametrize("mechanism", attentions.builtin())
@pytest.mark.parametrize("name", backbones.available())
def test_every_mechanism_plugs_in_at_two_resolutions(name, mechanism):
    layout = backbones.parse_layout(name, mechanism, None, SMALL_KNOBS)
    for resolution in RESOLUTIONS_FOR.get(mechanism, RESOLUTIONS)[family(name)]:
        assert backbones.check(name, resolution, layout) is None
        if name in REAL:
            torch.manual_seed(0)
            model = backbones.build(name, resolution, layout)
            with torch.no_grad():
                logits = model(torch.randn(1, 3, resolution, resolution))
            assert torch.isfinite(logits).all()
        else:
            model, images = meta_build(name, resolution, layout)
            logits = model(images)
        assert logits.shape == (1, 1000)
        assert len(model.attention_modules()) == sum(backbones.spec(name).depths)
        expected = attentions.spec(mechanism).factory
        assert all(isinstance(m, expected) for m in model.attention_modules())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params_and_macs_at_224(name):
    model, images = meta_build(name, 224, backbones.parse_layout(name, None, None, {}))
    params_m, gmacs = PUBLISHED[name]
    assert backbones.count_params(model) / 1e6 == pytest.approx(params_m, rel=0.03)
    assert backbones.count_macs(model, images) / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_meta_count_equals_cpu_count():
    layout = backbones.parse_layout("swin-t", "dense", "AABB", {})
    model = backbones.build("swin-t", 64, layout)
    meta_model, meta_images = meta_build("swin-t", 64, layout)
    cpu = backbones.count_macs(model, torch.randn(1, 3, 64, 64))
    assert cpu > 0 and cpu == backbones.count_macs(meta_model, meta_images)


def test_resolution_not_divisible_by_stride():
    layout = backbones.parse_layout("deit-s", None, None, {})
    reason = backbones.check("deit-s", 230, layout)
    assert reason == "deit-s: resolution 230 is not divisible by the total stride 16"
    assert one_line_error(backbones.build, "deit-s", 230, layout) == reason
    assert "total stride 32" in backbones.check("swin-t", 240, backbones.parse_layout("swin-t", None, None, {}))


def test_mechanism_check_failure_names_the_stage():
    layout = backbones.parse_layout("pvt-t", "sra", None, {"sr_ratio": 8})
    reason = backbones.check("pvt-t", 224, layout)
    assert reason.startswith("pvt-t stage 4 (7x7 tokens): ") and "sr_ratio 8" in reason
    assert one_line_error(backbones.build, "pvt-t", 224, layout) == reason
    agent = backbones.parse_layout("deit-t", "agent", None, {"m": 10})
    assert "perfect square" in backbones.check("deit-t", 224, agent)


def test_aaab_layout_places_the_mechanisms_per_stage():
    layout = backbones.parse_layout("swin-t", "rpattention", "AAAB", {"m": [9, 16, 49, 49]})
    assert str(layout) == "rpattention:AAAB m=9,16,49,49"
    assert [layout.stage_knobs(s) for s in range(4)] == [{"m": 9}, {"m": 16}, {"m": 49}, {"m": 49}]
    model, _ = meta_build("swin-t", 224, layout)
    chosen, own = attentions.spec("rpattention").factory, attentions.spec("window").factory
    per_stage = [[block.attn for block in stage if hasattr(block, "attn")] for stage in model.stages]
    assert [len(s) for s in per_stage] == [2, 2, 6, 2]
    assert all(isinstance(a, chosen) for s in per_stage[:3] for a in s)
    assert all(isinstance(a, own) for a in per_stage[3])


def test_deit_per_block_pattern_and_string_forms():
    layout = backbones.parse_layout("deit-t", "agent", "AAAABBBBBBBB", {"m": 9, "window": 3})
    assert str(layout) == "agent:AAAABBBBBBBB m=9"  # window is not an agent knob: dropped
    model, _ = meta_build("deit-t", 224, layout)
    kinds = [type(a) for a in model.attention_modules()]
    assert kinds == [attentions.spec("agent").factory] * 4 + [attentions.spec("dense").factory] * 8
    assert str(backbones.parse_layout("deit-t", None, None, {})) == "own"
    assert str(backbones.parse_layout("pvt-t", "agent", None, {"m": [49] * 4})) == "agent:AAAA m=49"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("swin-t", "agent", "AAA", {}), "expected 4 letters"),
        (("swin-t", "agent", "AAAC", {}), "unknown layout letter(s) 'C'"),
        (("deit-s", "agent", "AAAAA", {}), "expected 1 letter or 12"),
        (("swin-t", "rpatention", "AAAB", {}), "did you mean 'rpattention'"),
        (("swin-t", "agent", "AAAB", {"mm": 9}), "unknown knob(s) mm (did you mean 'm'?)"),
        (("swin-t", "agent", "AAAB", {"m": [9, 16]}), "has 2 values but the backbone has 4"),
        (("swin-t", "agent", "AAAB", {"m": "nine"}), "must be int"),
        (("swin-t", None, "AAAB", {}), "no attention was chosen"),
        (("swim-t", "agent", None, {}), "did you mean 'swin-t'"),
    ],
)
def test_bad_layouts_give_one_line_errors(args, fragment):
    assert fragment in one_line_error(backbones.parse_layout, *args)


def test_own_window_pads_grids_the_window_does_not_divide():
    """At 64 px Swin's grids are 16, 8, 4, 2: window 7 pads the first two (to 21, 14), covers the rest."""
    model = backbones.build("swin-t", 64, backbones.parse_layout("swin-t", None, None, {}))
    attns = [block.attn for stage in model.stages for block in stage if hasattr(block, "attn")]
    assert [a.grid for a in attns] == [(16, 16)] * 2 + [(8, 8)] * 2 + [(4, 4)] * 6 + [(2, 2)] * 2
    assert [a.padded for a in attns] == [(21, 21)] * 2 + [(14, 14)] * 2 + [(4, 4)] * 6 + [(2, 2)] * 2
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_wrong_image_size_is_refused():
    model, _ = meta_build("deit-t", 64, backbones.parse_layout("deit-t", None, None, {}))
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 64, 64\)"):
        model(torch.empty(1, 3, 32, 32, device="meta"))


def test_attention_share_is_measured_and_follows_the_cost():
    """At 576 tokens dense attention dominates DeiT-T's time; RPAttention with 16 representatives does not."""
    shares = {}
    for mechanism, knobs in (("dense", {}), ("rpattention", {"m": 16})):
        torch.manual_seed(0)
        model = backbones.build("deit-t", 384, backbones.parse_layout("deit-t", mechanism, None, knobs))
        shares[mechanism], note = attention_share(model, torch.randn(1, 3, 384, 384), "cpu")
        assert note == ""
    assert all(0.0 < share < 1.0 for share in shares.values())
    assert shares["dense"] > shares["rpattention"], shares
