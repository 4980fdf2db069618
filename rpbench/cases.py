"""Suite file -> validated grid of cases. Nothing is built or measured here: a bad suite is rejected before anything runs.

A suite is TOML:

    name = "quick"
    description = "one line for `rpbench suites`"
    scope = "layer"                       # or "backbone"
    [axes]
    tokens = [196, "32x64"]               # N (square grid) or "HxW"; or resolution = [...] with patch = 16
    m = [49]                              # applied to mechanisms that have an `m` knob
    batch = [1]
    dim = [384]
    heads = [6]
    dtype = ["float32"]
    mode = ["fwd"]                        # fwd | fwdbwd
    device = "auto"                       # auto | cuda | cpu
    [measure]
    warmup_ms = 50
    repeat_ms = 200                       # or repeat = 100 (a count)
    [[attention]]
    name = "rpattention"
    label = "rp-em2"                      # optional; other keys are the mechanism's knobs
    em_iters = 2
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DTYPES = ("float32", "float16", "bfloat16")
MODES = ("fwd", "fwdbwd")
DEVICES = ("auto", "cuda", "cpu")
SCOPES = ("layer", "backbone")

TOP_KEYS = {"name", "description", "scope", "axes", "measure", "attention", "layout"}
LAYER_AXES = {"tokens", "resolution", "patch", "m", "batch", "dim", "heads", "dtype", "mode", "device"}
BACKBONE_AXES = {"backbone", "resolution", "batch", "dtype", "mode", "device"}


class SuiteError(ValueError):
    """A suite file is invalid; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class Measure:
    """How to time one case. Durations in ms; cooldown None = 1 s on CUDA, 0 on CPU."""

    warmup_ms: float = 50.0
    repeat_ms: float = 200.0
    repeat: int | None = None
    min_samples: int = 5
    max_samples: int = 2000
    cooldown_s: float | None = None
    flush_l2: bool = True
    threads: int | None = None
    energy_s: float = 1.0


MEASURE_TYPES: dict[str, tuple[type, ...]] = {
    "warmup_ms": (int, float),
    "repeat_ms": (int, float),
    "repeat": (int,),
    "min_samples": (int,),
    "max_samples": (int,),
    "cooldown_s": (int, float),
    "flush_l2": (bool,),
    "threads": (int,),
    "energy_s": (int, float),
}


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
    layout: str | None = None

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def knob_dict(self) -> dict[str, Any]:
        return dict(self.knobs)

    @property
    def case_id(self) -> str:
        fields = asdict(self)
        fields["knobs"] = sorted(self.knobs)
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
        return digest[:12]

    def describe(self) -> str:
        size = f"{self.height}x{self.width}" if self.resolution is None else f"{self.resolution}px"
        what = self.label if self.backbone is None else f"{self.backbone}/{self.label}"
        m = f" m={self.m}" if self.m is not None else ""
        return f"{what} {size}{m} b{self.batch} {self.dtype} {self.mode} {self.device}"


@dataclass
class Suite:
    name: str
    description: str
    scope: str
    path: Path
    text: str
    measure: Measure
    cases: list[Case] = field(default_factory=list)


def suite_error(path: Path, key: str, message: str) -> SuiteError:
    """The one-line error for `key` of suite file `path`."""
    return SuiteError(f"{path.name}: {key}: {message}")


