"""`rpbench doctor` on CPU: every check's outcomes, the JSON shape, exit codes; GPU-state logic with fakes."""
from __future__ import annotations

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from rpbench.machine import ceilings, cpu_checks, doctor, environment, gpu_checks, interference, telemetry
from rpbench.cli import app
from rpbench.core.diagnostics import Check

STATUSES = {"pass", "warn", "fail"}
FAKE_CEILINGS = {"device": "cpu", "matmul_tflops": {"float32": 0.02, "bfloat16": None}, "copy_gbps": 5.0}


@pytest.fixture(autouse=True)
def fresh_telemetry():
    telemetry.reset()
    yield
    telemetry.reset()


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One real `rpbench doctor --json --device cpu --save` run shared by the tests that read its output."""
    saved = tmp_path_factory.mktemp("doctor") / "sub" / "doctor.json"
    result = CliRunner().invoke(app, ["doctor", "--json", "--device", "cpu", "--save", str(saved)])
    return result, saved


def test_cpu_doctor_json_shape_and_exit_code(cpu_run):
    result, saved = cpu_run
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads(saved.read_text()) == report
    assert report["device"] == "cpu" and report["ok"] is True
    names = [check["name"] for check in report["checks"]]
    assert names == ["cpu load", "cpu governor", "torch build", "device", "cpu threads", "tf32", "sdpa backends",
                     "timer", "timer cross-check", "drift", "ceilings"]
    for check in report["checks"]:
        assert set(check) == {"name", "status", "detail", "advice", "values"}
        assert check["status"] in STATUSES - {"fail"} and check["detail"]
    measured = report["ceilings"]
    assert set(measured["matmul_tflops"]) == {"float32", "bfloat16"}
    assert all(rate > 0 for rate in measured["matmul_tflops"].values())
    assert measured["copy_gbps"] > 0 and measured["threads"] == torch.get_num_threads()
    sdpa = next(check for check in report["checks"] if check["name"] == "sdpa backends")
    assert all("math" in names for names in sdpa["values"]["backends"].values())
    key = measured["device_key"]  # the exact device: model, cores and the threads torch uses
    assert key == f"{environment.cpu_model()} | {os.cpu_count()} cores | {torch.get_num_threads()} threads"
    assert set(measured["load"]) == {"others_busy_cores", "cores", "gpu_others", "disturbed"}
    cached = ceilings.cached(key)  # kept for the sweeps that follow
    assert cached is not None and cached["matmul_tflops"] == measured["matmul_tflops"] and cached["measured_at"]
    assert ceilings.cached(key.replace("threads", "threads!")) is None  # another thread count: another ceiling


def _ceiling(rate, copy, disturbed=()):
    return {"device_key": "cpu X | 2 cores | 2 threads", "matmul_tflops": {"float32": rate}, "copy_gbps": copy,
            "load": {"others_busy_cores": 1.9 if disturbed else 0.0, "cores": 2, "gpu_others": None,
                     "disturbed": list(disturbed)}}


def test_a_ceiling_measured_under_load_never_replaces_a_higher_one(tmp_path, monkeypatch):
    monkeypatch.setenv("RPBENCH_CACHE", str(tmp_path))
    key = "cpu X | 2 cores | 2 threads"
    ceilings.save(_ceiling(0.10, 20.0))
    ceilings.save(_ceiling(0.03, 25.0, disturbed=["other processes kept 1.90 of 2 cores busy"]))
    kept = ceilings.cached(key)
    assert kept["matmul_tflops"] == {"float32": 0.10} and kept["copy_gbps"] == 25.0  # the higher of each
    assert kept["kept"]["figures"] == ["matmul float32"] and kept["load"]["disturbed"]
    ceilings.save(_ceiling(0.08, 18.0))  # measured on a quiet machine: the machine changed, believe it
    assert ceilings.cached(key)["matmul_tflops"] == {"float32": 0.08} and "kept" not in ceilings.cached(key)


def test_a_failing_check_makes_exit_1_and_the_checklist_says_so(monkeypatch):
    monkeypatch.setattr(doctor, "check_tf32", lambda device: Check("tf32", "fail", "forced", "fix it"))
    monkeypatch.setattr(ceilings, "measure", lambda device: FAKE_CEILINGS)
    result = CliRunner().invoke(app, ["doctor", "--device", "cpu"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "forced" in result.output and "not fit to benchmark" in result.output
    assert "Traceback" not in result.output


def test_cuda_requested_without_a_gpu_fails_early():
    report = doctor.run("cuda")
    assert report.failed and report.device is None and report.ceilings == {}
    assert report.checks[-1].name == "device" and "torch sees no GPU" in report.checks[-1].detail
    result = CliRunner().invoke(app, ["doctor", "--device", "cuda", "--json"])
    assert result.exit_code == 1 and json.loads(result.stdout)["ok"] is False


def test_bad_device_is_one_error_line():
    result = CliRunner().invoke(app, ["doctor", "--device", "tpu"])
    assert result.exit_code == 2
    assert "--device" in result.output and "Traceback" not in result.output


def test_unwritable_save_path_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setattr(ceilings, "measure", lambda device: FAKE_CEILINGS)
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = CliRunner().invoke(app, ["doctor", "--device", "cpu", "--save", str(blocker / "doctor.json")])
    assert result.exit_code == 2 and "lies under a file" in result.output and "Traceback" not in result.output


def test_device_resolution():
    check, device = doctor.check_device("auto")
    assert device == "cpu" and check.status == "pass" and "no CUDA GPU visible" in check.detail
    check, device = doctor.check_device("cpu")
    assert device == "cpu" and check.values["device_name"] == environment.cpu_model()
    with pytest.raises(ValueError):
        doctor.check_device("tpu")


@pytest.mark.parametrize("governor, status", [(None, "pass"), ("performance", "pass"), ("powersave", "warn")])
def test_cpu_governor(monkeypatch, governor, status):
    monkeypatch.setattr(environment, "cpu_governor", lambda: governor)
    check = cpu_checks.check_cpu_governor()
    assert check.status == status and check.values == {"governor": governor}


@pytest.mark.parametrize("busy, status", [(0.1, "pass"), (0.6, "warn"), (0.99, "warn"), (1.0, "fail"),
                                          (2.0, "fail")])
def test_cpu_load_fails_at_half_the_cores(monkeypatch, busy, status):
    monkeypatch.setattr(interference, "logical_cores", lambda: 2)
    monkeypatch.setattr(interference, "others_busy_cores", lambda interval: busy)
    monkeypatch.setattr(interference, "busiest_others", lambda *a, **k: [interference.BusyProcess(42, "burn", busy)])
    check = cpu_checks.check_cpu_load()
    assert check.status == status
    if status == "fail":  # the sentence a sweep warns with, word for word
        assert check.advice == interference.busy_machine_sentence(busy, 2)
        assert f"other processes keep {busy:.2f} of 2 cores busy" in check.advice and "burn (pid 42)" in check.detail


def test_doctor_exits_1_on_a_busy_machine(monkeypatch):

    monkeypatch.setattr(interference, "others_busy_cores", lambda interval: float(interference.logical_cores()))
    monkeypatch.setattr(interference, "busiest_others", lambda *a, **k: [])
    monkeypatch.setattr(doctor, "check_ceilings", lambda device: Check("ceilings", "pass", "skipped"))
    result = CliRunner().invoke(app, ["doctor", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "cores busy" in result.output


def test_cpu_load_unreadable_warns(monkeypatch):
    monkeypatch.setattr(interference, "others_busy_cores", lambda interval: None)
    assert cpu_checks.check_cpu_load().status == "warn"


@pytest.mark.real_load
def test_other_processes_are_measured_from_proc_stat():
    busy = interference.others_busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= interference.logical_cores()


@pytest.mark.parametrize("threads, cores, status", [(2, 1, "warn"), (2, 64, "pass"), (1, 1, "pass")])
def test_thread_count_vs_cores(monkeypatch, threads, cores, status):
    """Whatever this machine's cores and torch's default: the thread count is set here."""
    monkeypatch.setattr(environment, "usable_cores", lambda: cores)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        check = cpu_checks.check_threads()
    finally:
        torch.set_num_threads(before)
    assert check.status == status and check.values["torch_threads"] == threads


@pytest.mark.parametrize("resolution, status", [(5e-8, "pass"), (1e-4, "warn"), (5e-3, "fail")])
def test_cpu_timer_resolution(monkeypatch, resolution, status):
    monkeypatch.setattr(cpu_checks, "_perf_counter_resolution", lambda: resolution)
    check = doctor.check_timer("cpu")
    assert check.status == status and check.values["perf_counter_resolution_s"] == resolution


def test_perf_counter_resolution_is_measured():
    assert 0 < cpu_checks._perf_counter_resolution(samples=200) < 1e-3


@pytest.mark.parametrize("found, status", [(["flash", "math"], "pass"), (["math"], "warn"), ([], "fail")])
def test_sdpa_check_outcomes(monkeypatch, found, status):
    monkeypatch.setattr(doctor, "sdpa_backends_that_run", lambda device, dtype: found)
    check = doctor.check_sdpa("cpu")
    assert check.status == status and set(check.values["backends"]) == {"float32", "bfloat16"}


def test_sdpa_probe_really_runs_on_cpu():
    assert "math" in doctor.sdpa_backends_that_run("cpu", torch.float32)


def test_gpu_state_without_nvml_is_a_warning_not_a_crash(monkeypatch):
    monkeypatch.setattr(telemetry, "nvml_available", lambda: False)
    monkeypatch.setattr(telemetry, "nvml_unavailable_reason", lambda: "NVML Shared Library Not Found")
    (check,) = gpu_checks.check_gpu_state(0)
    assert check.status == "warn" and "NVML Shared Library Not Found" in check.detail


def _fake_gpu(monkeypatch, *, processes, persistence, reasons, temp, mig=False):
    """Telemetry answers for one GPU; the under-load snapshot is faked too (there is no GPU to load here)."""
    monkeypatch.setattr(telemetry, "nvml_available", lambda: True)
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda i: 0)
    monkeypatch.setattr(telemetry, "gpu_processes", lambda i: processes)
    monkeypatch.setattr(telemetry, "gpu_inventory", lambda: [
        {"persistence_mode": persistence, "mig_enabled": mig, "sm_clock_max_mhz": 1980}])
    monkeypatch.setattr(gpu_checks, "_snapshot_under_load", lambda i, seconds: {
        "sm_clock_mhz": 1410, "temp_c": temp, "power_w": 690.0, "throttle_reasons": reasons, "throttled": True})


def test_gpu_state_healthy(monkeypatch):
    _fake_gpu(monkeypatch, processes=[{"pid": os.getpid(), "used_mib": 500.0}], persistence=True,
              reasons=["sw_power_cap"], temp=70)
    checks = {check.name: check for check in gpu_checks.check_gpu_state(0)}
    assert {name: check.status for name, check in checks.items()} == {
        "gpu processes": "pass", "persistence mode": "pass", "gpu clocks": "pass", "gpu temperature": "pass"}
    assert "71% of max 1980" in checks["gpu clocks"].detail


def test_gpu_state_warnings(monkeypatch):
    _fake_gpu(monkeypatch, processes=[{"pid": 1, "used_mib": 100.0}], persistence=False,
              reasons=["sw_power_cap", "hw_thermal_slowdown"], temp=91, mig=True)
    checks = {check.name: check for check in gpu_checks.check_gpu_state(0)}
    assert checks.pop("gpu processes").status == "fail"  # another process on the GPU fails the doctor
    assert all(check.status == "warn" for check in checks.values())
    checks = {check.name: check for check in gpu_checks.check_gpu_state(0)}
    assert set(checks) == {"gpu processes", "persistence mode", "mig", "gpu clocks", "gpu temperature"}
    assert checks["gpu processes"].values == {"other_pids": [1], "others": 1}
    assert "hw_thermal_slowdown" in checks["gpu clocks"].advice


def test_gpu_state_with_nothing_readable(monkeypatch):
    _fake_gpu(monkeypatch, processes=None, persistence=None, reasons=None, temp=None)
    statuses = {check.name: check.status for check in gpu_checks.check_gpu_state(0)}
    assert statuses == {"gpu processes": "warn", "persistence mode": "pass", "gpu clocks": "pass",
                        "gpu temperature": "warn"}
