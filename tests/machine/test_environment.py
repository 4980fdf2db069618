"""`rpbench env` and environment.collect on this GPU-less machine, plus the GPU merge with fakes."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from rpbench.machine import environment, telemetry
from rpbench.views import machine as machine_views
from rpbench.cli import app

SWEEP_KEYS = {"rpbench", "python", "torch", "cuda", "cudnn", "platform", "command", "git_commit", "cpu", "threads",
              "tf32", "cuda_available", "gpus", "nvml"}


@pytest.fixture(autouse=True)
def fresh_telemetry():
    telemetry.reset()
    yield
    telemetry.reset()


def test_env_prints_the_cpu_part_and_exactly_one_line_about_the_missing_gpu():
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert environment.cpu_model().split()[0] in result.output
    assert "torch threads" in result.output and torch.__version__ in result.output
    gpu_lines = [line for line in result.output.splitlines() if "GPU" in line or "NVML" in line]
    build = "CPU build" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build; no driver or none visible"
    assert gpu_lines == [f"no CUDA GPU visible to torch ({build})"]  # a CUDA wheel (torch 2.11+cu130) says so


def test_env_json_is_the_collected_dict(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/rpbench", "env", "--json"])
    result = CliRunner().invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)
    assert SWEEP_KEYS <= env.keys()
    assert env["command"] == "rpbench env --json"
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["cpu"]["logical_cores"] >= 1 and env["cpu"]["model"]
    assert env["gpus"] == [] and env["cuda_available"] is False
    assert env["nvml"]["available"] is False and env["nvml"]["reason"]


def test_collect_outside_a_git_repo_has_no_commit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = environment.collect("x")
    assert env["git_commit"] is None and env["git_dirty"] is None
    assert env["command"] == "x"
    json.dumps(env)  # everything in it is JSON-serialisable


def test_git_problems_become_none(monkeypatch):
    def hang(*_args, **_kwargs):
        raise subprocess.TimeoutExpired("git", 5)

    monkeypatch.setattr(subprocess, "run", hang)
    assert environment._git("rev-parse", "HEAD") is None

    def missing(*_args, **_kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", missing)
    assert environment._git("rev-parse", "HEAD") is None


def test_gpus_merge_torch_properties_over_nvml(monkeypatch):
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, multi_processor_count=132,
                            L2_cache_size=50 * 2**20, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(telemetry, "gpu_inventory", lambda: [
        {"nvml_index": 0, "name": "other"}, {"nvml_index": 1, "name": "H100", "power_limit_w": 700.0}])
    monkeypatch.setattr(telemetry, "nvml_index_for_cuda_device", lambda i: 1)
    env = environment.collect("x")
    assert env["gpus"] == [{"nvml_index": 1, "name": "NVIDIA H100 80GB HBM3", "power_limit_w": 700.0,
                            "index": 0, "memory_total_mib": 80 * 1024, "sm_count": 132,
                            "l2_cache_bytes": 50 * 2**20, "capability": "9.0"}]
    console = Console(record=True, width=200)
    machine_views.render_environment(env | {"nvml": {"available": True, "reason": None, "device_count": 2}}, console)
    text = console.export_text()
    assert "cuda:0" in text and "132" in text and "no CUDA GPU" not in text and "NVML unavailable" not in text


def test_gpu_note_names_the_one_thing_missing():
    nvml_off = {"available": False, "reason": "Driver Not Loaded", "device_count": 0}
    nvml_on = {"available": True, "reason": None, "device_count": 2}
    assert machine_views.gpu_note({"gpus": [{}], "cuda": "12.4", "nvml": nvml_off}).startswith(
        "NVML unavailable: Driver Not Loaded")
    assert machine_views.gpu_note({"gpus": [{}], "cuda": "12.4", "nvml": nvml_on}) is None
    assert machine_views.gpu_note({"gpus": [], "cuda": None, "nvml": nvml_on}) == (
        "no CUDA GPU visible to torch (CPU build); NVML sees 2 GPU(s)")
    assert "CUDA 12.4 build" in machine_views.gpu_note({"gpus": [], "cuda": "12.4", "nvml": nvml_off})


def test_cpu_facts_are_readable_here():
    assert environment.cpu_model()
    assert 1 <= environment.usable_cores() <= (environment.os.cpu_count() or 1)
    governor = environment.cpu_governor()
    assert governor is None or governor.isidentifier()


@pytest.fixture
def new_precision_api():
    """torch.backends.cuda.matmul.fp32_precision = "tf32" (torch >= 2.9), undone afterwards; after it torch refuses
    get_float32_matmul_precision() and allow_tf32 reads ("mix of the legacy and new APIs")."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision API")
    previous = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    yield
    matmul.fp32_precision = previous


def test_tf32_settings_are_read_after_the_new_precision_api_was_used(new_precision_api):
    from rpbench.machine import doctor

    with pytest.raises(RuntimeError, match="legacy and new APIs"):  # what used to crash collect and the doctor
        torch.get_float32_matmul_precision()
    settings = environment.collect()["tf32"]
    assert settings["fp32_precision.cuda.matmul"] == "tf32"
    assert settings["matmul_allow_tf32"] is True and settings["float32_matmul_precision"] == "high"
    check = doctor.check_tf32("cuda")
    assert check.status == "pass" and "TF32 matmul True" in check.detail
