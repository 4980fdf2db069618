"""torch.compile as a case axis, on the CPU (inductor builds with the system compiler): whole-step graphs with no
break, compiled output equal to eager, compile time recorded apart from latency, failures as a status."""
from __future__ import annotations

import json

import pytest
import torch

import rpbench
from rpbench.measure import workload as workload_module
from rpbench.measure.runner import run_case
from rpbench.core.case import CaseFlags, Timing
from rpbench.suites import case_from_flags, load_suite

from cli_helpers import invoke, tiny_suite

QUICK = Timing(warmup_ms=0, repeat=5, rounds=1)
KNOBS = {"rpattention": {"m": 8}, "agent": {"m": 4}}


def _case(name: str, mode: str = "fwd", compile_mode: str = "default"):
    from dataclasses import replace

    flags = CaseFlags(attention=name, tokens=64, dim=32, heads=2, mode=mode, device="cpu", **KNOBS.get(name, {}))
    return replace(case_from_flags(flags), compile=compile_mode)


@pytest.fixture(scope="module")
def compiled():
    """One compiled measurement per mechanism, shared by the tests of this module (compiling is the slow part)."""
    return {name: run_case(_case(name), QUICK, suite="t")
            for name in ("rpattention", "agent", "dense", "window", "focused")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rpattention", "agent", "dense", "window", "focused"])
def test_each_mechanism_compiles_to_one_graph_without_breaks(compiled, name):
    measured = compiled[name]
    assert measured.status == "ok", measured.note
    assert measured.compiled["graphs"] == 1 and measured.compiled["graph_breaks"] == 0
    assert measured.compiled["recompiles"] == 0
    assert measured.rel_err is not None and measured.rel_err < 1e-5  # compiled float32 output vs float64
    # compile time is its own column, never in a sample: the samples are far below it (the median: on a busy machine
    # the first calls after compiling can take a good part of a second, and this case has no warm-up)
    median = sorted(measured.samples)[len(measured.samples) // 2]
    assert measured.compiled["compile_s"] > 0 and median < measured.compiled["compile_s"] * 1e3 / 10


@pytest.mark.slow
def test_compiled_output_matches_eager():
    case = _case("rpattention")
    work = workload_module.make_workload(case)
    work.reset()
    compiled_out = work.step()
    work.reset()
    eager_out = work.eager_step()
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_forward_and_backward_compile_too():
    measured = run_case(_case("rpattention", mode="fwdbwd"), QUICK, suite="t")
    assert measured.status == "ok", measured.note
    assert measured.compiled["graph_breaks"] == 0 and measured.compiled["recompiles"] == 0


def test_a_failed_compilation_is_a_status_never_a_silent_eager_row(monkeypatch):
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("InductorError: CppCompileError: no C++ compiler found")

    def broken(module, mode):
        return Broken()

    monkeypatch.setattr(workload_module, "compile_module", broken)
    measured = run_case(_case("dense"), QUICK, suite="t")
    assert measured.status == "error" and not measured.samples
    assert "torch.compile failed: RuntimeError: InductorError: CppCompileError" in measured.note


def test_the_compile_axis_multiplies_cases_and_eager_ids_never_change(tmp_path):
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    eager = load_suite(path).cases
    path.write_text(path.read_text().replace('mode = ["fwd"]', 'mode = ["fwd"]\ncompile = ["none", "default"]'))
    both = load_suite(path).cases
    assert [c.compile for c in both] == ["none", "default"]
    assert both[0].case_id == eager[0].case_id and both[1].case_id != eager[0].case_id
    assert "compile=default" in both[1].describe()
    bad = tmp_path / "bad.toml"
    bad.write_text(path.read_text().replace('"default"]', '"fastest"]'))
    result = invoke("sweep", str(bad), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "axes.compile" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_a_compiled_sweep_and_run_record_compile_columns(tmp_path):
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    path.write_text(path.read_text().replace('mode = ["fwd"]', 'mode = ["fwd"]\ncompile = ["default"]'))
    out = tmp_path / "run"
    assert invoke("sweep", str(path), "--out", str(out), "--no-report", "--filter", "compile=default").exit_code == 0
    row = rpbench.load(out).iloc[0]
    assert row["compile"] == "default" and row["graphs"] == 1 and row["compile_s"] > 0
    result = invoke("run", "--attention", "window", "--tokens", "64", "--dim", "32", "--heads", "2", "--device", "cpu",
                    "--compile", "default", "--rounds", "1", "--repeat-ms", "5", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["compile"] == "default" and printed["graph_breaks"] == 0


def test_amp_keeps_float32_parameters_and_autocasts_and_aliases_name_dtypes(tmp_path):
    from dataclasses import replace

    flags = CaseFlags(attention="rpattention", tokens=64, dim=32, heads=2, m=8, dtype="bf16", device="cpu")
    cast = case_from_flags(flags)
    assert cast.dtype == "bfloat16" and cast.precision == "cast"
    amp = replace(cast, precision="amp")
    work = workload_module.make_workload(amp)
    assert all(p.dtype == torch.float32 for p in work.module.parameters())
    work.reset()
    assert work.step().dtype == torch.bfloat16  # autocast computed it in bfloat16
    measured = run_case(amp, QUICK, suite="t")
    assert measured.status == "ok" and measured.rel_err < 5e-2 and amp.case_id != cast.case_id
    assert run_case(replace(amp, dtype="float32"), QUICK, suite="t").status == "unsupported"
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    path.write_text(path.read_text().replace('dtype = ["float32"]', 'dtype = ["fp16", "bf16"]\nprecision = ["cast", "amp"]'))
    cases = load_suite(path).cases
    assert [(c.dtype, c.precision) for c in cases] == [("float16", "cast"), ("float16", "amp"),
                                                       ("bfloat16", "cast"), ("bfloat16", "amp")]
    from rpbench.suites import filter_cases

    assert [c.dtype for c in filter_cases(cases, "dtype=bf16")] == ["bfloat16", "bfloat16"]


def test_channels_last_is_for_backbones(tmp_path):
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    path.write_text(path.read_text().replace('mode = ["fwd"]', 'mode = ["fwd"]\nchannels_last = [true]'))
    result = invoke("sweep", str(path), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "axes.channels_last" in result.output
    result = invoke("run", "--attention", "dense", "--tokens", "16", "--device", "cpu", "--channels-last")
    assert result.exit_code == 2 and "--channels-last applies to backbones" in result.output
