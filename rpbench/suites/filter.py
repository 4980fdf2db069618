"""`--filter`: the subset of a suite's cases a user asked for."""
from __future__ import annotations

import fnmatch
from dataclasses import fields

from ..core.case import DTYPE_ALIASES, Case
from ..core.errors import SuiteError

FIELDS = ("tokens", *(f.name for f in fields(Case)))


def _matches(case: Case, term: str) -> bool:
    if "=" in term:
        key, _, pattern = term.partition("=")
        key = key.strip()
        if key not in FIELDS:
            raise SuiteError(f"--filter: unknown field {key!r}; allowed: {', '.join(FIELDS)}")
        pattern = pattern.strip()
        if key == "dtype":
            pattern = DTYPE_ALIASES.get(pattern, pattern)  # dtype=bf16 means bfloat16
        return fnmatch.fnmatchcase(str(getattr(case, key)), pattern)
    return fnmatch.fnmatchcase(case.label, term) or fnmatch.fnmatchcase(case.attention, term)


def filter_cases(cases: list[Case], expression: str | None) -> list[Case]:
    """Comma-separated terms, all must match: `rpattention`, `label=rp*`, `tokens=4096`, `dtype=bfloat16`."""
    if expression is None:
        return cases
    terms = [t.strip() for t in expression.split(",") if t.strip()]
    if not terms:
        raise SuiteError(f"--filter {expression!r}: no terms; give e.g. `rp*` or `tokens=4096`")
    return [case for case in cases if all(_matches(case, term) for term in terms)]
