"""What one measurement is of (`Case`), how it is timed (`Timing`), and the suite that groups them (`Suite`).

All frozen, torch-free data: a case travels from the suite parser through the runner into the store unchanged, and
its `case_id` is the join key of `--resume` and `compare` across rpbench versions.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DTYPES = ("float32", "float16", "bfloat16")
MODES = ("fwd", "fwdbwd")
DEVICES = ("auto", "cuda", "cpu")
SCOPES = ("layer", "backbone")


@dataclass(frozen=True)
class Layout:
    """Which attention runs where in a backbone: one mechanism (the "A" attention) and a pattern of letters.

    `A` puts that mechanism in a stage (or block), `B` keeps the backbone's own attention there. `attention` is
    None when every block keeps the backbone's own. `knobs` holds one value per stage, sorted by name. Build one
    with `rpbench.backbones.parse_layout`, which validates it against the backbone and the registry.
    """

    attention: str | None
    pattern: str
    knobs: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    # Stages of the backbone the layout was parsed for; not part of equality or the string.
    stages: int = field(default=1, compare=False, repr=False)

    OWN = "own"

    def letter(self, stage: int, block: int) -> str:
        """The letter governing block `block` of stage `stage` (0-based)."""
        if self.attention is None:
            return "B"
        if len(self.pattern) == 1:
            return self.pattern
        return self.pattern[stage] if self.stages > 1 else self.pattern[block]

    def stage_knobs(self, stage: int) -> dict[str, Any]:
        return {name: values[stage] for name, values in self.knobs}

    def __str__(self) -> str:
        """`own`, or `attention:PATTERN knob=v[,v…]`: the results column, and part of the case id."""
        if self.attention is None:
            return self.OWN
        parts = [f"{self.attention}:{self.pattern}"]
        for name, values in self.knobs:
            shown = values[:1] if len(set(values)) == 1 else values
            parts.append(f"{name}=" + ",".join(_format_value(v) for v in shown))
        return " ".join(parts)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Timing:
    """How to time one case (a suite's `[measure]` table). Durations in ms; cooldown None = 1 s on CUDA, 0 on CPU.

    A sweep times every case in `rounds` passes interleaved across the suite (each round samples for about
    `repeat_ms`); a pass disturbed by other processes is taken again later, at most `retries` times per case.
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
        if not found and self.min_samples > self.max_samples:
            found.append(("min_samples", f"{self.min_samples} is more than max_samples = {self.max_samples}"))
        return found

    def to_json(self) -> str:
        """The settings as compact JSON, sorted: the `timing` column of every row they produced."""
        values = {key: float(value) if float in TIMING_TYPES.get(key, ()) and value is not None else value
                  for key, value in asdict(self).items()}  # 1 and 1.0 are the same setting
        return json.dumps(values, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def same_json(text: str) -> str:
        """A recorded `timing` JSON in the form a resume compares: settings that did not exist yet get the value
        they had then (one round), and `retries` is dropped (it decides only whether a disturbed pass is taken
        again, and every row records its own retries), so rows of one sweep compare equal across versions."""
        try:
            values = {**LEGACY_TIMING, **json.loads(text)}
        except (ValueError, TypeError):  # not a JSON object: unequal to any real setting, as a resume must see
            return text
        values.pop("retries", None)
        return json.dumps(values, sort_keys=True, separators=(",", ":"))


# What settings added later meant before they existed (see Timing.same_json).
LEGACY_TIMING = {"rounds": 1}


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
}

# The allowed range of every size a suite or a flag gives (inclusive), and of the input they make together.
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "batch": (1, 65_536),
    "dim": (1, 65_536),
    "heads": (1, 4_096),
    "m": (1, 1_048_576),
    "side": (1, 16_384),          # tokens per grid side (height or width)
    "resolution": (1, 262_144),   # image side in px
    "patch": (1, 4_096),
}
MAX_INPUT_ELEMENTS = 2**33  # batch · N · C of one layer input: 32 GiB in float32, more than any GPU here holds

