"""On a GPU: the CUDA paths of the runner, the probes, the profiler and the telemetry do what they claim.

Skipped without CUDA (marker `cuda`; run by `scripts/gpu-validate tests`). Sizes are small enough that the whole
module takes a few minutes on one H100.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time

import pytest
import torch

import attentions
from rpbench.measure import probes
from rpbench.measure.max_batch import search_max_batch
from rpbench.measure.profile import NO_DEVICE_TIME, TEARDOWN_ENV, profile_workload
from rpbench.measure.runner import run_case
from rpbench.measure.timing import l2_flush_buffer, time_step
from rpbench.measure.workload import make_workload
from rpbench.core.case import CaseFlags, Timing
from rpbench.core.diagnostics import Schedule
from rpbench.core.schema import ERROR_TOLERANCE
from rpbench.machine import telemetry
from rpbench.results.rows import row_of
from rpbench.suites import case_from_flags

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FAST = Timing(warmup_ms=20, repeat=20, rounds=1, cooldown_s=0.0)


def case(name: str = "rpattention", tokens: int = 1024, dtype: str = "float16", mode: str = "fwd", batch: int = 1,
         knobs: tuple[str, ...] = (), dim: int = 128, heads: int = 4):
    m = {"m": 16} if "m" in attentions.spec(name).knobs else {}
    return case_from_flags(CaseFlags(attention=name, tokens=tokens, dim=dim, heads=heads, dtype=dtype, mode=mode,
                                     device="cuda", batch=batch, knobs=list(knobs), **m))


@pytest.mark.alone
def test_cuda_events_agree_with_synchronised_wall_time():
    """A step of a few ms: the median event time and the median synchronised wall time agree within 5 %."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    step = lambda: a @ a  # noqa: E731
    events = statistics.median(time_step(step, lambda: None, "cuda", Timing(warmup_ms=100, repeat=20, flush_l2=False)))
    walls = []
    for _ in range(20):
        torch.cuda.synchronize()
        began = time.perf_counter()
        step()
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - began) * 1e3)
    assert events == pytest.approx(statistics.median(walls), rel=0.05)


def test_the_l2_flush_buffer_is_sized_from_the_device():
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    assert l2 > 0
    assert l2_flush_buffer("cuda").numel() * 4 == max(2 * l2, 64 * 2**20)


def test_naive_dense_memory_is_quadratic_and_flash_is_not():
    n, heads = 4096, 4
    scores_mb = heads * n * n * 2 / 2**20  # one fp16 score matrix
    naive = run_case(case("dense-naive", tokens=n, heads=heads), FAST)
    flash = run_case(case("dense", tokens=n, heads=heads, knobs=("backend=flash",)), FAST)
    assert naive.ok and flash.ok, (naive.note, flash.note)
    assert scores_mb <= naive.memory.allocated_mb <= 4 * scores_mb
    assert flash.memory.allocated_mb < 0.1 * scores_mb
    assert flash.sdpa_backend == "flash"


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("backend", ["flash", "efficient", "cudnn", "math"])
def test_every_forced_sdpa_backend_is_recorded_under_its_name(backend, mode):
    measured = run_case(case("dense", mode=mode, knobs=(f"backend={backend}",)), FAST)
    if measured.status == "error" and backend == "cudnn":
        pytest.skip(f"cuDNN attention does not run here: {measured.note}")
    assert measured.ok, measured.note
    assert measured.sdpa_backend == backend


def test_dense_auto_is_timed_with_the_fastest_backend_and_says_so():
    measured = run_case(case("dense", knobs=("backend=auto",)), FAST)
    assert measured.ok and measured.forced_backend in ("flash", "efficient", "cudnn", "math")
    assert measured.sdpa_backend == measured.forced_backend
    assert any(note.startswith("auto backend = fastest probed") for note in measured.notes)


@pytest.mark.parametrize("name", attentions.builtin())
def test_counted_flops_equal_the_analytic_ones_on_cuda(name):
    """Every mechanism is counted by FlopCounterMode except neighborhood on CUDA (auto: natten, else flex), whose
    row takes the formula and says so (counting flex raised and made every neighborhood row an error)."""
    measured = run_case(case(name, dtype="float32"), FAST)
    assert measured.ok, measured.note
    assert measured.flops_counted == measured.flops_analytic
    by_formula = any("flops_counted is the FLOP formula's" in note for note in measured.notes)
    assert by_formula == (name == "neighborhood"), measured.notes


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", attentions.builtin())
def test_low_precision_forward_of_every_mechanism_is_finite_and_accurate(name, dtype):
    measured = run_case(case(name, dtype=dtype), FAST)
    assert measured.status == "ok", (measured.status, measured.note)
    assert measured.rel_err is not None and measured.rel_err <= ERROR_TOLERANCE[dtype]


