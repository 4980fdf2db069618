"""The Python API: rpbench.bench and rpbench.sweep return the table a CLI sweep of the same cases gives."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import rpbench
from rpbench.api import to_toml
from rpbench.core.errors import SuiteError, UsageError

from cli_helpers import invoke, tiny_suite

MEASURE = {"warmup_ms": 1, "repeat": 5, "rounds": 1}
REPO = Path(__file__).resolve().parents[2]


def test_bench_gives_the_columns_and_dtypes_of_a_sweep_of_the_same_cases(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense", "rpattention"), tokens="64, 256")
    assert invoke("sweep", str(suite), "--out", str(tmp_path / "cli"), "--no-report").exit_code == 0
    swept = rpbench.load(tmp_path / "cli")
    frame = rpbench.bench(["dense", "rpattention"], tokens=[64, 256], m=4, dim=32, heads=4, device="cpu",
                          measure=MEASURE)
    assert list(frame.columns) == list(swept.columns)
    pd.testing.assert_series_equal(frame.dtypes, swept.dtypes)
    assert sorted(frame["case_id"]) == sorted(swept["case_id"])  # the very same cases
    assert (frame["status"] == "ok").all() and frame.attrs["run_dir"] is None


def test_bench_keeps_its_run_dir_when_asked_and_takes_plugins_and_knobs(tmp_path):
    plugin = f"{REPO / 'examples' / 'my_attention.py'}:ReluAttention"
    frame = rpbench.bench([plugin, {"name": "window", "label": "w2", "window": 2}], tokens="8x8", dim=32, heads=4,
                          knobs={"eps": 0.01}, device="cpu", measure=MEASURE, out=tmp_path / "kept")
    assert frame.attrs["run_dir"] == str(tmp_path / "kept")
    assert set(frame["label"]) == {plugin, "w2"} and (frame["status"] == "ok").all()
    assert frame.loc[frame["label"] == plugin, "knobs"].item() == '{"eps": 0.01}'
    kept = rpbench.load(tmp_path / "kept")
    pd.testing.assert_frame_equal(kept, frame.reset_index(drop=True), check_like=False)
    assert (tmp_path / "kept" / "suite.toml").read_text().count("[[attention]]") == 2


def test_sweep_of_a_dict_can_be_resumed_like_any_run(tmp_path):
    suite = {"name": "from a dict", "axes": {"tokens": [16, 64], "dim": [32], "heads": [4], "device": "cpu"},
             "measure": MEASURE, "attention": [{"name": "dense"}, {"name": "linear"}]}
    out = tmp_path / "run"
    first = rpbench.sweep(suite, out)
    assert len(first) == 4 and first.attrs["run_dir"] == str(out)
    results = out / "results.csv"
    lines = results.read_text().splitlines(True)
    results.write_text("".join(lines[:-1]))  # as if killed before the last row
    again = rpbench.sweep(suite, out, resume=True)
    assert sorted(again["case_id"]) == sorted(first["case_id"])
    assert invoke("report", str(out)).exit_code == 0  # a run like any other


def test_sweep_of_a_shipped_suite_with_a_filter(tmp_path):
    frame = rpbench.sweep("quick", tmp_path / "q", device="cpu", filter="dense,tokens=196")
    assert len(frame) >= 1 and set(frame["attention"]) == {"dense"} and (frame["tokens"] == 196).all()


@pytest.mark.parametrize("call,error,words", [
    (lambda: rpbench.bench("dense", dim=32), UsageError, "exactly one of tokens"),
    (lambda: rpbench.bench([], tokens=64), UsageError, "name at least one mechanism"),
    (lambda: rpbench.bench("dense", tokens=64, device="tpu"), UsageError, "device='tpu' is not one of"),
    (lambda: rpbench.bench("dense", tokens=64, dtype="float8"), SuiteError, "float8"),
    (lambda: rpbench.bench("nope", tokens=64), SuiteError, "unknown mechanism 'nope'"),
    (lambda: rpbench.sweep({"name": "x", "axes": {"tokens": [64]}, "attention": [{"name": "dense"}],
                            "extra": 1}), SuiteError, "unknown key"),
    (lambda: rpbench.sweep({"axes": {"tokens": [object()]}}), UsageError, "a suite value must be"),
    (lambda: rpbench.sweep("quick", resume=True), UsageError, "resume=True needs out="),
    (lambda: rpbench.sweep("quick", launcher="pbs"), UsageError, "launcher='pbs' is not one of none, slurm, local"),
    (lambda: rpbench.sweep("quick", launch={"tasks": 2}), UsageError, "launch=...: only with launcher="),
    (lambda: rpbench.sweep("quick", launcher="local", workers=2), UsageError, "leave out workers=, gpus= and"),
    (lambda: rpbench.sweep("quick", launcher="local", launch={"nosuch": 1}), UsageError,
     "launch['nosuch']: unknown key"),
    (lambda: rpbench.sweep("quick", launcher="local", launch={"time_min": 0}), UsageError,
     "launch['time_min']: 0: must be from 1"),
])
def test_bad_input_raises_one_line(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_cuda_without_a_gpu_is_refused_before_anything_runs(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(UsageError, match="torch sees no CUDA GPU"):
        rpbench.bench("dense", tokens=64, device="cuda", out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_to_toml_writes_what_tomllib_reads_back():
    suite = {"name": "odd \"name\" \\ with ünïcode", "axes": {"tokens": [64, "8x16"], "dim": [32], "flag": True,
                                                              "ratio": 0.5, "nested": {"a": 1}},
             "measure": {"warmup_ms": 1.0, "rounds": 2, "inf": float("inf")},
             "attention": [{"name": "dense", "backend": "math"}, {"name": "window", "window": 4}]}
    assert tomllib.loads(to_toml(suite)) == suite


def test_the_api_is_typed_and_documented():
    import inspect

    for function in (rpbench.bench, rpbench.sweep):
        assert function.__doc__ and "DataFrame" in inspect.getsource(function)
        hints = inspect.signature(function)
        assert all(p.annotation is not inspect.Parameter.empty for p in hints.parameters.values())
        assert hints.return_annotation in ("pd.DataFrame", pd.DataFrame) if function is rpbench.bench else \
            hints.return_annotation == "pd.DataFrame | LaunchedRun"  # launcher=: the run dir's handle


def test_sweep_with_a_launcher_returns_the_run_dir_as_a_handle(tmp_path, monkeypatch):
    from launch_helpers import fake_slurm

    kept = fake_slurm(tmp_path, monkeypatch)
    suite = {"name": "launched", "axes": {"tokens": [16, 64], "dim": [32], "heads": [4], "device": "cpu"},
             "measure": MEASURE, "attention": [{"name": "dense"}]}
    run = rpbench.sweep(suite, tmp_path / "run", launcher="slurm", launch={"partition": "debug", "tasks": 2})
    assert isinstance(run, rpbench.api.LaunchedRun) and run.run_dir == tmp_path / "run"
    assert run.submitted.job_id == "4242" and run.submitted.tasks == [0, 1]
    assert run.submitted.asked == "no GPU: the cases run on the CPU"
    script = next(kept.iterdir()).read_text()
    assert "--partition=debug" in script and "gpus" not in script
    status = run.status()
    assert list(status["state"]) == ["waiting", "waiting"] and list(status["cases"]) == [1, 1]
    assert run.collect().empty and run.collect().attrs["run_dir"] == str(tmp_path / "run")
    again = run.resume({"time_min": 90})  # nothing started (and no queue to ask): both again, with a new limit
    assert again.submitted.tasks == [0, 1] and "--time=90" in sorted(kept.iterdir())[-1].read_text()
    assert rpbench.sweep(out=tmp_path / "run", resume=True).submitted.tasks == [0, 1]  # resume= does the same
