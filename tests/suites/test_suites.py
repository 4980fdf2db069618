"""Suite files: parsing, grid expansion and every rejection path (before anything runs)."""
from __future__ import annotations

import pytest

from rpbench.core.errors import SuiteError
from rpbench.suites import load_suite, shipped_suites
from rpbench.suites.fields import parse_grid

from cli_helpers import invoke, tiny_suite

GOOD = """
name = "t"
[axes]
tokens = [64, "4x8"]
m = [4, 16]
dim = [32]
heads = [4]
dtype = ["float32", "bfloat16"]
device = "cpu"
[[attention]]
name = "dense"
[[attention]]
name = "rpattention"
[[attention]]
name = "rpattention"
label = "rp-em2"
em_iters = 2
"""


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expansion_counts_and_m_only_where_it_exists(tmp_path):
    suite = load_suite(write(tmp_path, GOOD))
    by_label = {}
    for case in suite.cases:
        by_label.setdefault(case.label, []).append(case)
    # dense has no m: sizes(2) × dtypes(2); rpattention variants: sizes × m(2) × dtypes
    assert len(by_label["dense"]) == 4 and all(c.m is None for c in by_label["dense"])
    assert len(by_label["rpattention"]) == 8 and {c.m for c in by_label["rpattention"]} == {4, 16}
    assert all(c.knob_dict["em_iters"] == 2 for c in by_label["rp-em2"])
    assert {(c.height, c.width) for c in suite.cases} == {(8, 8), (4, 8)}
    assert len({c.case_id for c in suite.cases}) == len(suite.cases) == 20


def test_case_ids_are_stable_across_loads(tmp_path):
    path = write(tmp_path, GOOD)
    assert [c.case_id for c in load_suite(path).cases] == [c.case_id for c in load_suite(path).cases]


def test_resolution_axis_gives_patch_grid(tmp_path):
    text = GOOD.replace('tokens = [64, "4x8"]', "resolution = [64, 128]\npatch = 16")
    cases = load_suite(write(tmp_path, text)).cases
    assert {(c.resolution, c.height, c.patch) for c in cases} == {(64, 4, 16), (128, 8, 16)}


@pytest.mark.parametrize(
    "mutation, key, words",
    [
        (("[axes]", "colour = 1\n[axes]"), "colour", "unknown key"),
        (('dim = [32]', 'dim = ["wide"]'), "axes.dim", "expected integers"),
        (('name = "dense"', 'name = "densest"'), "attention[0].name", "unknown mechanism"),
        (("m = [4, 16]", "m = []"), "axes.m", "empty axis"),
        (("[axes]", "[axes\n"), "toml", "invalid TOML"),
        (('dtype = ["float32", "bfloat16"]', 'dtype = ["float64"]'), "axes.dtype", "not allowed"),
        (("em_iters = 2", "em_iters = 2\nwindow = 3"), "attention[2]", "unknown knob"),
        (("em_iters = 2", 'em_iters = "two"'), "attention[2]", "must be int"),
        (('device = "cpu"', 'device = "cpu"\nbatches = [2]'), "axes.batches", "unknown axis"),
        (('tokens = [64, "4x8"]', "tokens = [65]"), "tokens", "not a square"),
        (('label = "rp-em2"', 'label = "dense"'), "attention[2].label", "used twice"),
        (("[[attention]]\nname = \"dense\"", "[measure]\nrepeat = -1\n[[attention]]\nname = \"dense\""),
         "measure.repeat", "between 1 and 100000"),
    ],
)
def test_bad_suites_are_rejected_with_file_key_and_allowed(tmp_path, mutation, key, words):
    old, new = mutation
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1), "bad.toml")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert message.startswith("bad.toml: ") and key in message and words in message
    assert "\n" not in message


def test_bad_suite_on_the_cli_is_one_line_and_exit_2(tmp_path):
    path = write(tmp_path, GOOD.replace("m = [4, 16]", "m = []"), "bad.toml")
    result = invoke("sweep", str(path), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "bad.toml: axes.m: empty axis" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_unknown_suite_name(tmp_path):
    result = invoke("sweep", "nosuch")
    assert result.exit_code == 2 and "unknown suite 'nosuch'" in result.output


def test_parse_grid():
    assert parse_grid(196) == (14, 14) and parse_grid("32x64") == (32, 64) and parse_grid("1024") == (32, 32)
    for bad in ("3x", 0, "axb", 10):
        with pytest.raises(SuiteError):
            parse_grid(bad)


def test_every_shipped_suite_loads_and_has_a_description():
    names = set(shipped_suites())
    assert {"quick", "tokens", "reps", "resolution", "highres"} <= names
    for name, path in shipped_suites().items():
        suite = load_suite(path, device_override="cpu")
        assert suite.cases and suite.description, name


def test_quick_covers_every_mechanism():
    import attentions

    suite = load_suite(shipped_suites()["quick"], device_override="cpu")
    assert {c.attention for c in suite.cases} == set(attentions.builtin())


def test_suites_command_lists_one_line_each():
    result = invoke("suites")
    assert result.exit_code == 0
    for name in ("quick", "tokens", "reps", "resolution", "highres"):
        assert name in result.output


def test_filter_selects_cases(tmp_path):
    from rpbench.suites import filter_cases

    cases = load_suite(tiny_suite(tmp_path)).cases
    assert {c.attention for c in filter_cases(cases, "rp*")} == {"rpattention"}
    assert {c.tokens for c in filter_cases(cases, "dense,tokens=256")} == {256}
    # terms on one field are alternatives, on different fields all must hold
    assert {c.attention for c in filter_cases(cases, "rp*,dense")} == {"rpattention", "dense"}
    assert {(c.attention, c.tokens) for c in filter_cases(cases, "rp*,dense,tokens=64")} == {
        ("rpattention", 64), ("dense", 64)}
    assert {c.tokens for c in filter_cases(cases, "tokens=64|256")} == {64, 256}
    assert {c.tokens for c in filter_cases(cases, "tokens=64,tokens=256")} == {64, 256}
    assert filter_cases(cases, "nosuch|also-not") == []
    with pytest.raises(SuiteError, match="unknown field"):
        filter_cases(cases, "colour=red")
