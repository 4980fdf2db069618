"""Where suites come from: a shipped suite by name, or a path to a TOML file."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import SuiteError


def suites_dir() -> Path:
    """The shipped suites: the package data of an installed rpbench (rpbench/suites/shipped/), else the top-level
    suites/ folder of the source checkout this module runs from (editable installs and plain checkouts)."""
    here = Path(__file__).resolve().parent
    installed = here / "shipped"
    return installed if installed.is_dir() else here.parents[1] / "suites"


def shipped_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(suites_dir().glob("*.toml"))}


def find_suite(name_or_path: str) -> Path:
    """A shipped suite name or a path to a TOML file."""
    shipped = shipped_suites()
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path)
    try:
        if path.suffix == ".toml" or path.exists():
            if not path.is_file():
                raise SuiteError(f"{path}: no such suite file")
            return path
    except OSError as err:  # a name too long, a loop of links
        raise SuiteError(f"{path}: {err.strerror or err}") from None
    raise SuiteError(f"unknown suite {name_or_path!r}; shipped: {', '.join(shipped)} (or give a .toml path)")
