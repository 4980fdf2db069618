"""What the two diagnostic commands produce, as plain data the views render: `doctor`'s checks and a profile.

The machine room (`rpbench.machine.doctor`) and the bench room (`rpbench.measure.profile`) fill these in; the views
(`rpbench.views.machine`, `rpbench.views.profile`) read only these types, never the code that measured them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHECK_STATUSES = ("pass", "warn", "fail")


@dataclass
class Check:
    """One doctor check: pass / warn / fail, what was seen, what to do about it, and the values measured."""

    name: str
    status: str  # one of CHECK_STATUSES
    detail: str
    advice: str = ""
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorReport:
    """Every check of one `rpbench doctor` run and the ceilings it measured (cached for later sweeps)."""

    device: str | None
    device_name: str | None
    checks: list[Check]
    ceilings: dict[str, Any]

    @property
    def failed(self) -> bool:
        return any(check.status == "fail" for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "device_name": self.device_name,
            "ok": not self.failed,
            "checks": [asdict(check) for check in self.checks],
            "ceilings": self.ceilings,
        }


@dataclass(frozen=True)
class Schedule:
    """Profiler steps skipped (wait), profiled but discarded (warmup), and recorded (active)."""

    wait: int = 1
    warmup: int = 2
    active: int = 3

    @property
    def steps(self) -> int:
        return self.wait + self.warmup + self.active

    # Inclusive ranges: a trace of more than 100 recorded calls is too large to open, and holds nothing more.
    LIMITS = {"wait": (0, 1000), "warmup": (0, 1000), "active": (1, 100)}

    def problem(self) -> str | None:
        """One line when a step count is out of its range (LIMITS), else None."""
        for name, (low, high) in self.LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                return f"--{name} {value}: must be between {low} and {high}"
        return None


@dataclass(frozen=True)
class PhaseTime:
    """One record_function label, per call (mean over the active steps)."""

    label: str
    calls: float
    self_cpu_ms: float
    cpu_ms: float
    device_ms: float | None


@dataclass(frozen=True)
class OpTime:
    """A CUDA kernel (on GPU) or an aten op (on CPU), per call; `self_ms` is device time resp. self CPU time."""

    name: str
    calls: float
    self_ms: float


@dataclass(frozen=True)
class ProfileSummary:
    """The active steps of one profiled workload: time per phase label, top ops, peak memory, where the traces are."""

    device: str
    active_steps: int
    call_cpu_ms: float
    call_device_ms: float | None
    phases: list[PhaseTime]
    ops_kind: str
    top_ops: list[OpTime]
    peak_memory_mb: float | None
    trace_path: Path
    tensorboard_dir: Path | None
    notes: tuple[str, ...] = ()  # what the tables cannot show: no device time captured, CUPTI left attached

    @property
    def labelled_cpu_ms(self) -> float:
        return sum(phase.cpu_ms for phase in self.phases)

    @property
    def labelled_device_ms(self) -> float | None:
        if self.call_device_ms is None:
            return None
        return sum(phase.device_ms or 0.0 for phase in self.phases)
