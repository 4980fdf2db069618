"""Mechanisms from outside this package, into the one registry.

Three ways in:
- a reference `pkg.module:Factory` or `path/to/file.py:Factory` (a `--attention` value, or a suite's
  `[[attention]] name`): the module or file is imported on first use. When importing it registered `Factory` with
  the `attentions.register` decorator, that spec is used (its knobs, formula and check); otherwise `Factory` is a
  plain factory `(dim, num_heads, grid, **knobs) -> nn.Module` registered under the reference itself, taking any
  knob as given, with no FLOP formula;
- the entry-point group `rpbench.attentions` of installed packages: each entry point is loaded once, the first
  time the registry is asked for names; a module registers its mechanisms by importing, an object that is not
  registered yet is registered under the entry point's name;
- `attentions.register` in code that runs before the harness asks.

A plugin that cannot be imported is one line naming it and the reason (`UnsupportedConfig` for a reference, an
entry in `plugin_failures()` for an entry point); the other mechanisms are unaffected.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ._registry import AttentionSpec, UnsupportedConfig, _add, registered, specs_with_factory

ENTRY_POINT_GROUP = "rpbench.attentions"
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")  # pkg.module, or Factory.attr

_failures: dict[str, str] = {}
_entry_points_loaded = False


def is_reference(name: str) -> bool:
    """`pkg.module:Factory` or `file.py:Factory` (a registry name never holds a colon)."""
    return ":" in name


def plugin_failures() -> dict[str, str]:
    """Installed plugins (entry points) that could not be loaded: 'name (value)' -> the reason, one line."""
    load_entry_points()
    return dict(_failures)


def failure(name: str) -> str | None:
    """Why the installed plugin `name` is missing from the registry (one line), or None when it did not fail."""
    load_entry_points()
    if registered(name) is not None:
        return None
    for label, reason in _failures.items():
        if label.startswith(f"{name} ("):
            return f"plugin {label} failed to load: {reason}"
    return None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__


def _import_file(path: Path) -> Any:
    """Import a Python file as a module of its own (named after its resolved path, so importing it twice is one
    module)."""
    resolved = path.resolve()
    name = f"rpbench_plugin_{resolved.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    found = importlib.util.spec_from_file_location(name, resolved)
    if found is None or found.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(found)
    sys.modules[name] = module
    try:
        found.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _split(reference: str) -> tuple[str, str]:
    where, _, attribute = reference.rpartition(":")
    if not where or not _DOTTED.match(attribute):
        raise UnsupportedConfig(f"plugin {reference}: write it as pkg.module:Factory or path/to/file.py:Factory")
    if not where.endswith(".py") and not _DOTTED.match(where):
        raise UnsupportedConfig(f"plugin {reference}: {where!r} is neither a module path (pkg.module) nor a .py file")
    return where, attribute


def load_reference(reference: str) -> AttentionSpec:
    """The spec of `pkg.module:Factory` / `file.py:Factory`, importing it on first use; UnsupportedConfig with
    one line naming the plugin and the reason when it cannot be imported or is not a factory."""
    known = registered(reference)
    if known is not None:
        return known
    where, attribute = _split(reference)
    try:
        if where.endswith(".py"):
            if not Path(where).is_file():
                raise FileNotFoundError(f"no file {where} (relative to {Path.cwd()})")
            module = _import_file(Path(where))
        else:
            module = importlib.import_module(where)
    except Exception as err:
        raise UnsupportedConfig(f"plugin {reference}: cannot import {where}: {_one_line(err)}") from None
    try:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UnsupportedConfig(f"plugin {reference}: {where} has no {attribute}") from None
    return spec_for(obj, reference, origin=where)


def spec_for(obj: Any, name: str, origin: str) -> AttentionSpec:
    """The spec `obj` was registered with by the decorator, else `obj` registered as a plain factory as `name`."""
    decorated = specs_with_factory(obj)
    if decorated:
        return decorated[0]
    known = registered(name)
    if known is not None:
        return known
    if not callable(obj):
        raise UnsupportedConfig(f"plugin {name}: {type(obj).__name__} object is not a factory (a class or function "
                                "taking dim, num_heads, grid, **knobs)")

    def factory(dim: int, num_heads: int, grid: tuple[int, int], **knobs: Any) -> Any:
        return obj(dim, num_heads, grid, **knobs)

    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return _add(AttentionSpec(name=name, summary=doc[0] if doc else name, paper="", complexity="?",
                              scaling="unknown", factory=factory, flops_fn=None, origin=origin, open_knobs=True))


def load_entry_points() -> None:
    """Load every `rpbench.attentions` entry point once; failures are kept in `plugin_failures()`."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        label = f"{entry.name} ({entry.value})"
        try:
            loaded = entry.load()
            if not isinstance(loaded, type(sys)):  # a module registered its mechanisms by being imported
                spec_for(loaded, entry.name, origin=f"entry point {entry.value}")
        except Exception as err:
            _failures[label] = _one_line(err)


def reset_entry_points() -> None:
    """Load the entry points again at the next lookup (tests; a package installed mid-session)."""
    global _entry_points_loaded
    _entry_points_loaded = False
    _failures.clear()
