"""Timer selection: which timer takes a case's samples, the fallback of `auto`, and the launch-bound mark. The
CUDA paths are exercised with stand-ins here (the real capture runs in tests/cuda/ on a GPU)."""
from __future__ import annotations

import pytest

from rpbench.analysis import flag_summary, prepare
from rpbench.measure import timing as timing_module
from rpbench.measure.runner import same_timer
from rpbench.core.case import Timing
from rpbench.core.measurement import Measurement
from rpbench.core.schema import COLUMNS

from cli_helpers import invoke, tiny_suite
from fake_runs import make_row


@pytest.fixture
def fake_cuda(monkeypatch):
    """time_step and time_graph as stand-ins that say which ran; time_graph fails when told to."""
    calls = []

    def eager(step, reset, device, timing):
        calls.append("eager")
        return [2.0, 2.0]

    def graph(step, reset, device, timing):
        calls.append("graph")
        if fake.fail:
            raise timing_module.GraphCaptureFailed("operation not permitted when stream is capturing")
        return [1.0, 1.0]

    class fake:  # noqa: N801 (a namespace)
        fail = False

    monkeypatch.setattr(timing_module, "time_step", eager)
    monkeypatch.setattr(timing_module, "time_graph", graph)
    fake.calls = calls
    return fake


@pytest.mark.parametrize("setting, fail, expected", [
    ("auto", False, ([1.0, 1.0], "cuda_graph", None)),
    ("cudagraph", False, ([1.0, 1.0], "cuda_graph", None)),
    ("eager", False, ([2.0, 2.0], "cuda_event", None)),
    ("auto", True, ([2.0, 2.0], "cuda_event",
                    "CUDA graph capture failed (operation not permitted when stream is capturing); timed eagerly")),
])
def test_which_timer_takes_the_samples(fake_cuda, setting, fail, expected):
    fake_cuda.fail = fail
    found = timing_module.timed_samples(lambda: None, lambda: None, "cuda", Timing(timer=setting))
    assert found == expected


def test_an_explicit_cudagraph_timer_that_cannot_capture_fails_the_case(fake_cuda):
    fake_cuda.fail = True
    with pytest.raises(timing_module.GraphCaptureFailed, match="CUDA graph capture failed: operation not"):
        timing_module.timed_samples(lambda: None, lambda: None, "cuda", Timing(timer="cudagraph"))
    assert fake_cuda.calls == ["graph"]  # never silently eager


def test_the_cpu_always_times_with_perf_counter():
    samples, timer, note = timing_module.timed_samples(lambda: None, lambda: None, "cpu",
                                                       Timing(timer="cudagraph", warmup_ms=0, repeat=3))
    assert len(samples) == 3 and timer == "perf_counter" and "CUDA-only" in note
    assert timing_module.timed_samples(lambda: None, lambda: None, "cpu", Timing(warmup_ms=0, repeat=3))[2] is None


def test_later_passes_keep_the_timer_the_first_one_ended_with():
    from rpbench.core.case import Case

    case = Case("layer", "dense", "dense", (), 1, 4, 4, 8, 2, "float32", "fwd", "cuda")
    graphed = Measurement(case=case, suite="t", status="ok", timer="cuda_graph")
    fell_back = Measurement(case=case, suite="t", status="ok", timer="cuda_event")
    assert same_timer(Timing(), graphed).timer == "cudagraph" and same_timer(Timing(), fell_back).timer == "eager"
    cpu = Measurement(case=case, suite="t", status="ok", timer="perf_counter")
    assert same_timer(Timing(timer="auto"), cpu).timer == "auto"


def test_a_launch_bound_row_is_marked_not_dropped():
    case_rows = [make_row(tokens=196, launch_bound=True, host_ms=0.2, launch_ms=0.18),
                 make_row(tokens=784, launch_bound=False, host_ms=2.0, launch_ms=0.2)]
    import pandas as pd

    frame = prepare(pd.DataFrame(case_rows).reindex(columns=list(COLUMNS)))
    assert not frame["flagged"].any()
    assert "1 launch-bound (eager CUDA timing of launch overhead" in flag_summary(frame)


def test_a_bad_timer_setting_is_one_line(tmp_path):
    path = tiny_suite(tmp_path, names=("dense",), tokens="16")
    path.write_text(path.read_text().replace("rounds = 1", 'rounds = 1\ntimer = "fastest"'))
    result = invoke("sweep", str(path), "--out", str(tmp_path / "x"))
    assert result.exit_code == 2 and "measure.timer" in result.output and "auto, eager, cudagraph" in result.output


def test_sweep_and_run_take_a_timer_flag_and_a_resume_keeps_it(tmp_path):
    import json

    import rpbench

    path = tiny_suite(tmp_path, names=("dense",), tokens="16, 64")
    out = tmp_path / "run"
    assert invoke("sweep", str(path), "--out", str(out), "--no-report", "--timer", "eager",
                  "--filter", "tokens=16").exit_code == 0
    assert json.loads(rpbench.load(out)["timing"][0])["timer"] == "eager"
    resumed = invoke("sweep", "--resume", str(out), "--no-report")  # no --timer: the run's own
    assert resumed.exit_code == 0, resumed.output
    result = invoke("run", "--attention", "dense", "--tokens", "16", "--device", "cpu", "--timer", "cudagraph",
                    "--rounds", "1", "--repeat-ms", "5", "--json")
    assert result.exit_code == 0 and "the cudagraph timer is CUDA-only" in json.loads(result.stdout)["notes"]
