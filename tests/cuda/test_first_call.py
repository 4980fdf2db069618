"""What the first call on a GPU must find out first (issue 33): a deliberate capture failure names its op and
leaves the context usable, torch.compile and Triton work (a C compiler is there), a case, a CUDA profile and a graph
timing in one process, a compiled mode with its own CUDA graphs timed with events, and NVML around a 2 s matmul
load. Skipped without CUDA; `scripts/gpu-validate` runs them in its checks stage. Each prints what it read, so the
validation's log answers the questions the CPU could only read about."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace

import pytest
import torch

from rpbench.core.case import CaseFlags, Timing
from rpbench.core.diagnostics import Schedule
from rpbench.machine import interference, telemetry
from rpbench.measure.profile import NO_DEVICE_TIME, profile_workload
from rpbench.measure.runner import run_case
from rpbench.measure.timing import GraphCaptureFailed, time_graph
from rpbench.measure.workload import make_workload
from rpbench.suites import case_from_flags

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FAST = Timing(warmup_ms=10, repeat=10, rounds=1)


def case(name: str = "rpattention", tokens: int = 1024, **extra):
    m = {"m": 16} if name in ("rpattention", "agent") else {}
    return case_from_flags(CaseFlags(attention=name, tokens=tokens, dim=128, heads=4, dtype="bfloat16",
                                     device="cuda", **m, **extra))


def test_a_c_compiler_is_on_the_path_for_triton():
    found = {name: shutil.which(name) for name in ("cc", "gcc", "clang")}
    print("compilers:", found)
    assert any(found.values()), "Triton builds its launchers with a C compiler: none on PATH"


def test_compiled_flex_attention_runs_and_matches_sdpa():
    from torch.nn.attention.flex_attention import flex_attention

    q, k, v = (torch.randn(1, 2, 256, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out = torch.compile(flex_attention, dynamic=False)(q, k, v)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=2e-2, rtol=2e-2)


def test_a_deliberate_capture_failure_names_its_op_and_leaves_the_context_usable():
    x = torch.randn(64, device="cuda")
    stream = torch.cuda.current_stream()
    with pytest.raises(GraphCaptureFailed) as err:
        time_graph(lambda: (x * 2).sum().item(), lambda: None, "cuda", FAST)  # .item() syncs: not capturable
    print("capture failure:", err.value)
    assert "previous error during capture" not in str(err.value)
    assert torch.cuda.current_stream() == stream  # not left on the capture's side stream
    assert run_case(case("dense", knobs=["backend=flash"]), FAST).ok  # the context still works


def test_a_case_then_a_cuda_profile_then_graph_timing_in_one_process(tmp_path):
    measured = run_case(case(), FAST)
    assert measured.ok and measured.timer == "cuda_graph", measured.notes
    work = make_workload(case())
    summary = profile_workload(work, "cuda", tmp_path / "t.json.gz", plan=Schedule(wait=0, warmup=1, active=1))
    assert NO_DEVICE_TIME not in summary.notes and summary.top_ops, summary.notes
    print("kernels:", [op.name for op in summary.top_ops[:5]])
    assert len(time_graph(work.step, work.reset, "cuda", FAST)) == 10
    assert os.environ.get("TEARDOWN_CUPTI") in (None, "0")


def test_a_compiled_mode_with_its_own_cuda_graphs_is_timed_with_events():
    measured = run_case(replace(case("dense", knobs=["backend=flash"]), compile="reduce-overhead"), FAST)
    assert measured.ok, measured.notes
    assert measured.timer == "cuda_event" and any("replays its own CUDA graphs" in n for n in measured.notes)


@pytest.mark.alone
def test_nvml_around_a_2_second_matmul_load():
    if not telemetry.nvml_available():
        pytest.skip(f"NVML unusable here: {telemetry.nvml_unavailable_reason()}")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    meter = telemetry.EnergyMeter(torch.cuda.current_device())
    violations = telemetry.violation_ns(0)
    meter.start()
    began = time.perf_counter()
    while time.perf_counter() - began < 2.0:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
    busy = telemetry.snapshot(0)
    joules = meter.stop()
    after = telemetry.violation_ns(0)
    listed = telemetry.gpu_processes(telemetry.nvml_index_for_cuda_device(0))
    others = interference.other_gpu_processes(0)
    print("busy:", busy, "energy J:", joules, "violations before/after:", violations, after)
    print("processes:", listed, "ours:", os.getpid(), "others:", others)
    assert busy["sm_clock_mhz"] and busy["throttle_reasons"] is not None
    assert all(not reason.startswith("unknown") for reason in busy["throttle_reasons"]), busy
    assert set(after) <= set(telemetry.VIOLATION_POLICIES) and all(after[k] >= violations.get(k, 0) for k in after)
    assert joules is None or joules > 100  # an H100/H200 under load draws hundreds of W
    assert listed is not None and (os.getpid() in [p["pid"] for p in listed] or others.ours_hidden)
