"""What NVML says about the GPU around and during a case (plain data; the readings come from
`rpbench.machine.telemetry` and `rpbench.machine.gpu_watch`).

Two kinds of clock limit are told apart. A *slowdown* (thermal, hardware slowdown, power brake, board or reliability
limit) means the clocks were pulled down by something that should not happen on a healthy, cooled machine: such a
timed window counts as disturbed (left out of the pool, taken again) and a row whose every pass was slowed is flagged
`throttled`. The *power cap* is how a busy datacenter GPU normally runs under sustained load: reproducible, recorded
in `power_capped`, never a flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Sequence

# Clocks-event reason names (see machine.telemetry.THROTTLE_REASON_BITS) that mean a slowdown. Board and reliability
# limits are no clock-event bits in nvml.h: they are read as violation counters (SLOWDOWN_POLICIES).
SLOWDOWN_REASONS = frozenset({"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})
POWER_CAP_REASON = "sw_power_cap"
# NVML violation-counter policies (nvmlPerfPolicyType_t) that mean a slowdown; "power" is the power cap.
SLOWDOWN_POLICIES = ("thermal", "board_limit", "reliability")


@dataclass(frozen=True)
class GpuReading:
    """NVML readings at one moment, outside every timed window (whether clocks were limited is read during the
    windows: ClockWindow); None where the board or driver cannot report a value."""

    sm_clock_mhz: float | None = None
    temp_c: float | None = None
    power_w: float | None = None


@dataclass(frozen=True)
class GpuTelemetry:
    """NVML readings before a case's first pass and after its energy pass (outside every timed window), and the
    energy of one call."""

    start: GpuReading
    end: GpuReading
    energy_j_per_iter: float | None = None
    energy_window_s: float | None = None


@dataclass(frozen=True)
class ClockWindow:
    """What NVML saw of the GPU during one timed window (warm-up and samples): readings taken on a thread every
    ~0.1 s (and once at each end), and the growth of NVML's cumulative violation counters over the window.

    `reasons`: every clocks-event reason seen in any reading (idle and user-pinned clocks left out);
    `violation_ms`: policy -> ms the counter grew by ("power", "thermal", "board_limit", "reliability"; a policy
    the board cannot count is absent)."""

    readings: int
    window_s: float
    sm_clock_min_mhz: float | None = None
    sm_clock_median_mhz: float | None = None
    temp_max_c: float | None = None
    power_median_w: float | None = None
    reasons: tuple[str, ...] = ()
    violation_ms: tuple[tuple[str, float], ...] = ()

    def slowdowns(self) -> tuple[str, ...]:
        """Why the clocks were pulled down during the window (empty when they were not)."""
        found = [reason for reason in self.reasons if reason in SLOWDOWN_REASONS]
        found += [f"{policy} violation {ms:.0f} ms" for policy, ms in self.violation_ms
                  if policy in SLOWDOWN_POLICIES and ms > 0]
        return tuple(found)

    @property
    def throttled(self) -> bool:
        return bool(self.slowdowns())

    @property
    def power_capped(self) -> bool:
        return POWER_CAP_REASON in self.reasons or dict(self.violation_ms).get("power", 0.0) > 0


def summarize_readings(readings: Sequence[dict], window_s: float,
                       violation_ms: dict[str, float] | None = None) -> ClockWindow:
    """A ClockWindow from telemetry.snapshot() dicts taken during the window."""

    def values(key: str) -> list[float]:
        return [r[key] for r in readings if r.get(key) is not None]

    clocks, temps, powers = values("sm_clock_mhz"), values("temp_c"), values("power_w")
    ignored = {"gpu_idle", "applications_clocks_setting", "sync_boost", "display_clock_setting"}
    reasons = dict.fromkeys(reason for r in readings for reason in (r.get("throttle_reasons") or [])
                            if reason not in ignored)
    return ClockWindow(
        readings=len(readings), window_s=window_s,
        sm_clock_min_mhz=min(clocks) if clocks else None, sm_clock_median_mhz=median(clocks) if clocks else None,
        temp_max_c=max(temps) if temps else None, power_median_w=median(powers) if powers else None,
        reasons=tuple(reasons), violation_ms=tuple(sorted((violation_ms or {}).items())),
    )