def _as_list(path: Path, key: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise suite_error(path, key, "empty axis; give at least one value")
    return values


def typed_list(path: Path, key: str, value: Any, kind: type, allowed: Iterable[Any] | None = None,
                minimum: int | None = 1) -> list[Any]:
    values = _as_list(path, key, value)
    for item in values:
        if kind is int and (not isinstance(item, int) or isinstance(item, bool)):
            raise suite_error(path, key, f"expected integers, got {item!r}")
        if kind is str and not isinstance(item, str):
            raise suite_error(path, key, f"expected strings, got {item!r}")
        if allowed is not None and item not in allowed:
            raise suite_error(path, key, f"{item!r} is not allowed; choose from {', '.join(map(str, allowed))}")
        if kind is int and minimum is not None and item < minimum:
            raise suite_error(path, key, f"{item} must be >= {minimum}")
    return values


def parse_grid(text: Any, path: Path = Path("<cli>"), key: str = "tokens") -> tuple[int, int]:
    """N (a square grid) or "HxW" -> (H, W)."""
    if isinstance(text, int) and not isinstance(text, bool):
        side = math.isqrt(text) if text > 0 else 0
        if side * side != text or side == 0:
            raise suite_error(path, key, f"{text} is not a square number; give the grid as \"HxW\"")
        return side, side
    if isinstance(text, str):
        parts = text.lower().split("x")
        if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
            height, width = (int(p) for p in parts)
            if height > 0 and width > 0:
                return height, width
        if text.strip().isdigit():
            return parse_grid(int(text), path, key)
    raise suite_error(path, key, f"{text!r} is not a token count or \"HxW\" grid")


def _measure(path: Path, table: Any) -> Measure:
    if not isinstance(table, dict):
        raise suite_error(path, "measure", "must be a table")
    for key, value in table.items():
        if key not in MEASURE_TYPES:
            raise suite_error(path, f"measure.{key}", f"unknown key; allowed: {', '.join(MEASURE_TYPES)}")
        kinds = MEASURE_TYPES[key]
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise suite_error(path, f"measure.{key}", f"must be {names}, got {value!r}")
        if not isinstance(value, bool) and value < 0:
            raise suite_error(path, f"measure.{key}", f"must be >= 0, got {value}")
    return Measure(**table)


def _attention_entries(path: Path, entries: Any) -> list[tuple[str, str, dict[str, Any]]]:
    import attentions  # the registry is torch-free to query but lives with the modules

    if not isinstance(entries, list) or not entries:
        raise suite_error(path, "attention", "give at least one [[attention]] table with a name")
    parsed, labels = [], set()
    for index, entry in enumerate(entries):
        key = f"attention[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise suite_error(path, key, "each [[attention]] needs name = \"<mechanism>\"")
        name = entry["name"]
        if name not in attentions.available():
            raise suite_error(path, f"{key}.name", f"unknown mechanism {name!r}; available: {', '.join(attentions.available())}")
        label = entry.get("label", name)
        if not isinstance(label, str) or not label:
            raise suite_error(path, f"{key}.label", "must be a non-empty string")
        if label in labels:
            raise suite_error(path, f"{key}.label", f"label {label!r} used twice; labels must be unique")
        labels.add(label)
        knobs = {k: v for k, v in entry.items() if k not in ("name", "label")}
        try:
            attentions.spec(name).resolve(knobs)
        except attentions.UnsupportedConfig as err:
            raise suite_error(path, key, str(err)) from None
        parsed.append((name, label, knobs))
    return parsed


