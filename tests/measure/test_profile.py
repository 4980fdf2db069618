"""`rpbench profile` and `sweep --profile` on CPU: trace files, phase tables, the TensorBoard plugin, bad input."""
from __future__ import annotations

import gzip
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch

import rpbench
from rpbench.measure import profile as profiling
from rpbench.core.case import CaseFlags
from rpbench.core.diagnostics import Schedule
from rpbench.suites import case_from_flags
from rpbench.measure.workload import make_workload

from cli_helpers import invoke, tiny_suite

pytestmark = pytest.mark.slow  # the fast lane leaves these out: torch.profiler traces of real sweeps

SMALL = ("--grid", "8x8", "--dim", "32", "--heads", "4", "--m", "4", "--device", "cpu")
QUICK_SCHEDULE = ("--wait", "0", "--warmup", "1", "--active", "2")
LABELS = {
    "rpattention": ["qkv", "rp.route", "rp.gather", "rp.interact", "rp.distribute", "rp.dwc", "proj"],
    "agent": ["qkv", "agent.pool", "agent.aggregate", "agent.broadcast", "agent.dwc", "proj"],
}


def small_workload(attention: str, mode: str = "fwd"):
    case = case_from_flags(CaseFlags(attention=attention, grid="8x8", dim=32, heads=4, m=4, device="cpu", mode=mode))
    return make_workload(case)