# User-written text (suite names, descriptions, labels): printable, one line, bounded.
TEXT_LIMITS = {"name": 100, "label": 100, "description": 300}


def number_problem(value: object, low: float, high: float, integer: bool = False) -> str | None:
    """None when `value` is a finite number (an int when `integer`) within [low, high], else what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        return f"must be {'an integer' if integer else 'a number'}, got {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    if not low <= value <= high:
        return f"must be between {low:g} and {high:g}, got {value:g}"
    return None


def text_problem(value: object, kind: str) -> str | None:
    """None when `value` is a non-empty, printable, one-line string of at most TEXT_LIMITS[kind] characters."""
    if not isinstance(value, str):
        return f"must be a string, got {value!r}"
    if kind != "description" and not value.strip():
        return "must not be empty"
    if len(value) > TEXT_LIMITS[kind]:
        return f"is {len(value)} characters long; at most {TEXT_LIMITS[kind]}"
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        return f"must be one printable line; it holds the control character {bad!r}"
    return None


def safe_name(name: str, limit: int = 64) -> str:
    """A suite (or case) name as one directory name: letters, digits, `.`, `_`, `-` only, never `..`, bounded."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")[:limit].strip(".-")
    return cleaned or "suite"


# The fields hashed into a case id, in documented order. A new Case field is NOT part of the id unless added here,
# and adding one changes every id (old run dirs would no longer resume), so extend this list only on purpose.
CASE_ID_FIELDS = (
    "scope", "attention", "label", "knobs", "batch", "height", "width", "dim", "heads", "dtype", "mode", "device",
    "m", "resolution", "patch", "backbone", "layout",
)


@dataclass(frozen=True)
class Case:
    """One measurement: what to build, at which size, on what. Plain data, hashable into a stable id."""

    scope: str
    attention: str
    label: str
    knobs: tuple[tuple[str, Any], ...]
    batch: int
    height: int
    width: int
    dim: int
    heads: int
    dtype: str
    mode: str
    device: str
    m: int | None = None
    resolution: int | None = None
    patch: int | None = None
    backbone: str | None = None
    layout: Layout | None = None

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def knob_dict(self) -> dict[str, Any]:
        return dict(self.knobs)

    @property
    def case_id(self) -> str:
        """12 hex digits of sha1 over the JSON of CASE_ID_FIELDS (knobs sorted, the layout as its string)."""
        fields: dict[str, Any] = {name: getattr(self, name) for name in CASE_ID_FIELDS}
        fields["knobs"] = sorted(self.knobs)
        fields["layout"] = None if self.layout is None else str(self.layout)
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
        return digest[:12]

    @property
    def seed(self) -> int:
        """The seed of this case's parameters and inputs: the same case always sees the same numbers."""
        return int(self.case_id[:8], 16)

    def describe(self) -> str:
        size = f"{self.height}x{self.width}" if self.resolution is None else f"{self.resolution}px"
        what = self.label if self.backbone is None else f"{self.backbone}/{self.label}"
        m = f" m={self.m}" if self.m is not None else ""
        return f"{what} {size}{m} b{self.batch} {self.dtype} {self.mode} {self.device}"


@dataclass
class CaseFlags:
    """A case as the flags of `run` and `profile` name it (the defaults are the CLI's); `rpbench.suites.case_from_flags`
    validates it into a Case."""

    attention: str | None = None
    tokens: int | None = None
    grid: str | None = None
    resolution: int | None = None
    patch: int = 16
    dim: int = 384
    heads: int = 6
    m: int | None = None
    knobs: list[str] = field(default_factory=list)
    batch: int = 1
    dtype: str = "float32"
    mode: str = "fwd"
    device: str = "auto"
    backbone: str | None = None
    layout: str | None = None


@dataclass
class Suite:
    """A parsed suite file: its cases and timing, and its text (copied into the run dir as written)."""

    name: str
    description: str
    scope: str
    path: Path
    text: str
    timing: Timing
    cases: list[Case] = field(default_factory=list)
