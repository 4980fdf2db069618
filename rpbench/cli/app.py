"""The Typer app, its consoles, and the one place that turns an error into a printed line and an exit code.

Commands (in the sibling modules) parse their flags, call the harness or a view, and print; they never catch an
`RpbenchError` themselves. `_Group.invoke` does, for every command, and prints its message as plain text (never
rich markup: a `[/]` in a path or a label must print as written).
"""
from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from ..core.errors import RpbenchError

# click's UsageError: BadParameter's base, whether Typer uses the click package or its own vendored copy.
UsageError = typer.BadParameter.__bases__[0]
assert UsageError.__name__ == "UsageError", UsageError

console = Console()
err_console = Console(stderr=True)

# Output that is not a terminal (a file, a pipe, a CI log) has no width to fit: every table is printed at its
# natural width, so no cell is ever wrapped (rich would otherwise fold it at 80 columns). Grids, whose size axis can
# be long, still fold into several at PIPE_WIDTH so a log stays readable.
UNBOUNDED = 10_000
PIPE_WIDTH = 120
WIDTH_LIMITS = (40, UNBOUNDED)
_forced: dict[str, int | None] = {"width": None}


def fit_width(width: int | None = None) -> None:
    """Print for `width` columns (`--width`), else for the terminal's, else (not a terminal) unbounded."""
    _forced["width"] = width
    for target in (console, err_console):
        target.width = width if width is not None else (None if target.is_terminal else UNBOUNDED)  # type: ignore[assignment]


def layout_width() -> int:
    """The width views fold their tables to: `--width`, else the terminal's, else PIPE_WIDTH."""
    forced = _forced["width"]
    return forced if forced is not None else console.width if console.is_terminal else PIPE_WIDTH


def print_error(message: str) -> None:
    """`error: <message>` on stderr, the message exactly as given."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), highlight=False, soft_wrap=True)


class _FlagsTakeNoValue:
    """--help shows no `<bool>` type after a flag (a flag takes no value)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsTakeNoValue, TyperCommand):
    pass


class _Group(_FlagsTakeNoValue, TyperGroup):
    """The rpbench group: every command's one-line errors become `error: …` on stderr and an exit code."""

    def invoke(self, ctx):
        fit_width()  # whatever the command, output that is not a terminal keeps its cells whole
        try:
            return super().invoke(ctx)
        except UsageError as err:  # an unknown command, option or choice: Typer's multi-line panel as one line
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            message = err.format_message().replace("Value error, ", "")  # pydantic's prefix, where Typer uses it
            print_error(f"{message} (see `{where} --help`)")
            raise typer.Exit(err.exit_code) from None
        except RpbenchError as err:
            print_error(str(err))
            raise typer.Exit(err.exit_code) from None
        except Exception as err:
            # The mechanisms' own one-line error (input to change). Only raised once attentions is imported, so
            # looking it up here keeps torch out of `rpbench --help`.
            attentions = sys.modules.get("attentions")
            if attentions is None or not isinstance(err, attentions.UnsupportedConfig):
                raise
            print_error(str(err))
            raise typer.Exit(2) from None


app = typer.Typer(
    name="rpbench",
    help="Benchmark and profile efficient attention (RPAttention and baselines) for vision transformers.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("rpbench")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = "unknown (not installed)"
        typer.echo(f"rpbench {found}")
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="Print rpbench's version and exit.")) -> None:
    """Benchmark and profile efficient attention (RPAttention and baselines) for vision transformers."""


def command(name: str | None = None):
    """Register a command on the app (with flags shown without a `<bool>` type)."""
    return app.command(name, cls=_Command)


def main() -> None:
    app()
