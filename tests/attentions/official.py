"""The official implementations, for tests that compare our modules with them where their source is at hand.

`rpbench`'s CI has no network, so these tests run where the official repositories were mirrored (the fetch tool
puts them under /work/.mirror/<owner>+<name>/repo; set RPBENCH_OFFICIAL_MIRRORS to another root) and skip
elsewhere. The facts they establish that CI must keep (key names and shapes) are also written into tests that
always run. A file is read at the mirror's HEAD (or a given commit) with `git show` and executed as a fresh
module; `stubs` stand in for imports the file needs but this machine lacks (timm layers, einops, ...).
"""
from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Mapping

import pytest

MIRRORS = Path(os.environ.get("RPBENCH_OFFICIAL_MIRRORS", "/work/.mirror"))


def official_source(repo: str, path: str, commit: str = "HEAD") -> str:
    """The text of `path` in the mirrored `repo` ("owner/name"); skips the test when it is not mirrored here."""
    git_dir = MIRRORS / repo.replace("/", "+") / "repo"
    if not git_dir.is_dir():
        pytest.skip(f"{repo} is not mirrored under {MIRRORS}")
    found = subprocess.run(["git", "-C", str(git_dir), "show", f"{commit}:{path}"], capture_output=True, text=True)
    if found.returncode != 0:
        pytest.skip(f"{repo}:{path}@{commit} not in the mirror: {found.stderr.strip()[:200]}")
    return found.stdout


def load_official(repo: str, path: str, commit: str = "HEAD",
                  stubs: Mapping[str, types.ModuleType] | None = None, package: str | None = None) -> types.ModuleType:
    """The official file executed as a module named after it, with `stubs` in sys.modules while it imports;
    `package` is the package its relative imports resolve in (timm's model files import their siblings)."""
    source = official_source(repo, path, commit)
    name = "official_" + repo.replace("/", "_").replace("-", "_") + "_" + Path(path).stem
    module = types.ModuleType(name)
    module.__file__ = f"{repo}/{path}"
    if package is not None:
        module.__package__ = package
    saved = {key: sys.modules.get(key) for key in (stubs or {})}
    sys.modules.update(stubs or {})
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value
    return module


def stub_module(name: str, **attributes: object) -> types.ModuleType:
    """A module `name` holding `attributes` (for `stubs`)."""
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module
