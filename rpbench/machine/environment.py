"""What produced a set of numbers: versions, CPU, GPUs and numeric settings, as one JSON-able dict.

The sweep writes `collect()` as env.json and `rpbench env --json` prints exactly it, so two runs can be compared
field by field (CUDA, driver and TF32 alone move attention timings). Nothing here changes any setting; the tables
that show the dict are in `rpbench.views.machine`.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from ..core import __version__
from . import interference, telemetry
from .code import code_versions

GOVERNOR_PATH = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
# Distributions whose versions move attention numbers; read from metadata so nothing heavy gets imported.
PACKAGES = ("numpy", "triton", "flash-attn", "xformers", "natten", "nvidia-ml-py")


def _git(*args: str) -> str | None:
    """stdout of a git command in the working dir, or None (no git, not a repo, no commit yet, hung)."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    """The CPU's model name. The one place rpbench reads it (rows, resume's same-machine rule, the ceilings cache
    key, doctor): call it through this module so a test can fake another machine in one place."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (affinity / cgroup cpuset), which can be fewer than os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_governor() -> str | None:
    """cpufreq scaling governor of cpu0, or None where the kernel does not expose it (most VMs and containers)."""
    try:
        with open(GOVERNOR_PATH, encoding="utf-8") as governor:
            return governor.read().strip() or None
    except OSError:
        return None


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tf32_settings(torch: Any) -> dict[str, Any]:
    """The float32-precision settings (legacy TF32 flags and torch >= 2.9's per-backend fp32_precision), flat and
    never raising: once the new API has set a value torch refuses the legacy reads (`torch_compat.fp32_settings`)."""
    from ..measure.torch_compat import fp32_settings

    return fp32_settings()


def _gpus(torch: Any) -> list[dict[str, Any]]:
    """Each device torch can use: its own properties merged over the NVML facts about the same board."""
    inventory = {entry["nvml_index"]: entry for entry in telemetry.gpu_inventory()}
    gpus = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        nvml_index = telemetry.nvml_index_for_cuda_device(index)
        gpu = dict(inventory.get(nvml_index, {"nvml_index": None}))
        gpu.update(
            {
                "index": index,
                "name": props.name,
                "memory_total_mib": props.total_memory / 2**20,
                "sm_count": props.multi_processor_count,
                "l2_cache_bytes": getattr(props, "L2_cache_size", None),
                "capability": f"{props.major}.{props.minor}",
            }
        )
        gpus.append(gpu)
    return gpus


def collect(command: str | None = None) -> dict[str, Any]:
    """The environment fingerprint; `command` defaults to this process's own command line."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    commit = _git("rev-parse", "HEAD")
    cuda_available = torch.cuda.is_available()
    return {
        "rpbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "packages": _package_versions(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else shlex.join(sys.argv),
        "git_commit": commit,
        "git_commit_time": None if commit is None else _git("log", "-1", "--format=%cI", "HEAD"),
        "git_dirty": None if commit is None else bool(_git("status", "--porcelain", "--untracked-files=no")),
        "code": code_versions(),
        "cpu": {
            "model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "usable_cores": usable_cores(),
            "governor": cpu_governor(),
        },
        "assume_quiet": interference.assume_quiet(),  # other processes' load read as none (rpbench's tests)
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "tf32": tf32_settings(torch),
        "cuda_available": cuda_available,
        "gpus": _gpus(torch) if cuda_available else [],
        "nvml": {
            "available": telemetry.nvml_available(),
            "reason": telemetry.nvml_unavailable_reason(),
            "device_count": telemetry.device_count(),
        },
    }
