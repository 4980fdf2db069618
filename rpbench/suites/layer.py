"""Layer scope: a suite's `[axes]` and `[[attention]]` tables -> one Case per mechanism × size × setting."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import attentions

from ..core.case import Case, text_problem
from .fields import as_list, check_input_size, checked_grid, parse_grid, run_axes, suite_error, typed_list

LAYER_AXES = {"tokens", "resolution", "patch", "m", "batch", "dim", "heads", "dtype", "mode", "device", "compile",
              "precision", "channels_last"}


def attention_entries(path: Path, entries: Any,
                      warnings: list[str] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(registry name, label, knobs) per [[attention]] table, each validated against the registry. A plugin (a
    `pkg.module:Factory` reference, or an installed plugin's name) that cannot be loaded is left out with one
    line in `warnings`, so the other mechanisms still run; any other unknown name is an error."""
    if not isinstance(entries, list) or not entries:
        raise suite_error(path, "attention", "give at least one [[attention]] table with a name")
    parsed, labels = [], set()
    for index, entry in enumerate(entries):
        key = f"attention[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise suite_error(path, key, "each [[attention]] needs name = \"<mechanism>\"")
        name = entry["name"]
        failed = _failed_plugin(name)  # a reference is imported here, on first use
        if failed is not None or name not in attentions.available():
            if failed is None:
                raise suite_error(path, f"{key}.name",
                                  f"unknown mechanism {name!r}; available: {', '.join(attentions.available())}")
            if warnings is None:
                raise suite_error(path, f"{key}.name", failed)
            warnings.append(f"{failed}; its cases are left out")
            continue
        label = entry.get("label", name)
        problem = text_problem(label, "label")
        if problem:
            raise suite_error(path, f"{key}.label", problem)
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


def _failed_plugin(name: str) -> str | None:
    """Why plugin `name` cannot be used (one line), or None when it can or `name` is no plugin at all."""
    if not attentions.is_reference(name):
        return attentions.plugin_failure(name)
    try:
        attentions.spec(name)  # imports the reference on first use
    except attentions.UnsupportedConfig as err:
        return str(err)
    return None


def _layer_sizes(path: Path, axes: dict[str, Any]) -> list[tuple[int, int, int | None, int | None]]:
    """(height, width, resolution, patch) for each size on the tokens or resolution axis."""
    if ("tokens" in axes) == ("resolution" in axes):
        raise suite_error(path, "axes", "give exactly one of tokens = [...] or resolution = [...] (with patch)")
    if "tokens" in axes:
        if "patch" in axes:
            raise suite_error(path, "axes.patch", "only valid with resolution")
        return [(*parse_grid(t, path), None, None) for t in as_list(path, "axes.tokens", axes["tokens"])]
    if "patch" not in axes:
        raise suite_error(path, "axes.patch", "resolution needs patch = <positive int>")
    patch = axes["patch"]
    if isinstance(patch, list):
        raise suite_error(path, "axes.patch", f"one patch size, not a list: got {patch!r}")
    typed_list(path, "axes.patch", patch, int)  # an integer within SIZE_LIMITS
    sizes = []
    for res in typed_list(path, "axes.resolution", axes["resolution"], int):
        if res % patch:
            raise suite_error(path, "axes.resolution", f"{res} is not divisible by patch {patch}")
        checked_grid(path, "axes.resolution", res // patch, res // patch)
        sizes.append((res // patch, res // patch, res, patch))
    return sizes


def expand_layer(path: Path, axes: dict[str, Any], entries: Any, device_override: str | None = None,
                 warnings: list[str] | None = None) -> list[Case]:
    """Every layer case of the suite, in mechanism-major order, duplicates removed (plugins that cannot be loaded
    left out, each with a line in `warnings`)."""
    mechanisms = attention_entries(path, entries, warnings)
    if not mechanisms:
        raise suite_error(path, "attention", "no [[attention]] could be loaded: " + "; ".join(warnings or []))
    unknown = sorted(set(axes) - LAYER_AXES)
    if unknown:
        raise suite_error(path, f"axes.{unknown[0]}", f"unknown axis; allowed: {', '.join(sorted(LAYER_AXES))}")
    sizes = _layer_sizes(path, axes)
    ms = typed_list(path, "axes.m", axes.get("m", [None]), int) if "m" in axes else [None]
    dims = typed_list(path, "axes.dim", axes.get("dim", [384]), int)
    heads = typed_list(path, "axes.heads", axes.get("heads", [6]), int)
    batches, dtypes, modes, devices = run_axes(path, axes, device_override)

    cases: list[Case] = []
    for name, label, knobs in mechanisms:
        has_m = "m" in attentions.spec(name).knobs and "m" not in knobs
        for (height, width, res, patch), m, batch, dim, head, dtype, mode, device in itertools.product(
            sizes, ms if has_m else [None], batches, dims, heads, dtypes, modes, devices
        ):
            case_knobs = dict(knobs)
            if m is not None:
                case_knobs["m"] = m
            resolved = attentions.spec(name).resolve(case_knobs)
            check_input_size(path, "axes", batch, height * width, dim)
            cases.append(
                Case(scope="layer", attention=name, label=label, knobs=tuple(sorted(resolved.items())),
                     batch=batch, height=height, width=width, dim=dim, heads=head, dtype=dtype, mode=mode,
                     device=device, m=resolved.get("m"), resolution=res, patch=patch)
            )
    return list(dict.fromkeys(cases))
