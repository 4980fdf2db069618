"""Shared test helpers: tiny suite files and a CLI runner."""
from __future__ import annotations

import textwrap
from pathlib import Path

from typer.testing import CliRunner

from rpbench.cli import app

TINY_SUITE = """
name = "tiny"
description = "test suite"
[axes]
tokens = [{tokens}]
m = [4]
batch = [1]
dim = [32]
heads = [4]
dtype = ["float32"]
mode = [{modes}]
device = "cpu"
[measure]
warmup_ms = 1
repeat = 5
rounds = 1
{attention}
"""


def tiny_suite(tmp_path: Path, names=("dense", "rpattention"), tokens="64, 256", modes='"fwd"',
               filename="tiny.toml") -> Path:
    attention = "\n".join(f'[[attention]]\nname = "{n}"' for n in names)
    path = tmp_path / filename
    path.write_text(TINY_SUITE.format(tokens=tokens, modes=modes, attention=attention))
    return path


PLANTED = '''
    import os, signal, time
    from torch import nn

    class Planted(nn.Module):
        def __init__(self, dim, num_heads, grid):
            super().__init__()
            self.fc = nn.Linear(dim, dim)
        def forward(self, x):
            {action}
            return self.fc(x)
'''


def planted(tmp_path, name: str, action: str) -> str:
    """A mechanism in tmp_path/<name>.py that runs `action` (one line) in its forward; its `file.py:Planted`."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(PLANTED.format(action=action)))
    return f"{path}:Planted"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def kill_sweep_when(suite: Path, out: Path, ready, timeout_s: float = 600) -> None:
    """Start `rpbench sweep SUITE --out OUT` in its own process group and kill -9 it as soon as `ready()` holds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest

    proc = subprocess.Popen([sys.executable, "-m", "rpbench", "sweep", str(suite), "--out", str(out), "--no-report"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.02)
        pytest.fail("the sweep did not get there in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# `python -c` program: rpbench's CLI in a process where importing one package (and its submodules) fails.
_BLOCK_IMPORT = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == {package!r} or name.startswith({package!r} + "."):
            raise ImportError("No module named " + repr({package!r}))
        return None
sys.meta_path.insert(0, _Blocked())
from rpbench.cli import main
sys.argv = ["rpbench"] + sys.argv[1:]
main()
"""


def rpbench_without(package: str, *args: str):
    """Run `rpbench ARGS` in a subprocess that cannot import `package` (as on a machine without it installed)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _BLOCK_IMPORT.format(package=package), *args], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], env={"COLUMNS": "200",
                                                                                    "PATH": "/usr/bin:/bin"})
