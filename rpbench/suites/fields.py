"""Validation primitives for suite files and command-line sizes: each raises SuiteError with one line that names
the file (or `<cli>`), the key and what is allowed."""
from __future__ import annotations

import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..core.case import (COMPILE_MODES, DEVICES, DTYPE_ALIASES, DTYPES, MAX_INPUT_ELEMENTS, MODES, PRECISIONS,
                         SIZE_LIMITS)
from ..core.errors import SuiteError, UsageError


def suite_error(path: Path, key: str, message: str) -> SuiteError:
    """The one-line error for `key` of suite file `path`."""
    return SuiteError(f"{path.name}: {key}: {message}")


def as_list(path: Path, key: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise suite_error(path, key, "empty axis; give at least one value")
    return values


def typed_list(path: Path, key: str, value: Any, kind: type, allowed: Iterable[Any] | None = None) -> list[Any]:
    """The axis as a list of `kind` values; integers must lie in SIZE_LIMITS of the key's last part."""
    values = as_list(path, key, value)
    low, high = SIZE_LIMITS.get(key.rsplit(".", 1)[-1], (1, None))
    for item in values:
        if kind is int and (not isinstance(item, int) or isinstance(item, bool)):
            raise suite_error(path, key, f"expected integers, got {item!r}")
        if kind is bool and not isinstance(item, bool):
            raise suite_error(path, key, f"expected true or false, got {item!r}")
        if kind is str and not isinstance(item, str):
            raise suite_error(path, key, f"expected strings, got {item!r}")
        if allowed is not None and item not in allowed:
            raise suite_error(path, key, f"{item!r} is not allowed; choose from {', '.join(map(str, allowed))}")
        if kind is int and item < low:
            raise suite_error(path, key, f"{item} must be >= {low}")
        if kind is int and high is not None and item > high:
            raise suite_error(path, key, f"{item} must be <= {high}")
    return values


def parse_grid(text: Any, path: Path = Path("<cli>"), key: str = "tokens") -> tuple[int, int]:
    """N (a square grid) or "HxW" -> (H, W); each side within SIZE_LIMITS["side"]."""
    if isinstance(text, int) and not isinstance(text, bool):
        side = math.isqrt(text) if text > 0 else 0
        if side * side != text or side == 0:
            raise suite_error(path, key, f"{text} is not a square number; give the grid as \"HxW\"")
        return checked_grid(path, key, side, side)
    if isinstance(text, str) and len(text) <= 40:
        parts = text.lower().split("x")
        if len(parts) == 2 and all(p.strip().isascii() and p.strip().isdigit() for p in parts):
            height, width = (int(p) for p in parts)
            if height > 0 and width > 0:
                return checked_grid(path, key, height, width)
        if text.strip().isascii() and text.strip().isdigit():
            return parse_grid(int(text), path, key)
    raise suite_error(path, key, f"{text!r} is not a token count or \"HxW\" grid")


def checked_grid(path: Path, key: str, height: int, width: int) -> tuple[int, int]:
    low, high = SIZE_LIMITS["side"]
    if not (low <= height <= high and low <= width <= high):
        raise suite_error(path, key, f"{height}x{width}: each side of the token grid must be <= {high}")
    return height, width


def check_input_size(path: Path, key: str, batch: int, tokens: int, dim: int) -> None:
    """Refuse a layer input larger than MAX_INPUT_ELEMENTS (batch · N · C), before anything is allocated."""
    if batch * tokens * dim > MAX_INPUT_ELEMENTS:
        raise suite_error(path, key, f"batch {batch} × N {tokens} × dim {dim} = {batch * tokens * dim:.3g} input "
                          f"elements; at most {MAX_INPUT_ELEMENTS:.3g}")


def resolve_device(device: str) -> str:
    """auto -> cuda when torch sees a GPU, else cpu (inside `cases_for_elsewhere`: what auto means there)."""
    if device != "auto":
        return device
    elsewhere = _ELSEWHERE.get()
    if elsewhere is not None:
        elsewhere.auto_used = True
        return elsewhere.auto
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device_choice(device: str | None, flag: str = "--device ") -> str | None:
    """A device asked for by a flag or argument (auto, cuda, cpu) -> the device every case runs on (None: the suite
    decides); UsageError with one line for another value or for cuda without a GPU. `flag` is how the caller
    spells the setting before its value ("--device " on the command line, "device=" in Python)."""
    if device is None:
        return None
    if device not in DEVICES:
        raise UsageError(f"{flag}{device!r} is not one of {', '.join(DEVICES)}")
    resolved = resolve_device(device)
    if resolved == "cuda" and cuda_missing():
        raise UsageError(f"{flag}cuda: torch sees no CUDA GPU here (use {flag}cpu or auto)")
    return resolved


@dataclass
class Elsewhere:
    """Where the cases of a suite loaded for other machines run (see `cases_for_elsewhere`)."""

    auto: str  # what device = "auto" means there
    auto_used: bool = False  # whether a case got its device from "auto"


_ELSEWHERE: ContextVar[Elsewhere | None] = ContextVar("rpbench_cases_for_elsewhere", default=None)


@contextmanager
def cases_for_elsewhere(auto: str = "cuda") -> Iterator[Elsewhere]:
    """Suites loaded inside this block describe cases for other machines (a cluster's nodes, see
    `sweep --launcher`): a cuda device is taken as given, not checked against this machine, and `auto` means
    `auto` there (cuda on a SLURM node). The Elsewhere it yields says whether any case took its device from
    `auto`."""
    token = _ELSEWHERE.set(Elsewhere(auto))
    try:
        yield _ELSEWHERE.get()
    finally:
        _ELSEWHERE.reset(token)


def cuda_missing() -> bool:
    """True when torch sees no CUDA GPU (a case asking for cuda cannot run here)."""
    if _ELSEWHERE.get() is not None:
        return False
    import torch

    return not torch.cuda.is_available()


def run_axes(path: Path, axes: dict[str, Any], device_override: str | None
             ) -> tuple[list[int], list[str], list[str], list[str]]:
    """The axes every scope shares: batch, dtype, mode and device (resolved; --device overrides)."""
    batches = typed_list(path, "axes.batch", axes.get("batch", [1]), int)
    named = as_list(path, "axes.dtype", axes.get("dtype", ["float32"]))
    dtypes = typed_list(path, "axes.dtype", [canonical_dtype(d) for d in named], str, DTYPES)
    modes = typed_list(path, "axes.mode", axes.get("mode", ["fwd"]), str, MODES)
    devices = [device_override] if device_override else typed_list(
        path, "axes.device", axes.get("device", ["auto"]), str, DEVICES)
    if "cuda" in devices and cuda_missing():
        raise suite_error(path, "axes.device", "cuda, but torch sees no CUDA GPU here; use device = \"auto\" or "
                          "--device cpu")
    return batches, dtypes, modes, list(dict.fromkeys(resolve_device(d) for d in devices))


def canonical_dtype(name: Any) -> Any:
    """fp16 / bf16 / fp32 / half as float16 / bfloat16 / float32; anything else unchanged (validated later)."""
    return DTYPE_ALIASES.get(name, name) if isinstance(name, str) else name


def execution_axes(path: Path, axes: dict[str, Any], scope: str) -> list[tuple[str, str, bool]]:
    """(compile, precision, channels_last) combinations every case is measured in: `compile = ["none",
    "default"]`, `precision = ["cast", "amp"]`, and for backbones `channels_last = [false, true]`."""
    compiles = typed_list(path, "axes.compile", axes.get("compile", ["none"]), str, COMPILE_MODES)
    precisions = typed_list(path, "axes.precision", axes.get("precision", ["cast"]), str, PRECISIONS)
    layouts = typed_list(path, "axes.channels_last", axes.get("channels_last", [False]), bool, (False, True))
    if scope != "backbone" and True in layouts:
        raise suite_error(path, "axes.channels_last", "only backbones take images (scope = \"backbone\")")
    return [(c, p, l) for c in compiles for p in precisions for l in layouts]
