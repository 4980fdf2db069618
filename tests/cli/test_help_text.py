"""Help texts render as written: rich markup would swallow a bare `[measure]`, leaving "the suite's  timer"."""
from __future__ import annotations

import re

import typer.main

from rpbench.cli import app

from cli_helpers import invoke


def test_no_help_text_holds_a_bracket_rich_would_swallow():
    command = typer.main.get_command(app)
    for name, sub in command.commands.items():
        texts = [sub.help or ""] + [getattr(param, "help", None) or "" for param in sub.params]
        for text in texts:
            assert not re.search(r"(?<!\\)\[[a-z/]", text), f"{name}: {text[:80]}"


def test_the_suite_tables_named_in_sweep_help_are_shown():
    shown = " ".join(invoke("sweep", "--help").output.replace("│", " ").split())
    assert "the suite's [measure] timer" in shown and "suite's [launcher] table" in shown