def _layer_sizes(path: Path, axes: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
    """(height, width, resolution, patch) for each size on the tokens or resolution axis."""
    if ("tokens" in axes) == ("resolution" in axes):
        raise suite_error(path, "axes", "give exactly one of tokens = [...] or resolution = [...] (with patch)")
    if "tokens" in axes:
        if "patch" in axes:
            raise suite_error(path, "axes.patch", "only valid with resolution")
        return [(*parse_grid(t, path), None, None) for t in _as_list(path, "axes.tokens", axes["tokens"])]
    patch = axes.get("patch")
    if not isinstance(patch, int) or isinstance(patch, bool) or patch < 1:
        raise suite_error(path, "axes.patch", "resolution needs patch = <positive int>")
    sizes = []
    for res in typed_list(path, "axes.resolution", axes["resolution"], int):
        if res % patch:
            raise suite_error(path, "axes.resolution", f"{res} is not divisible by patch {patch}")
        sizes.append((res // patch, res // patch, res, patch))
    return sizes


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_axes(path: Path, axes: dict[str, Any], device_override: str | None
             ) -> tuple[list[int], list[str], list[str], list[str]]:
    """The axes every scope shares: batch, dtype, mode and device (resolved; --device overrides)."""
    batches = typed_list(path, "axes.batch", axes.get("batch", [1]), int)
    dtypes = typed_list(path, "axes.dtype", axes.get("dtype", ["float32"]), str, DTYPES)
    modes = typed_list(path, "axes.mode", axes.get("mode", ["fwd"]), str, MODES)
    devices = [device_override] if device_override else typed_list(
        path, "axes.device", axes.get("device", ["auto"]), str, DEVICES)
    return batches, dtypes, modes, list(dict.fromkeys(resolve_device(d) for d in devices))


def expand_layer(path: Path, axes: dict[str, Any], entries: list[tuple[str, str, dict[str, Any]]],
                 device_override: str | None = None) -> list[Case]:
    import attentions

    unknown = sorted(set(axes) - LAYER_AXES)
    if unknown:
        raise suite_error(path, f"axes.{unknown[0]}", f"unknown axis; allowed: {', '.join(sorted(LAYER_AXES))}")
    sizes = _layer_sizes(path, axes)
    ms = typed_list(path, "axes.m", axes.get("m", [None]), int) if "m" in axes else [None]
    dims = typed_list(path, "axes.dim", axes.get("dim", [384]), int)
    heads = typed_list(path, "axes.heads", axes.get("heads", [6]), int)
    batches, dtypes, modes, devices = run_axes(path, axes, device_override)

    cases: list[Case] = []
    for name, label, knobs in entries:
        has_m = "m" in attentions.spec(name).knobs and "m" not in knobs
        for (height, width, res, patch), m, batch, dim, head, dtype, mode, device in itertools.product(
            sizes, ms if has_m else [None], batches, dims, heads, dtypes, modes, devices
        ):
            case_knobs = dict(knobs)
            if m is not None:
                case_knobs["m"] = m
            resolved = attentions.spec(name).resolve(case_knobs)
            cases.append(
                Case(scope="layer", attention=name, label=label, knobs=tuple(sorted(resolved.items())),
                     batch=batch, height=height, width=width, dim=dim, heads=head, dtype=dtype, mode=mode,
                     device=device, m=resolved.get("m"), resolution=res, patch=patch)
            )
    return list(dict.fromkeys(cases))


def load_suite(source: str | Path, device_override: str | None = None) -> Suite:
    """Parse and validate a suite file into its cases; raises SuiteError with one line."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SuiteError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise suite_error(path, "toml", f"invalid TOML ({err})") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise suite_error(path, unknown[0], f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")
    name = data.get("name", path.stem)
    description = data.get("description", "")
    if not isinstance(name, str) or not isinstance(description, str):
        raise suite_error(path, "name", "name and description must be strings")
    scope = data.get("scope", "layer")
    if scope not in SCOPES:
        raise suite_error(path, "scope", f"{scope!r} is not allowed; choose from {', '.join(SCOPES)}")
    axes = data.get("axes")
    if not isinstance(axes, dict):
        raise suite_error(path, "axes", "missing [axes] table")
    measure = _measure(path, data.get("measure", {}))
    if scope == "layer":
        if "layout" in data:
            raise suite_error(path, "layout", "only valid with scope = \"backbone\"")
        entries = _attention_entries(path, data.get("attention"))
        cases = expand_layer(path, axes, entries, device_override)
    else:
        from .backbone_cases import expand_backbone

        cases = expand_backbone(path, axes, data.get("layout"), device_override)
    return Suite(name=name, description=description, scope=scope, path=path, text=text, measure=measure,
                 cases=cases)


def suites_dir() -> Path:
    """The shipped suites (package data)."""
    from importlib.resources import files

    return Path(str(files("rpbench.suites")))


def shipped_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(suites_dir().glob("*.toml"))}


def find_suite(name_or_path: str) -> Path:
    """A shipped suite name or a path to a TOML file."""
    shipped = shipped_suites()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SuiteError(f"{path}: no such suite file")
        return path
    raise SuiteError(f"unknown suite {name_or_path!r}; shipped: {', '.join(shipped)} (or give a .toml path)")
