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

import rpbench
from rpbench.bench import profile as profiling
from rpbench.core.case import CaseFlags
from rpbench.core.diagnostics import Schedule
from rpbench.suites import case_from_flags
from rpbench.bench.workload import make_workload

from cli_helpers import invoke, tiny_suite

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
    def broken(_case):
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
        deadline = time.monotonic() + 60
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
