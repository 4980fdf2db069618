"""What one measurement is of (`Case`), how it is timed (`Timing`), and the suite that groups them (`Suite`).

All frozen, torch-free data: a case travels from the suite parser through the runner into the store unchanged, and
its `case_id` is the join key of `--resume` and `compare` across rpbench versions.
"""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .timing import LEGACY_TIMING, TIMING_LIMITS, TIMING_TYPES, Timing, number_problem  # noqa: F401 (re-exported)

DTYPES = ("float32", "float16", "bfloat16")
MODES = ("fwd", "fwdbwd")
DEVICES = ("auto", "cuda", "cpu")
SCOPES = ("layer", "backbone")
# Short names accepted wherever a dtype is named; rows always carry the canonical name.
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16"}
# cast: module and inputs in the dtype; amp: float32 parameters and inputs under torch.autocast(dtype).
PRECISIONS = ("cast", "amp")
# torch.compile modes a case can be measured in ("none": eager, as before compile existed).
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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
# `compile`, `precision` and `channels_last` join the hash only when they are not their defaults ("none", "cast",
# False), so every case that could be written before they existed keeps the id it always had.
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
    compile: str = "none"
    precision: str = "cast"
    channels_last: bool = False

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
        for name, default in (("compile", "none"), ("precision", "cast"), ("channels_last", False)):
            if getattr(self, name) != default:
                fields[name] = getattr(self, name)
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
        extra = "".join(f" {text}" for text, shown in ((f"compile={self.compile}", self.compile != "none"),
                                                        ("amp", self.precision == "amp"),
                                                        ("channels_last", self.channels_last)) if shown)
        return f"{what} {size}{m} b{self.batch} {self.dtype} {self.mode}{extra} {self.device}"


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
    warnings: list[str] = field(default_factory=list)  # one line per [[attention]] plugin left out (cannot load)
    launcher: Any = None  # the [launcher] table as core.launch.LaunchSettings (None: the suite has none)
