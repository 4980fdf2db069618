"""The rules that replace hangs and silent nonsense, and untrusted text kept as text: bounded numbers and loops, safe
dir names, what actually ran noted on the row, labels and trace paths that cannot become markup or links."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rpbench
from rpbench.measure.notes import capped as _capped
from rpbench.measure.runner import is_out_of_memory
from rpbench.measure.timing import MAX_TIMED_S, _sample_count
from rpbench.cli import app
from rpbench.results.store import default_run_dir
from rpbench.core.case import Timing, safe_name
from rpbench.views.export import to_markdown
from rpbench.views.figures import build_figures
from rpbench.views.interactive import as_text, to_plotly
from rpbench.views.html import run_dir_link, write_html

from cli_helpers import tiny_suite
from fake_runs import make_row, write_run


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------- 2. every number bounded, every loop bounded

@pytest.mark.parametrize(("settings", "words"), [
    ({"warmup_ms": float("nan")}, "warmup_ms must be a finite number"),
    ({"warmup_ms": float("inf")}, "warmup_ms must be a finite number"),
    ({"warmup_ms": 1e9}, "between 0 and 60000"),
    ({"repeat_ms": -1.0}, "between 0 and 600000"),
    ({"repeat": 10**9}, "between 1 and 100000"),
    ({"repeat": 0}, "between 1 and 100000"),
    ({"max_samples": 0}, "between 1 and 100000"),
    ({"min_samples": 50, "max_samples": 10}, "more than max_samples = 10"),
    ({"cooldown_s": float("nan")}, "cooldown_s must be a finite number"),
    ({"cooldown_s": 1e6}, "between 0 and 600"),
    ({"threads": 100000}, "logical CPUs here"),
    ({"threads": 0}, "between 1 and"),
    ({"energy_s": float("-inf")}, "finite"),
])
def test_timing_problems_name_the_setting_and_its_range(settings, words):
    problems = Timing(**settings).problems()
    assert problems and words in " ".join(f"{key} {problem}" for key, problem in problems)


def test_the_default_timing_and_the_limits_themselves_are_fine():
    assert Timing().problems() == []
    assert Timing(warmup_ms=60_000, repeat_ms=600_000, repeat=100_000, threads=os.cpu_count()).problems() == []


def test_the_timed_loop_stops_after_its_budget_and_the_row_says_so():
    assert _sample_count(Timing(repeat=100_000), per_call_ms=1000.0) == int(MAX_TIMED_S)
    assert _sample_count(Timing(min_samples=100_000, max_samples=100_000), per_call_ms=100.0) == 6000
    assert _sample_count(Timing(repeat=5), per_call_ms=1e9) == 1
    assert _capped(Timing(repeat=100_000), 600) == "600 samples instead of 100000: sampling stops after 600 s per case"
    assert _capped(Timing(repeat=5), 5) is None


@pytest.mark.parametrize("args", [
    ("--warmup-ms", "nan"), ("--warmup-ms", "-5"), ("--repeat-ms", "inf"), ("--repeat-ms", "-1"),
    ("--batch-limit", "0"), ("--tokens", "1000000000000"), ("--batch", "100000"), ("--grid", "20000x1"),
    ("--m", "0"), ("--dim", "100000"), ("--knob", "em_iters=1000000000"),
])
def test_run_refuses_numbers_out_of_range_before_anything_runs(args):
    base = ["run", "--attention", "rpattention", "--m", "4", "--tokens", "16", "--dim", "32", "--heads", "4",
            "--device", "cpu"]
    if args[0] in base:
        index = base.index(args[0])
        base[index + 1] = args[1]
        args = ()
    assert error_line(run(*base, *args))


def test_an_input_too_large_for_any_device_is_refused_up_front(tmp_path):
    path = tiny_suite(tmp_path, names=("dense",), tokens='"16384x16384"')
    path.write_text(path.read_text().replace("batch = [1]", "batch = [64]"))
    assert "input elements; at most" in error_line(run("sweep", path, "--out", tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_allocation_failures_are_oom_on_every_device():
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                         "memory: you tried to allocate 1 bytes."))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


# ---------------------------------------------------------------- 6. untrusted text stays text

HOSTILE_LABELS = ['<a href="https://evil.example">linear</a>', '<span style="font-size:90px">x</span>',
                  '<img src=x onerror=alert(1)>', "%{x}", "[/]"]


@pytest.fixture()
def hostile_run(tmp_path) -> Path:
    rows = [make_row(label=label, attention="linear", tokens=tokens, latency_ms_median=0.1 * (i + 1) * tokens,
                     trace=trace)
            for i, label in enumerate(HOSTILE_LABELS) for tokens, trace in ((196, "javascript:alert(1)"),
                                                                             (784, "traces/abc123.json.gz"))]
    rows.append(make_row(label="dense", tokens=196, trace="/etc/passwd"))
    rows.append(make_row(label="dense", tokens=784, trace="../../outside.json.gz"))
    return write_run(tmp_path / "hostile", rows)


def test_report_html_links_only_relative_paths_inside_the_run_dir(hostile_run):
    page = write_html(hostile_run).read_text()
    assert 'href="javascript:' not in page and 'href="/etc/passwd"' not in page and 'href="../' not in page
    assert '<a href="traces/abc123.json.gz">' in page
    assert "javascript:alert(1)" in page  # shown, as text
    for label in HOSTILE_LABELS[:3]:
        assert label not in page  # never raw markup: in tables as entities, in figures as escaped JSON
    assert run_dir_link("traces/x.json.gz") == '<a href="traces/x.json.gz">traces/x.json.gz</a>'
    assert run_dir_link("JaVaScRiPt:alert(1)") == "JaVaScRiPt:alert(1)"
    assert run_dir_link("a/../../b") == "a/../../b"


def test_plotly_gets_labels_as_entities_never_as_markup(hostile_run):
    from rpbench.analysis import analyse_run

    figures = [to_plotly(f) for f in build_figures(analyse_run(rpbench.load(hostile_run), {}))]
    names = {trace.name for figure in figures for trace in figure.data if trace.name}
    templates = " ".join(trace.hovertemplate or "" for figure in figures for trace in figure.data)
    assert names and not any("<" in name or "%{" in name for name in names)
    assert as_text(HOSTILE_LABELS[0]) in names and "&#37;&#123;x&#125;" in templates


def test_markdown_export_shows_labels_as_text(hostile_run):
    assert run("export", hostile_run, "--format", "md").exit_code == 0
    text = (hostile_run / "export.md").read_text()
    assert "<a href" not in text and "<span" not in text and "<img" not in text
    assert "&lt;a href=&quot;" in text or "&lt;a href=\"https://evil.example\"&gt;" in text
    assert "](" not in to_markdown(__import__("pandas").DataFrame({"a": ["[x](javascript:alert(1))"]}))


# ---------------------------------------------------------------- 7. suite names become safe directory names

@pytest.mark.parametrize(("name", "expected"), [
    ("../../escaped", "escaped"), ("/etc/cron.d/x", "etc-cron.d-x"), ("..", "suite"), ("", "suite"),
    ("a b/c\\d", "a-b-c-d"), ("x" * 1000, "x" * 64), ("héllo wörld", "h-llo-w-rld"), (".hidden", "hidden"),
])
def test_safe_name(name, expected):
    assert safe_name(name) == expected
    assert default_run_dir(name).parent == Path("results")


def test_a_suite_named_to_escape_results_stays_inside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    path.write_text(path.read_text().replace('name = "tiny"', 'name = "../../escaped"'))
    assert run("sweep", path, "--no-report").exit_code == 0
    made = list((tmp_path / "results").iterdir())
    assert len(made) == 1 and made[0].name.startswith("escaped-") and not (tmp_path.parent / "escaped").exists()
    long = tiny_suite(tmp_path, names=("dense",), tokens="16", filename="long.toml")
    long.write_text(long.read_text().replace('name = "tiny"', f'name = "{"n" * 101}"'))
    assert "name: is 101 characters long; at most 100" in error_line(run("sweep", long))


# ---------------------------------------------------------------- 8. no silent nonsense

def test_more_representatives_than_tokens_is_unsupported_not_measured(tmp_path):
    path = tiny_suite(tmp_path, names=("rpattention", "agent", "cbsa"), tokens="16")
    path.write_text(path.read_text().replace("m = [4]", "m = [64]"))
    assert run("sweep", path, "--out", tmp_path / "run", "--no-report").exit_code == 0
    frame = rpbench.load(tmp_path / "run")
    assert (frame["status"] == "unsupported").all()
    assert frame["notes"].str.contains("m=64 .* for N=16 tokens; m must be at most N").all()


def test_a_clamped_window_is_noted_with_what_ran(tmp_path):
    path = tiny_suite(tmp_path, names=("window", "grid"), tokens="16")
    path.write_text(path.read_text().replace('name = "window"', 'name = "window"\nwindow = 7\nshift = 3'))
    assert run("sweep", path, "--out", tmp_path / "run", "--no-report").exit_code == 0
    notes = rpbench.load(tmp_path / "run").set_index("label")["notes"]
    assert "ran shift=0, window=4 (asked shift=3, window=7; fitted to the 4x4 grid)" in notes["window"]
    assert "ran window=4 (asked window=7; fitted to the 4x4 grid)" in notes["grid"]


def test_a_window_that_fits_gets_no_note(tmp_path):
    path = tiny_suite(tmp_path, names=("window",), tokens="64")
    path.write_text(path.read_text().replace('name = "window"', 'name = "window"\nwindow = 2'))
    assert run("sweep", path, "--out", tmp_path / "run", "--no-report").exit_code == 0
    assert "ran " not in str(rpbench.load(tmp_path / "run")["notes"].item())


@pytest.mark.parametrize(("args", "words"), [
    (("compare", "A", "A", "--threshold", "nan"), "threshold must be between 0 and 1e+06 %, got nan"),
    (("profile", "--attention", "dense", "--tokens", "16", "--active", "100000000"), "--active 100000000: must be "
     "between 1 and 100"),
    (("profile", "--attention", "dense", "--tokens", "16", "--wait", "-1"), "--wait -1: must be between 0 and 1000"),
    (("run", "--attention", "dense", "--tokens", "16", "--layout", "AB"), "--layout places an attention in a "
     "backbone's stages; it needs --backbone"),
    (("run", "--attention", "rpattention", "--tokens", "16", "--m", "4", "--knob", "m=8"), "both set m"),
    (("sweep", "quick", "--filter", " , "), "--filter ' , ': no terms"),
])
def test_nonsense_flags_get_a_rule(tmp_path, args, words):
    if args[0] == "compare":
        write_run(tmp_path / "A", [make_row()])
        args = ("compare", tmp_path / "A", tmp_path / "A", *args[3:])
    assert words in error_line(run(*args))


def test_a_sweep_run_in_process_gives_the_thread_count_back(tmp_path):
    import torch

    before = torch.get_num_threads()
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    path.write_text(path.read_text().replace("repeat = 5", "repeat = 5\nthreads = 1"))
    assert run("sweep", path, "--out", tmp_path / "run", "--no-report").exit_code == 0
    assert rpbench.load(tmp_path / "run")["threads"].item() == 1
    assert torch.get_num_threads() == before
