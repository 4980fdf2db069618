"""Which code was benchmarked: rpbench (with `attentions`) and every installed plugin distribution, each with its
version and, where it can be known, the git commit it was built from.

A commit is recorded only where it names the code that ran:
- the package's files are tracked by a git checkout (a source checkout, `pip install -e`): that checkout's HEAD,
  its committer date and whether tracked files had uncommitted changes;
- pip installed it from a git URL: the commit pip recorded (PEP 610 direct_url.json), without a date;
- pip installed it in editable mode from a local dir: that dir's checkout, as above.
A plain copy installed from a local dir records no commit: the checkout may have moved on since. env.json keeps the
result under `code` (see `environment.collect`); `rpbench history --commit-of NAME` orders runs by one of them.
"""
from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

PLUGIN_GROUP = "rpbench.attentions"  # attentions._plugins.ENTRY_POINT_GROUP (not imported: that loads the registry)


def git(*args: str, where: str | Path | None = None) -> str | None:
    """stdout of a git command in `where` (default: the working dir), or None (no git, not a repo, hung)."""
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5,
                              cwd=os.fspath(where) if where is not None else os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def checkout_facts(directory: str | Path, tracked: str | None = None) -> dict[str, Any] | None:
    """Commit, committer date and dirtiness of the git checkout holding `directory`; None when there is none, or
    when the file `tracked` (relative to `directory`) is not tracked by it (a venv inside someone's repo)."""
    if tracked is not None and git("ls-files", "--error-unmatch", "--", tracked, where=directory) is None:
        return None
    commit = git("rev-parse", "HEAD", where=directory)
    if not commit:
        return None
    return {"commit": commit, "commit_time": git("log", "-1", "--format=%cI", "HEAD", where=directory) or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no", where=directory))}


def _installed_from(dist: metadata.Distribution) -> dict[str, Any]:
    """What pip recorded about where a distribution came from (PEP 610), as commit facts; {} when nothing useful."""
    try:
        text = dist.read_text("direct_url.json")
        record = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict):
        return {}
    vcs = record.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") == "git" and vcs.get("commit_id"):
        return {"commit": str(vcs["commit_id"]), "commit_time": None, "dirty": False, "source": str(record.get("url"))}
    url = str(record.get("url") or "")
    dir_info = record.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable") and url.startswith("file://"):
        path = Path(unquote(urlparse(url).path))
        facts = checkout_facts(path) if path.is_dir() else None
        return {**facts, "source": str(path)} if facts else {}
    return {}


def _entry(version: str | None, facts: dict[str, Any] | None, source: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"version": version, "commit": None, "commit_time": None, "dirty": None,
                             "source": source}
    entry.update(facts or {})
    return entry


def _version(name: str) -> tuple[str | None, metadata.Distribution | None]:
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None, None
    return dist.version, dist


def code_versions() -> dict[str, dict[str, Any]]:
    """{distribution: {version, commit, commit_time, dirty, source}} for rpbench and each installed plugin."""
    version, dist = _version("rpbench")
    here = Path(__file__).resolve().parents[1]  # the rpbench package dir
    own = checkout_facts(here, "__init__.py")
    found = {"rpbench": _entry(version, own or (_installed_from(dist) if dist else None),
                               str(here.parent) if own else None)}
    try:
        points = metadata.entry_points(group=PLUGIN_GROUP)
    except Exception:  # a broken installed distribution must not stop a sweep from recording its environment
        points = ()
    for point in points:
        dist = getattr(point, "dist", None)
        if dist is None or dist.name in found:
            continue
        found[dist.name] = _entry(dist.version, _installed_from(dist))
    return found
