"""How one case is timed: a suite's `[measure]` table as `Timing`, with the type and range of every setting.

Torch-free data, like everything in `core`; `rpbench.measure.timing` holds the timers that read it.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Timing:
    """How to time one case (a suite's `[measure]` table). Durations in ms; cooldown None = 1 s on CUDA, 0 on CPU.

    A sweep times every case in `rounds` passes interleaved across the suite (each round samples for about
    `repeat_ms`); a pass disturbed by other processes is taken again later, at most `retries` times per case. A
    case whose 95 % interval is wider than ±`target_ci_pct` % gets extra rounds, still interleaved (up to
    `max_rounds` passes, never fewer than `rounds`), until it meets the target or the extra rounds have taken
    `extra_time_pct` % of the time the regular rounds took (see `rpbench.measure.rounds`).
    """

    warmup_ms: float = 50.0
    repeat_ms: float = 200.0
    repeat: int | None = None
    min_samples: int = 5
    max_samples: int = 2000
    cooldown_s: float | None = None
    flush_l2: bool = True
    threads: int | None = None
    energy_s: float = 1.0
    rounds: int = 3
    retries: int = 2
    timer: str = "auto"  # one of TIMERS
    target_ci_pct: float = 10.0
    max_rounds: int = 8
    extra_time_pct: float = 50.0

    @property
    def most_rounds(self) -> int:
        """The most passes a case gets from adaptive rounds: max_rounds, never fewer than rounds."""
        return max(self.max_rounds, self.rounds)

    @property
    def adaptive(self) -> bool:
        """Extra rounds can happen: at least MIN_PLAN_ROUNDS regular rounds to plan from, room above `rounds` and
        a time budget."""
        return self.rounds >= MIN_PLAN_ROUNDS and self.most_rounds > self.rounds and self.extra_time_pct > 0

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for every setting out of its TIMING_LIMITS range; empty when all are usable."""
        found = []
        cores = os.cpu_count() or 1
        for key, (low, high) in TIMING_LIMITS.items():
            value = getattr(self, key)
            if value is None:
                continue
            if key == "threads" and isinstance(value, int) and value > cores:
                found.append((key, f"{value} is more than the {cores} logical CPUs here"))
                continue
            problem = number_problem(value, low, high, integer=TIMING_TYPES[key] == (int,))
            if problem:
                found.append((key, problem))
        if self.timer not in TIMERS:
            found.append(("timer", f"{self.timer!r} is not one of {', '.join(TIMERS)}"))
        if not found and self.min_samples > self.max_samples:
            found.append(("min_samples", f"{self.min_samples} is more than max_samples = {self.max_samples}"))
        return found

    def to_json(self) -> str:
        """The settings as compact JSON, sorted: the `timing` column of every row they produced."""
        values = {key: float(value) if float in TIMING_TYPES.get(key, ()) and value is not None else value
                  for key, value in asdict(self).items()}  # 1 and 1.0 are the same setting
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def same_json(text: str, device: str | None = None) -> str:
        """A recorded `timing` JSON in the form a resume compares: settings that did not exist yet get the value
        they had then (one round, eager timing), `timer` is dropped for CPU rows (perf_counter either way), and
        `retries` and the adaptive settings (ADAPTIVE_KEYS) are dropped (they decide only how many passes are taken,
        and every row records its own retries, rounds and whether it met its target), so rows of one sweep compare
        equal across versions."""
        try:
            values = {**LEGACY_TIMING, **json.loads(text)}
        except (ValueError, TypeError):  # not a JSON object: unequal to any real setting, as a resume must see
            return text
        for key in ("retries", *ADAPTIVE_KEYS):
            values.pop(key, None)
        if device == "cpu":
            values.pop("timer", None)  # the CPU times with perf_counter whatever the setting says
        return json.dumps(values, sort_keys=True, separators=(",", ":"))


# Adaptive rounds plan from the first passes (Stein's procedure, see core.intervals): from 2 the t quantile has one
# degree of freedom (12.7) and would plan almost every case to max_rounds; from 3 it is 4.3.
MIN_PLAN_ROUNDS = 3

# What settings added later meant before they existed (see Timing.same_json).
LEGACY_TIMING = {"rounds": 1, "timer": "eager"}
# The settings of adaptive rounds: how many extra passes a case may get (a resume may change them).
ADAPTIVE_KEYS = ("target_ci_pct", "max_rounds", "extra_time_pct")


# How CUDA samples are taken: eager (CUDA events around each call), cudagraph (events around a replay of one
# captured call: no launch overhead), auto (cudagraph where capture works, else eager with a note). On the CPU
# every setting times with perf_counter.
TIMERS = ("auto", "eager", "cudagraph")

# The accepted Python types of each [measure] key, for the suite parser's one-line errors.
TIMING_TYPES: dict[str, tuple[type, ...]] = {
    "warmup_ms": (int, float),
    "repeat_ms": (int, float),
    "repeat": (int,),
    "min_samples": (int,),
    "max_samples": (int,),
    "cooldown_s": (int, float),
    "flush_l2": (bool,),
    "threads": (int,),
    "energy_s": (int, float),
    "rounds": (int,),
    "retries": (int,),
    "timer": (str,),
    "target_ci_pct": (int, float),
    "max_rounds": (int,),
    "extra_time_pct": (int, float),
}

# The allowed range (inclusive) of every [measure] number. Bounded so that no setting can make a case run for
# hours: at most 1 min of warm-up, 10 min of sampling budget, 100 000 samples, 10 min of cool-down, 1 min for energy.
# threads is also capped by the logical CPUs of the machine (more threads than cores measures contention).
TIMING_LIMITS: dict[str, tuple[float, float]] = {
    "warmup_ms": (0, 60_000),
    "repeat_ms": (0, 600_000),
    "repeat": (1, 100_000),
    "min_samples": (1, 100_000),
    "max_samples": (1, 100_000),
    "cooldown_s": (0, 600),
    "threads": (1, 4096),
    "energy_s": (0, 60),
    "rounds": (1, 100),
    "retries": (0, 20),
    "target_ci_pct": (0, 1000),
    "max_rounds": (1, 100),
    "extra_time_pct": (0, 1000),
}


def number_problem(value: object, low: float, high: float, integer: bool = False) -> str | None:
    """None when `value` is a finite number (an int when `integer`) within [low, high], else what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        return f"must be {'an integer' if integer else 'a number'}, got {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if not low <= value <= high:
        return f"must be between {low:g} and {high:g}, got {value:g}"
    return None