def read_gzip_trace(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("attention", sorted(LABELS))
def test_profile_command_writes_both_traces_and_lists_every_label(tmp_path, attention):
    out = tmp_path / "prof"
    result = invoke("profile", "--attention", attention, *SMALL, *QUICK_SCHEDULE, "--out", str(out))
    assert result.exit_code == 0, result.output
    tb_traces = list((out / "tb").glob("*.pt.trace.json"))
    assert len(tb_traces) == 1
    assert json.loads(tb_traces[0].read_text())["traceEvents"]
    events = read_gzip_trace(out / "trace.json.gz")["traceEvents"]
    assert set(LABELS[attention]) <= {event.get("name") for event in events}
    for label in LABELS[attention]:
        assert label in result.output
    assert "https://ui.perfetto.dev" in result.output and f"tensorboard --logdir {out / 'tb'}" in result.output
    assert "peak CPU memory" in result.output


@pytest.mark.parametrize("attention,mode", [("rpattention", "fwd"), ("agent", "fwdbwd")])
def test_phase_times_cover_every_label_and_stay_within_the_call(tmp_path, attention, mode):
    plan = Schedule(wait=0, warmup=1, active=2)
    summary = profiling.profile_workload(small_workload(attention, mode), "cpu", tmp_path / "t.json.gz", plan=plan)
    assert [phase.label for phase in summary.phases] == LABELS[attention]
    assert all(phase.calls == 1 for phase in summary.phases)
    assert all(0 <= phase.self_cpu_ms <= phase.cpu_ms for phase in summary.phases)
    assert 0 < summary.labelled_cpu_ms <= summary.call_cpu_ms
    assert summary.call_device_ms is None and summary.tensorboard_dir is None
    assert summary.top_ops and all(op.name.startswith("aten::") for op in summary.top_ops)
    assert summary.peak_memory_mb is not None and summary.peak_memory_mb > 0
    assert read_gzip_trace(tmp_path / "t.json.gz")["traceEvents"]
    assert list(tmp_path.iterdir()) == [tmp_path / "t.json.gz"]  # the plain temp trace is gone


def test_sweep_profile_links_one_trace_per_ok_case(tmp_path):
    suite = tiny_suite(tmp_path, names=("rpattention", "agent", "dense"), tokens="64")
    out = tmp_path / "run"
    result = invoke("sweep", str(suite), "--out", str(out), "--no-report", "--profile")
    assert result.exit_code == 0, result.output
    frame = rpbench.load(out)
    assert len(frame) == 3 and (frame["status"] == "ok").all(), frame[["label", "status", "notes"]]
    for case_id, trace in zip(frame["case_id"], frame["trace"]):
        assert trace == f"traces/{case_id}.json.gz"
        assert read_gzip_trace(out / trace)["traceEvents"]


def test_sweep_without_profile_writes_no_traces(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="64")
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report").exit_code == 0
    assert rpbench.load(out)["trace"].isna().all() and not (out / "traces").exists()


def test_a_failed_trace_is_a_note_on_an_ok_row(tmp_path, monkeypatch):
    def broken(_case, **_):
        raise RuntimeError("no memory left\nsecond line")

    monkeypatch.setattr(profiling, "make_workload", broken)  # only the trace's build fails, not the measurement's
    suite = tiny_suite(tmp_path, names=("rpattention",), tokens="64")
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report", "--profile").exit_code == 0
    row = rpbench.load(out).iloc[0]
    assert row["status"] == "ok" and pd.isna(row["trace"])
    assert row["notes"].endswith("trace not written: RuntimeError: no memory left")


@pytest.mark.parametrize("args,message", [
    (("--attention", "nope", *SMALL), "nope"),
    (("--attention", "rpattention", "--grid", "8xq", "--device", "cpu"), "8xq"),
    (("--attention", "rpattention", *SMALL, "--active", "0"), "--active"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = invoke("profile", *args, "--out", str(tmp_path / "never"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "never").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_plugin_lists_and_opens_the_run(tmp_path):
    missing = [name for name in ("tensorboard", "torch_tb_profiler") if importlib.util.find_spec(name) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{', '.join(missing)} not installed (pip install 'rpbench[tensorboard]')")
    assert not missing, f"CI must install the tensorboard extra; missing: {', '.join(missing)}"
    tb_dir = tmp_path / "tb"
    profiling.profile_workload(small_workload("rpattention"), "cpu", tmp_path / "trace.json.gz", tensorboard_dir=tb_dir,
                               plan=Schedule(wait=0, warmup=1, active=1), worker="rpattention")
    port = _free_port()
    base = f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler"
    log_path = tmp_path / "tensorboard.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(tb_dir), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        runs: list[str] = []
        deadline = time.monotonic() + 240  # tensorboard starts in seconds; on a busy machine it may take minutes
        while not runs and time.monotonic() < deadline:
            assert server.poll() is None, f"tensorboard exited early:\n{log_path.read_text(errors='replace')}"
            try:
                runs = _get_json(f"{base}/runs")["runs"]
            except OSError:
                pass
            if not runs:
                time.sleep(0.5)
        assert runs == [tb_dir.name], log_path.read_text(errors="replace")[-2000:]
        assert "Trace" in _get_json(f"{base}/views?run={runs[0]}")
        assert _get_json(f"{base}/workers?run={runs[0]}&view=Overview") == ["rpattention"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_sweep_profiles_only_after_every_pass_is_timed(tmp_path, monkeypatch):
    """A profiler session must not run before any timed pass (CUPTI left attached slows what follows): with two
    rounds, every trace comes after the last pass."""
    from rpbench.measure import rounds as rounds_module
    from rpbench.measure import sweep as sweep_module

    events = []
    real_round, real_trace = rounds_module.measure_again, sweep_module.trace_case

    def again(case, *args, **kwargs):
        events.append(("time", case.case_id))
        return real_round(case, *args, **kwargs)

    def trace(case, *args, **kwargs):
        events.append(("trace", case.case_id))
        return real_trace(case, *args, **kwargs)

    monkeypatch.setattr(rounds_module, "measure_again", again)
    monkeypatch.setattr(sweep_module, "trace_case", trace)
    suite = tiny_suite(tmp_path, names=("rpattention", "agent"), tokens="16, 64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report", "--profile").exit_code == 0
    kinds = [kind for kind, _ in events]
    first_trace = kinds.index("trace")
    # every timed pass (a disturbed one is taken again, so at least 4) comes before the first trace
    assert kinds.count("time") >= 4 and "time" not in kinds[first_trace:] and kinds.count("trace") == 4, kinds
    frame = rpbench.load(out)
    assert (frame["trace"] == "traces/" + frame["case_id"] + ".json.gz").all()


def test_the_trace_of_dense_forces_the_backend_its_row_measured(tmp_path, monkeypatch):
    """No second probe for the trace: it could pick another backend than the timed one."""
    from rpbench.measure import workload

    suite = tiny_suite(tmp_path, names=("dense",), tokens="64")
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report").exit_code == 0
    measured = rpbench.load(out).iloc[0]
    assert measured["sdpa_backend"] in ("flash", "math")

    def no_probe(*_args):
        raise AssertionError("the trace probed the SDPA backends again")

    built = []
    real_build = profiling.build_as_measured
    monkeypatch.setattr(workload, "choose_fastest_sdpa", no_probe)
    monkeypatch.setattr(profiling, "build_as_measured",
                        lambda case, backend=None: built.append(backend) or real_build(case, backend))
    from rpbench.measure.sweep import trace_measured
    from rpbench.results.store import RunWriter
    from rpbench.suites import load_suite

    traced = trace_measured(load_suite(suite).cases, RunWriter(out))
    row = rpbench.load(out).iloc[0]
    assert traced == 1 and built == [measured["sdpa_backend"]] and row["trace"].startswith("traces/")


def test_a_resume_traces_the_rows_a_killed_run_left_untraced(tmp_path):
    suite = tiny_suite(tmp_path, names=("rpattention", "agent"), tokens="16")
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report").exit_code == 0  # timed, never traced
    before = rpbench.load(out)
    assert before["trace"].isna().all()
    result = invoke("sweep", "--resume", str(out), "--no-report", "--profile")
    assert result.exit_code == 0, result.output
    after = rpbench.load(out)
    assert after["trace"].notna().all()
    kept = [c for c in before.columns if c != "trace"]
    pd.testing.assert_frame_equal(before[kept], after[kept])  # every measured value stays as written


def test_no_device_time_is_said_never_shown_as_zero(tmp_path):
    """On CUDA with CUPTI blocked the profiler sees no kernels: the summary says so and shows CPU times."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    def event(key, device=DeviceType.CPU, annotation=False, cpu=1000.0):
        return SimpleNamespace(key=key, device_type=device, is_user_annotation=annotation, count=1,
                               self_cpu_time_total=cpu, cpu_time_total=cpu, device_time_total=0.0,
                               self_device_time_total=0.0)

    averages = [event(profiling.CALL_LABEL, annotation=True, cpu=5000.0), event("qkv", annotation=True),
                event("aten::mm"), event("aten::softmax", cpu=400.0)]
    prof = SimpleNamespace(key_averages=lambda: averages,
                           profiler=SimpleNamespace(kineto_results=SimpleNamespace(events=lambda: [])))
    summary = profiling._summarize(prof, "cuda", 1, tmp_path / "t.json.gz", None)
    assert summary.call_device_ms is None and all(phase.device_ms is None for phase in summary.phases)
    assert profiling.NO_DEVICE_TIME in summary.notes and summary.ops_kind == "aten op"
    assert [op.name for op in summary.top_ops] == ["aten::mm", "aten::softmax"]


def test_cuda_profiling_asks_kineto_to_detach_cupti_for_its_own_session_only(monkeypatch):
    """TEARDOWN_CUPTI=1 inside a CUDA profiler session of rpbench and gone after it: a variable left set
    process-wide makes every later profiler session tear CUPTI down and re-initialise it (around graph captures)."""
    monkeypatch.delenv(profiling.TEARDOWN_ENV, raising=False)
    monkeypatch.setattr(profiling, "_cuda_version", lambda: (12, 8))
    synchronised = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: synchronised.append(1))
    assert profiling.cupti_notes("cuda")  # not set: a session now would leave CUPTI attached
    with profiling.cupti_released("cpu"):
        assert profiling.TEARDOWN_ENV not in os.environ  # CPU profiles never touch CUPTI
    with profiling.cupti_released("cuda"):
        assert os.environ[profiling.TEARDOWN_ENV] == "1" and profiling.cupti_notes("cuda") == ()
    assert profiling.TEARDOWN_ENV not in os.environ and synchronised == [1]  # scoped: restored after the session
    monkeypatch.setenv(profiling.TEARDOWN_ENV, "0")  # the user's (or torch.compile's) own choice is kept, and noted
    with profiling.cupti_released("cuda"):
        assert os.environ[profiling.TEARDOWN_ENV] == "0" and "stays attached" in profiling.cupti_notes("cuda")[0]
    assert os.environ[profiling.TEARDOWN_ENV] == "0"
