"""env.json `code`: the commit of the benchmarked code (rpbench, plugins) where it can be known, and nothing where
it cannot (a plain copy installed from a dir, a venv inside someone else's repo)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rpbench.machine import code, environment


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=where, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "GIT_COMMITTER_DATE": "2025-02-03T04:05:06+00:00",
                               "GIT_AUTHOR_DATE": "2025-02-03T04:05:06+00:00", "PATH": "/usr/bin:/bin"}).stdout.strip()


@pytest.fixture
def checkout(tmp_path) -> Path:
    repo = tmp_path / "plugin"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    return repo


class FakeDist:
    def __init__(self, direct_url: dict | None):
        self.text = None if direct_url is None else json.dumps(direct_url)

    def read_text(self, name: str):
        return self.text if name == "direct_url.json" else None


def test_a_checkout_gives_its_commit_date_and_dirtiness(checkout):
    head = _git(checkout, "rev-parse", "HEAD")
    assert code.checkout_facts(checkout / "pkg", "__init__.py") == {
        "commit": head, "commit_time": "2025-02-03T04:05:06+00:00", "dirty": False}
    (checkout / "pkg" / "__init__.py").write_text("x = 2\n")
    assert code.checkout_facts(checkout / "pkg")["dirty"] is True
    (checkout / "venv").mkdir()
    (checkout / "venv" / "__init__.py").write_text("")  # installed into a venv inside the repo: not its code
    assert code.checkout_facts(checkout / "venv", "__init__.py") is None


def test_pip_records_decide_what_a_plugin_commit_is(checkout):
    vcs = {"url": "https://example.invalid/p.git", "vcs_info": {"vcs": "git", "commit_id": "ab" * 20}}
    assert code._installed_from(FakeDist(vcs))["commit"] == "ab" * 20
    editable = {"url": checkout.as_uri(), "dir_info": {"editable": True}}
    assert code._installed_from(FakeDist(editable))["commit"] == _git(checkout, "rev-parse", "HEAD")
    copied = {"url": checkout.as_uri(), "dir_info": {}}  # a copy: the checkout may have moved on since
    assert code._installed_from(FakeDist(copied)) == {}
    assert code._installed_from(FakeDist(None)) == {}
    assert code._installed_from(FakeDist({"url": "file:///nowhere", "dir_info": {"editable": True}})) == {}


def test_env_json_records_the_code_and_the_commit_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = environment.collect("x")
    assert env["git_commit_time"] is None  # no checkout here
    assert "rpbench" in env["code"] and env["code"]["rpbench"]["version"]
    installed = {name for name in env["code"] if name != "rpbench"}
    from importlib import metadata

    plugins = {point.dist.name for point in metadata.entry_points(group=code.PLUGIN_GROUP) if point.dist}
    assert installed == plugins
    json.dumps(env)


def test_the_plugin_group_is_the_registrys():
    from attentions._plugins import ENTRY_POINT_GROUP

    assert code.PLUGIN_GROUP == ENTRY_POINT_GROUP
