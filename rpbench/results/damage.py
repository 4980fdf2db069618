"""The side files of a run dir checked when it is read back for a report, an export or a comparison.

results.csv is the run; env.json, run.json, rounds.csv, reference.csv and samples.csv only add to it. A damaged one must not stop a
report, nor pass unnoticed: each is found here with what is wrong with it (one line, naming the file), and the
command that read the dir says what it left out because of it. samples.csv is checked when it is read (only the
bootstrap intervals need it, see `store.Run.samples`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ResultsError
from ..core.schema import REFERENCE_COLUMNS, ROUND_COLUMNS
from . import csvfile


@dataclass(frozen=True)
class Damage:
    """A side file of a run dir that could not be read: its name in the dir and what is wrong (one line that
    names the file)."""

    name: str
    problem: str


def _json_object(path: Path) -> str | None:
    """What is wrong with a JSON file that must hold an object, or None (a missing file is not damage)."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"{path}: unreadable ({type(err).__name__})"
    return None if isinstance(value, dict) else f"{path}: holds a JSON {type(value).__name__}, not an object"


def side_files(env: Path, run: Path, rounds: Path, reference: Path) -> list[Damage]:
    """The damaged ones among a run dir's env.json, run.json, rounds.csv and reference.csv (all small: read
    whole)."""
    found = [Damage(path.name, problem) for path in (env, run) for problem in [_json_object(path)] if problem]
    for path, columns in ((rounds, ROUND_COLUMNS), (reference, REFERENCE_COLUMNS)):
        try:
            if path.is_file() and path.stat().st_size:
                csvfile.read(path, columns)
        except (ResultsError, OSError) as err:
            found.append(Damage(path.name, str(err) if isinstance(err, ResultsError) else f"{path}: {err}"))
    return found
