"""Parsing and validating a backbone layout (the `Layout` type itself is plain data in `rpbench.core.case`).

A layout names one mechanism (the "A" attention) and a pattern of letters: `A` puts that mechanism
in a stage (or block), `B` keeps the backbone's own attention there. Multi-stage backbones take one
letter per stage ("AAAB"); a one-stage backbone (DeiT) takes one letter or one per block.

Knob values are scalars (every stage) or per-stage lists. The knobs dict may carry knobs meant for
other mechanisms (a sweep shares one dict across several attentions): a knob the chosen mechanism
lacks is dropped, but a name no registered mechanism has is an error, so typos do not vanish.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

import attentions
from attentions import UnsupportedConfig

from ..core.case import Layout

LETTERS = {"A": "the chosen attention", "B": "the backbone's own attention"}


def _known_knobs() -> set[str]:
    return {knob for name in attentions.available() for knob in attentions.spec(name).knobs}


def _per_stage(name: str, value: Any, stages: int, backbone: str) -> tuple[Any, ...]:
    if isinstance(value, (list, tuple)):
        if len(value) != stages:
            raise UnsupportedConfig(
                f"{backbone}: knob {name} has {len(value)} values but the backbone has {stages} "
                f"stage(s); give one value or {stages}"
            )
        return tuple(value)
    return (value,) * stages


def _check_pattern(pattern: str, stages: int, depth: int, backbone: str) -> None:
    bad = sorted(set(pattern) - set(LETTERS))
    if bad:
        raise UnsupportedConfig(
            f"{backbone}: unknown layout letter(s) {', '.join(map(repr, bad))} in {pattern!r}; "
            f"use A ({LETTERS['A']}) or B ({LETTERS['B']})"
        )
    if stages > 1:
        allowed, what = {stages}, f"{stages} letters, one per stage"
    else:
        allowed, what = {1, depth}, f"1 letter or {depth}, one per block"
    if len(pattern) not in allowed:
        raise UnsupportedConfig(
            f"{backbone}: layout {pattern!r} has {len(pattern)} letter(s); expected {what}"
        )


def parse(
    backbone: str,
    stages: int,
    depth: int,
    attention: str | None,
    pattern: str | None,
    knobs: Mapping[str, Any] | None,
) -> Layout:
    """Validate a layout for a backbone with `stages` stages (`depth` blocks when it has one stage)."""
    knobs = dict(knobs or {})
    for field, value in (("attention", attention), ("pattern", pattern)):
        if value is not None and not isinstance(value, str):
            raise UnsupportedConfig(f"{backbone}: layout {field} must be a string, got {value!r}")
    if attention is None:
        if pattern is not None and set(pattern) - {"B"}:
            raise UnsupportedConfig(f"{backbone}: layout {pattern!r} uses A but no attention was chosen")
        if knobs:
            raise UnsupportedConfig(
                f"{backbone}: knobs {', '.join(sorted(knobs))} given but no attention was chosen"
            )
        return Layout(attention=None, pattern="B" * stages, stages=stages)

    spec = attentions.spec(attention)  # raises the registry's one-line error for unknown names
    pattern = "A" * stages if pattern is None else pattern
    _check_pattern(pattern, stages, depth, backbone)

    known = _known_knobs()
    unknown = sorted(set(knobs) - known)
    if unknown:
        hints = [difflib.get_close_matches(name, known, n=1) for name in unknown]
        hint = "".join(f" (did you mean {h[0]!r}?)" for h in hints if h)
        raise UnsupportedConfig(
            f"unknown knob(s) {', '.join(unknown)}{hint}; no attention has them; "
            f"known knobs: {', '.join(sorted(known))}"
        )
    kept = {
        name: _per_stage(name, value, stages, backbone)
        for name, value in sorted(knobs.items())
        if name in spec.knobs
    }
    for stage in range(stages):
        spec.resolve({name: values[stage] for name, values in kept.items()})  # types and choices
    return Layout(attention=attention, pattern=pattern, knobs=tuple(kept.items()), stages=stages)

