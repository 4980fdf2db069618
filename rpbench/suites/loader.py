"""Suite file -> validated `Suite` of cases. Nothing is built or measured here: a bad suite is rejected, with one
line naming the file, the key and what is allowed, before anything runs.

A suite is TOML:

    name = "quick"
    description = "one line for `rpbench suites`"
    scope = "layer"                       # or "backbone" (see rpbench.suites.backbone)
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
    [launcher]                            # optional: how `--launcher slurm` submits it (see rpbench.core.launch)
    partition = "gpu"
"""
from __future__ import annotations

import sys
from pathlib import Path
from dataclasses import replace
from typing import Any

from ..core.case import SCOPES, TIMING_TYPES, Suite, Timing, text_problem
from ..core.errors import SuiteError
from ..core.launch import settings_from_table
from .backbone import expand_backbone
from .fields import execution_axes, suite_error
from .layer import expand_layer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_SUITE_BYTES = 1_000_000
TOP_KEYS = {"name", "description", "scope", "axes", "measure", "attention", "layout", "launcher"}


def _timing(path: Path, table: Any) -> Timing:
    if not isinstance(table, dict):
        raise suite_error(path, "measure", "must be a table")
    for key, value in table.items():
        if key not in TIMING_TYPES:
            raise suite_error(path, f"measure.{key}", f"unknown key; allowed: {', '.join(TIMING_TYPES)}")
        kinds = TIMING_TYPES[key]
        if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise suite_error(path, f"measure.{key}", f"must be {names}, got {value!r}")
    timing = Timing(**table)
    for key, problem in timing.problems():
        raise suite_error(path, f"measure.{key}", problem)
    return timing


def _text(path: Path, data: dict[str, Any], key: str, default: str) -> str:
    value = data.get(key, default)
    problem = text_problem(value, key)
    if problem:
        raise suite_error(path, key, problem)
    return value


def load_suite(source: str | Path, device_override: str | None = None) -> Suite:
    """Parse and validate a suite file into its cases; raises SuiteError with one line."""
    path = Path(source)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SuiteError(f"{path}: cannot read ({err.strerror or err})") from None
    if len(raw) > MAX_SUITE_BYTES:
        raise SuiteError(f"{path}: {len(raw)} bytes; a suite file is at most {MAX_SUITE_BYTES} bytes of TOML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SuiteError(f"{path}: not a UTF-8 text file (byte {err.start}: {raw[err.start:err.start + 1]!r}); "
                         f"a suite is TOML") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise suite_error(path, "toml", f"invalid TOML ({err})") from None
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise suite_error(path, unknown[0], f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")
    name = _text(path, data, "name", path.stem)
    description = _text(path, data, "description", "")
    scope = data.get("scope", "layer")
    if scope not in SCOPES:
        raise suite_error(path, "scope", f"{scope!r} is not allowed; choose from {', '.join(SCOPES)}")
    axes = data.get("axes")
    if not isinstance(axes, dict):
        raise suite_error(path, "axes", "missing [axes] table")
    timing = _timing(path, data.get("measure", {}))
    launcher = None
    if "launcher" in data:
        launcher, problem = settings_from_table(data["launcher"])
        if problem is not None:
            raise suite_error(path, *problem)
    warnings: list[str] = []
    if scope == "layer":
        if "layout" in data:
            raise suite_error(path, "layout", "only valid with scope = \"backbone\"")
        cases = expand_layer(path, axes, data.get("attention"), device_override, warnings)
    else:
        cases = expand_backbone(path, axes, data.get("layout"), device_override)
    cases = [replace(case, compile=compile_mode, precision=precision, channels_last=channels_last)
             for case in cases for compile_mode, precision, channels_last in execution_axes(path, axes, scope)]
    return Suite(name=name, description=description, scope=scope, path=path, text=text, timing=timing,
                 cases=cases, warnings=warnings, launcher=launcher)
