"""The case flags of `run` and `profile` are defined once: same options, same help, same defaults."""
from __future__ import annotations

from dataclasses import fields

from rpbench.cli import app
from rpbench.core.case import CaseFlags
from typer.main import get_command


def _options(name: str) -> dict[str, tuple]:
    command = get_command(app).commands[name]
    return {param.name: (tuple(param.opts), param.help, param.default) for param in command.params}


def test_run_and_profile_share_every_case_flag():
    run, profile = _options("run"), _options("profile")
    shared = [spec.name for spec in fields(CaseFlags)]
    assert all(name in run and run[name] == profile[name] for name in shared)
    defaults = CaseFlags()
    for name in shared:
        assert run[name][2] == getattr(defaults, name) or (run[name][2] in (None, ()) and not getattr(defaults, name))
    assert set(run) - set(shared) == {"warmup_ms", "repeat_ms", "max_batch", "batch_limit", "as_json"}
    assert set(profile) - set(shared) == {"out", "wait", "warmup", "active"}
