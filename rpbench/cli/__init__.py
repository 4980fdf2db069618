"""The command line: the Typer app (app), one shared definition of the case flags (options), and the commands,
which parse, call the harness or a view, and print. Errors are turned into exit codes in one place (app._Group).

Commands import the rooms that need torch (suites, measure, machine, backbones) inside their bodies, so that
`rpbench --help` and a mistyped flag answer in about 0.2 s here, without importing torch (1 s) or pandas (0.3 s).
"""
from __future__ import annotations

from . import sweep, cluster, one_case, catalog, machine, results, runs, maps  # noqa: F401,I001  (registers the commands, in help order)
from .app import app, main

__all__ = ["app", "main"]
