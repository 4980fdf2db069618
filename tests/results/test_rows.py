"""A Measurement becomes a results row only in the store: schema columns in schema order, nothing invented."""
from __future__ import annotations

import json

import pytest

import rpbench
from rpbench.core.case import Case, Layout
from rpbench.core.measurement import (ClockWindow, GpuReading, GpuTelemetry, Load, Measurement, MemoryPeak, ModelCosts,
                                      Round)
from rpbench.core.schema import COLUMNS
from rpbench.results.rows import pass_from_line, pass_line, round_rows, row_of
from rpbench.results.store import RunWriter, load_samples

LAYER = Case(scope="layer", attention="rpattention", label="rp", knobs=(("m", 4), ("tau", 1.0)), batch=2, height=8,
             width=8, dim=32, heads=4, dtype="bfloat16", mode="fwd", device="cuda", m=4)
BACKBONE = Case(scope="backbone", attention="agent", label="agent", knobs=(("m", (9, 16)),), batch=1, height=56,
                width=56, dim=96, heads=3, dtype="bfloat16", mode="fwd", device="cpu", m=9, resolution=224, patch=4,
                backbone="swin-t", layout=Layout("agent", "AB", (("m", (9, 16)),), stages=2))


def test_a_cuda_measurement_fills_the_telemetry_columns():
    measured = Measurement(
        case=LAYER, suite="s", status="ok", notes=("auto backend", "", "energy ok"), samples=(1.0, 2.0, 3.0),
        timer="cuda_event", device_name="NVIDIA H100 80GB HBM3", threads=16, started_at="t", elapsed_s=1.5,
        params=100, flops_analytic=10, flops_counted=12, sdpa_backend="flash", memory=MemoryPeak(5.0, 64.0),
        gpu=GpuTelemetry(GpuReading(1980.0, 40.0, 100.0), GpuReading(1755.0, 60.0, 650.0), 0.5, 1.2),
        rounds=(Round((1.0, 2.0, 3.0), gpu=ClockWindow(12, 1.1, 1710.0, 1755.0, 71.0, 640.0, ("sw_power_cap",),
                                                        (("power", 300.0), ("thermal", 0.0)))),),
    )
    row = row_of(measured)
    assert list(row) == [column for column in COLUMNS if column in row]  # schema order
    assert row["notes"] == "auto backend; energy ok" and row["knobs"] == json.dumps({"m": 4, "tau": 1.0})
    assert (row["sm_clock_start_mhz"], row["sm_clock_end_mhz"], row["temp_end_c"], row["power_end_w"]) == (
        1980.0, 1755.0, 60.0, 650.0)
    # only what was read during the timed windows decides `throttled`
    assert row["throttled"] is False and row["power_capped"] is True and row["clock_reasons"] == "sw_power_cap"
    assert (row["sm_clock_min_mhz"], row["sm_clock_median_mhz"], row["temp_max_c"], row["power_median_w"]) == (
        1710.0, 1755.0, 71.0, 640.0)
    assert row["energy_j_per_img"] == 0.25 and row["energy_window_s"] == 1.2
    assert (row["latency_ms_median"], row["n_samples"], row["peak_mem_mb"], row["peak_reserved_mb"]) == (2.0, 3, 5.0, 64.0)
    assert row["tflops_s"] == pytest.approx(10 / 2e-3 / 1e12) and "trace" not in row and "gmacs" not in row  # the formula (10) before the count (12)


HOT = ClockWindow(10, 1.0, 1200.0, 1400.0, 88.0, 500.0, ("hw_thermal_slowdown",), (("thermal", 250.0),))
COOL = ClockWindow(10, 1.0, 1980.0, 1980.0, 50.0, 400.0)
IDLE_CPU = Load(others_busy_cores=0.0, cores=16, own_threads=1, window_s=1.0)


def test_a_slowed_pass_is_disturbed_left_out_and_said_why():
    slowed = Round((4.0,), load=IDLE_CPU, gpu=HOT)
    assert slowed.disturbed and slowed.reasons() == (
        "GPU clocks pulled down: hw_thermal_slowdown, thermal violation 250 ms",)
    measured = Measurement(case=LAYER, suite="s", status="ok", samples=(1.0,),
                           rounds=(slowed, Round((1.0,), load=IDLE_CPU, gpu=COOL, retry=True)))
    row = row_of(measured)
    assert measured.pooled == (measured.rounds[1],)  # the slowed pass is not pooled: the row is clean
    assert row["throttled"] is False and row["disturbed"] is False and row["sm_clock_min_mhz"] == 1980.0
    lines = round_rows(measured)
    assert lines[0]["why"].startswith("GPU clocks pulled down") and lines[0]["clock_reasons"] == "hw_thermal_slowdown"
    assert lines[1]["why"] is None and lines[1]["pooled"]


def test_a_case_slowed_in_every_pass_is_throttled_not_disturbed():
    measured = Measurement(case=LAYER, suite="s", status="ok", samples=(4.0, 4.0),
                           rounds=(Round((4.0,), load=IDLE_CPU, gpu=HOT), Round((4.0,), load=IDLE_CPU, gpu=HOT)))
    row = row_of(measured)
    assert row["throttled"] is True and row["disturbed"] is False and row["power_capped"] is False
    assert measured.disturbance == ("GPU clocks pulled down: hw_thermal_slowdown, thermal violation 250 ms",)


def test_a_journalled_pass_keeps_its_gpu_window():
    taken = Round((1.5, 1.25), load=IDLE_CPU, gpu=HOT, started_at="t", timer="cuda_graph")
    assert pass_from_line(pass_line("c1", 2, taken)) == ("c1", 2, taken)
    damaged = pass_line("c1", 2, taken).replace('"readings":10', '"readings":"ten"')
    assert pass_from_line(damaged) is None


def test_a_backbone_failure_keeps_its_case_and_model_columns_only(tmp_path):
    failed = Measurement(case=BACKBONE, suite="s", status="error", notes=("RuntimeError: boom",), params=7,
                         model=ModelCosts(macs=2_000_000_000, attention_share=0.4))
    row = row_of(failed)
    assert row["layout"] == "agent:AB m=9,16" and row["tokens"] == 56 * 56 and row["resolution"] == 224
    assert (row["gmacs"], row["gflops"], row["attention_share"]) == (2.0, 4.0, 0.4)
    assert not any(column.startswith(("latency", "sm_clock", "energy")) for column in row)
    writer = RunWriter(tmp_path / "run")
    writer.append(failed)
    loaded = rpbench.load(tmp_path / "run")
    assert loaded.loc[0, "status"] == "error" and loaded.loc[0, "case_id"] == BACKBONE.case_id
    assert load_samples(tmp_path / "run").empty


def test_append_writes_every_sample_then_the_row(tmp_path):
    writer = RunWriter(tmp_path / "run")
    writer.append(Measurement(case=LAYER, suite="s", status="ok", samples=(1.0, 2.0, 4.0)))
    samples = load_samples(tmp_path / "run")
    assert samples["latency_ms"].tolist() == [1.0, 2.0, 4.0] and set(samples["case_id"]) == {LAYER.case_id}
    assert writer.finished_case_ids() == {LAYER.case_id}
