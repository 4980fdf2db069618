"""One error convention for the whole harness: an exception whose message is one line a user can act on.

Code below the CLI raises these (or `attentions.UnsupportedConfig`, the mechanisms' own one-line error) and never
prints them or exits; the CLI is the only place that turns them into a printed line and an exit code
(`exit_code`: 2 for input the user must change, 1 for valid work that failed while it ran).
"""
from __future__ import annotations


class RpbenchError(Exception):
    """A problem stated in one line; the CLI prints the message as plain text and exits with `exit_code`."""

    exit_code = 2


class UsageError(RpbenchError):
    """Command-line flags that cannot be combined or are out of range."""


class SuiteError(RpbenchError, ValueError):
    """A suite file is invalid; the message names the file, the key and what is allowed."""


class ResultsError(RpbenchError):
    """A path is not a usable results dir, or a file cannot be written there."""


class AnalysisError(RpbenchError):
    """Bad analysis input (unknown metric, a baseline not in the run, a negative threshold)."""


class ExportError(RpbenchError):
    """An export that cannot be written as asked (unknown format, --out a directory)."""


class ExecutionError(RpbenchError):
    """A valid request whose work failed while it ran (out of memory while building, a profiler failure)."""

    exit_code = 1


def one_line(err: BaseException) -> str:
    """`Type: first line of the message`, for a failure recorded in a row's notes or shown to a user."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip().rstrip(":")
