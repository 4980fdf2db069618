"""What a command says about a run dir whose side files are damaged: one warning line per file."""
from __future__ import annotations

from rich.text import Text

from .app import err_console

# What a damaged side file of a run dir costs each command (see results.damage); results.csv alone is the run.
_REPORTED = {"env.json": "the environment (versions, the command, measured ceilings: no % of measured ceiling)",
             "samples.csv": "the bootstrap intervals (speedups fall back to the p20–p80 pairing, marked †, exponents "
                            "to t-intervals)",
             "run.json": "nothing shown here (the machine's drift is read from reference.csv instead; run.json says "
                         "which sweep the dir holds: `rpbench sweep --resume` refuses the dir)",
             "reference.csv": "the drift line where run.json lacks it (each row keeps the drift it was written with)",
             "rounds.csv": "nothing shown here (it keeps every timed pass: `rpbench sweep --resume` refuses the dir)"}
LEFT_OUT = {"report": _REPORTED, "export": _REPORTED,
            "compare": {**_REPORTED, "env.json": "the check that both runs used the same torch"},
            "history": {**_REPORTED, "env.json": "the run's date and commit (it is placed by its rows' start times "
                                                 "where it can be)"}}


def warn_damage(run, command: str) -> None:
    """One warning line per damaged side file of `run`: the file, what is wrong, what `command` left out."""
    for damage in run.damage:
        err_console.print(Text(f"warning: {damage.problem}; left out: {LEFT_OUT[command][damage.name]}",
                               style="yellow"), soft_wrap=True)
