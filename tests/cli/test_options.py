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
    assert set(run) - set(shared) == {"warmup_ms", "repeat_ms", "rounds", "retries", "compile_", "precision",
                                            "channels_last", "timer", "max_batch", "batch_limit", "as_json", "width"}
    assert set(profile) - set(shared) == {"out", "wait", "warmup", "active", "width"}


def test_the_cli_answers_without_importing_torch_or_pandas():
    """`rpbench --help` and a mistyped flag stay fast: commands import the heavy rooms when they run."""
    import subprocess
    import sys

    code = ("import sys, rpbench.cli; heavy = {'torch', 'pandas', 'attentions'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_choices_are_the_vocabulary_the_rooms_use():
    from rpbench.analysis import METRICS
    from rpbench.cli.options import CompileMode, Device, Dtype, ExportFormat, MetricName, Mode, Precision
    from rpbench.core.case import COMPILE_MODES, DEVICES, DTYPE_ALIASES, DTYPES, MODES, PRECISIONS
    from rpbench.views.export import FORMATS

    for choice, values in ((Dtype, DTYPES + tuple(DTYPE_ALIASES)), (Mode, MODES), (Device, DEVICES),
                           (MetricName, tuple(METRICS)), (ExportFormat, FORMATS), (CompileMode, COMPILE_MODES),
                           (Precision, PRECISIONS)):
        assert tuple(member.value for member in choice) == tuple(values)