@pytest.mark.alone
def test_an_oom_leaves_the_next_case_unaffected():
    small = case("rpattention", tokens=4096)
    before = run_case(small, FAST)
    huge = run_case(case("dense-naive", tokens=65536, batch=8, heads=8, dtype="float32"), FAST)
    after = run_case(small, FAST)
    assert huge.status == "oom", (huge.status, huge.note)
    assert before.ok and after.ok
    assert after.stats.median == pytest.approx(before.stats.median, rel=0.15)
    assert after.memory.allocated_mb == pytest.approx(before.memory.allocated_mb, rel=0.01)


def test_nvml_columns_are_filled_from_the_timed_window():
    if not telemetry.nvml_available():
        pytest.skip(f"NVML unusable here: {telemetry.nvml_unavailable_reason()}")
    row = row_of(run_case(case("rpattention", tokens=16384), FAST))
    for column in ("sm_clock_min_mhz", "sm_clock_median_mhz", "temp_max_c", "power_median_w", "sm_clock_start_mhz"):
        assert row.get(column) is not None and row[column] > 0, column
    if row.get("energy_j_per_iter") is not None:
        assert row["energy_window_s"] >= 1.0 and row["energy_j_per_iter"] > 0


def test_peak_reserved_is_above_what_the_allocator_already_held():
    held = torch.empty(2**28, dtype=torch.uint8, device="cuda")  # 256 MiB stays reserved throughout
    x = torch.randn(1024, 1024, device="cuda")
    peak = probes.peak_memory(lambda: x @ x, lambda: None, "cuda")
    assert peak.reserved_mb is not None and peak.reserved_mb < 64
    del held


def test_the_profile_shows_cuda_kernels_with_time():
    work = make_workload(case("rpattention", tokens=4096))
    summary = profile_workload(work, "cuda", _tmp() / "t.json.gz", plan=Schedule(wait=0, warmup=1, active=2))
    assert NO_DEVICE_TIME not in summary.notes, summary.notes
    assert summary.ops_kind == "CUDA kernel" and summary.call_device_ms > 0
    assert summary.top_ops and all(op.self_ms >= 0 for op in summary.top_ops) and summary.top_ops[0].self_ms > 0
    assert any(phase.device_ms for phase in summary.phases)


@pytest.mark.alone
def test_timing_after_a_profile_matches_timing_before():
    """CUPTI left attached after a profiler session slows kernels by 10-20 % (pytorch/pytorch#144455)."""
    work = make_workload(case("rpattention", tokens=16384, batch=4))
    timing = Timing(warmup_ms=200, repeat=50)
    before = statistics.median(time_step(work.step, work.reset, "cuda", timing))
    profile_workload(work, "cuda", _tmp() / "p.json.gz", plan=Schedule(wait=0, warmup=1, active=2))
    after = statistics.median(time_step(work.step, work.reset, "cuda", timing))
    again = statistics.median(time_step(work.step, work.reset, "cuda", timing))
    assert after == pytest.approx(before, rel=0.05) and again == pytest.approx(before, rel=0.05), (before, after)
    assert os.environ.get(TEARDOWN_ENV) in (None, "0")  # scoped to the profiler session, never left set


@pytest.mark.slow  # doubles the batch up to the card's memory
def test_backbone_max_batch_finds_an_oom_boundary():
    flags = CaseFlags(backbone="deit-t", resolution=1024, dtype="float16", device="cuda",
                      attention="dense-naive")
    backbone = case_from_flags(flags)
    search = search_max_batch(backbone, lambda c: run_case(c, dataclasses.replace(FAST, repeat=3)), limit=4096)
    assert search.oom_at is not None, search.stopped
    assert search.max_batch is not None and search.max_batch * 2 == search.oom_at


def test_tf32_settings_are_read_without_tripping_the_new_precision_api():
    from rpbench.machine import ceilings

    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision API")
    previous = matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"
        measured = ceilings.measure("cuda")
    finally:
        matmul.fp32_precision = previous
    assert measured["tf32_matmul"] in (True, None)


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="rpbench-cuda-"))
