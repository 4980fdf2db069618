from __future__ import annotations

import pytest

import attentions


def test_available_is_sorted_and_nonempty():
    names = attentions.available()
    assert names == sorted(names) and "dense" in names


def test_unknown_name_lists_valid_ones():
    with pytest.raises(attentions.UnsupportedConfig, match="available: .*dense"):
        attentions.build("densr", dim=32, num_heads=4, grid=(4, 4))


def test_unknown_knob_lists_valid_ones():
    with pytest.raises(attentions.UnsupportedConfig, match="valid knobs: backend"):
        attentions.build("dense", dim=32, num_heads=4, grid=(4, 4), window=3)


def test_wrong_knob_type_and_choice():
    spec = attentions.spec("dense")
    assert "must be str" in spec.check(grid=(4, 4), dim=32, num_heads=4, backend=3)
    assert "not one of" in spec.check(grid=(4, 4), dim=32, num_heads=4, backend="fast")


def test_a_string_for_a_float_knob_is_a_reason_not_a_crash():
    spec = attentions.spec("rpattention")
    assert spec.check(grid=(4, 4), dim=32, num_heads=4, m=4, tau="abc") == "rpattention: knob tau must be float, got 'abc'"
    assert spec.resolve({"tau": 2})["tau"] == 2.0


def test_generic_checks():
    spec = attentions.spec("dense")
    assert spec.check(grid=(4, 4), dim=32, num_heads=4) is None
    assert "divisible" in spec.check(grid=(4, 4), dim=30, num_heads=4)
    assert "positive" in spec.check(grid=(0, 4), dim=32, num_heads=4)


def test_build_raises_the_check_reason():
    with pytest.raises(attentions.UnsupportedConfig, match="divisible"):
        attentions.build("dense", dim=30, num_heads=4, grid=(4, 4))


def test_flops_convention_is_stated():
    assert "2 FLOPs" in attentions.FLOP_CONVENTION
