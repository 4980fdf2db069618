"""Where cases come from: a suite file (layer or backbone scope), the flags of `run`/`profile`, or `--filter`.

    from rpbench.suites import find_suite, load_suite
    suite = load_suite(find_suite("quick"))       # Suite: name, timing, cases
"""
from __future__ import annotations

from .filter import filter_cases
from .find import find_suite, shipped_suites, suites_dir
from ..core.case import CaseFlags
from .flags import case_from_flags, parse_knobs
from .loader import load_suite

__all__ = [
    "CaseFlags",
    "case_from_flags",
    "filter_cases",
    "find_suite",
    "load_suite",
    "parse_knobs",
    "shipped_suites",
    "suites_dir",
]
