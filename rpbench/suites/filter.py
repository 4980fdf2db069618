"""`--filter`: the subset of a suite's cases a user asked for."""
from __future__ import annotations

import fnmatch
from dataclasses import fields

from ..core.case import DTYPE_ALIASES, Case
from ..core.errors import SuiteError

FIELDS = ("tokens", *(f.name for f in fields(Case)))


def _key(term: str) -> str:
    """The field a term is about ("name" for a bare mechanism/label glob); terms about one field are alternatives."""
    if "=" not in term:
        return "name"
    key = term.partition("=")[0].strip()
    if key not in FIELDS:
        raise SuiteError(f"--filter: unknown field {key!r}; allowed: {', '.join(FIELDS)}")
    return key


def _matches(case: Case, term: str) -> bool:
    """One term; `|` separates alternatives inside it (`tokens=1024|4096`, `rp*|dense`)."""
    key = _key(term)
    patterns = (term.partition("=")[2] if key != "name" else term).split("|")
    for pattern in (p.strip() for p in patterns):
        if key == "name":
            if fnmatch.fnmatchcase(case.label, pattern) or fnmatch.fnmatchcase(case.attention, pattern):
                return True
            continue
        if key == "dtype":
            pattern = DTYPE_ALIASES.get(pattern, pattern)  # dtype=bf16 means bfloat16
        if fnmatch.fnmatchcase(str(getattr(case, key)), pattern):
            return True
    return False


def filter_cases(cases: list[Case], expression: str | None) -> list[Case]:
    """Comma-separated terms: terms about the same field are alternatives (any may match), terms about different
    fields must all match. `rp*,dense` = either mechanism; `rp*,dtype=bfloat16` = RPAttention in bfloat16;
    `tokens=1024,tokens=4096` (or `tokens=1024|4096`) = either size. A bare term is a mechanism/label glob."""
    if expression is None:
        return cases
    terms = [t.strip() for t in expression.split(",") if t.strip()]
    if not terms:
        raise SuiteError(f"--filter {expression!r}: no terms; give e.g. `rp*` or `tokens=4096`")
    groups: dict[str, list[str]] = {}
    for term in terms:
        groups.setdefault(_key(term), []).append(term)
    return [case for case in cases
            if all(any(_matches(case, term) for term in alternatives) for alternatives in groups.values())]
