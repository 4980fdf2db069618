"""How a sweep's cases are handed to a cluster (`rpbench sweep --launcher slurm`): the settings of the job array,
from a suite's `[launcher]` table and the command line (flags win). No torch, no submitit here: the settings are
validated where they are read, and `rpbench.measure.launch` submits with them.

    [launcher]
    partition = "gpu"              # sbatch --partition
    account = "my-project"         # sbatch --account
    time_min = 120                 # the time limit of each task, minutes
    gpus_per_task = 1              # 0 for a CPU sweep
    cpus_per_task = 8
    mem_gb = 64
    tasks = 16                     # the cases split into this many array tasks (default: one task per case)
    max_running = 8                # tasks running at once (sbatch --array=...%8)
    setup = ["module load cuda/12.8", "source ~/venvs/rpbench/bin/activate"]
    [launcher.sbatch]              # any other sbatch option, without its leading dashes
    constraint = "h100"
    qos = "high"
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

LAUNCHERS = ("none", "slurm", "local")  # local: submitit's local executor, the slurm code path on this machine
MAX_TASKS = 10_000  # a common MaxArraySize; a bigger sweep is split with `tasks`
_SBATCH_KEY = re.compile(r"[a-z][a-z0-9-]{0,39}")
# sbatch options rpbench sets itself (through submitit): given in `sbatch`, they would silently fight its settings.
_OWN_SBATCH = {"array", "output", "error", "job-name", "wrap", "partition", "account", "time", "gpus-per-node",
               "cpus-per-task", "mem", "ntasks-per-node", "nodes"}


@dataclass(frozen=True)
class LaunchSettings:
    partition: str | None = None
    account: str | None = None
    time_min: int = 60
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    tasks: int | None = None
    max_running: int | None = None
    setup: tuple[str, ...] = ()
    sbatch: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def problems(self) -> list[tuple[str, str]]:
        """(key, what is wrong) for every setting out of range; empty when all are fine."""
        found = []
        for key in ("partition", "account"):
            value = getattr(self, key)
            if value is not None and not re.fullmatch(r"[A-Za-z0-9_.,:+-]{1,128}", value):
                found.append((key, f"{value[:40]!r} is not a SLURM {key} name (letters, digits, _ . , : + -)"))
        bounds = {"time_min": (1, 60 * 24 * 365), "gpus_per_task": (0, 64), "cpus_per_task": (1, 1024),
                  "tasks": (1, MAX_TASKS), "max_running": (1, MAX_TASKS)}
        for key, (low, high) in bounds.items():
            value = getattr(self, key)
            if value is not None and not low <= value <= high:
                found.append((key, f"{value!r}: must be from {low} to {high}"))
        if self.mem_gb is not None and not (math.isfinite(self.mem_gb) and 0 < self.mem_gb <= 65536):
            found.append(("mem_gb", f"{self.mem_gb!r}: must be a number of GB above 0 and at most 65536"))
        for line in self.setup:
            if not line.strip() or "\n" in line or "\r" in line or len(line) > 1000:
                found.append(("setup", f"{line[:40]!r}: each entry is one non-empty shell line"))
        for key, value in self.sbatch:
            if not _SBATCH_KEY.fullmatch(key):
                found.append(("sbatch", f"{key[:40]!r} is not an sbatch option name (lower-case, e.g. constraint)"))
            elif key in _OWN_SBATCH:
                found.append(("sbatch", f"{key}: rpbench sets it; use the launcher setting for it instead"))
            if "\n" in value or "\r" in value or len(value) > 1000:
                found.append(("sbatch", f"{key}: its value must be one line"))
        return found

    def with_overrides(self, **given: Any) -> "LaunchSettings":
        """These settings with the non-None values of `given` (command-line flags) put over them; `sbatch` pairs
        are added (a flag's value replaces the table's for the same option)."""
        extra = dict(given.pop("sbatch", None) or ())
        merged = replace(self, **{key: value for key, value in given.items() if value is not None})
        return replace(merged, sbatch=tuple({**dict(self.sbatch), **extra}.items()))

    def to_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["setup"], found["sbatch"] = list(self.setup), dict(self.sbatch)
        return found

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LaunchSettings":
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["setup"] = tuple(values.get("setup") or ())
        values["sbatch"] = tuple((values.get("sbatch") or {}).items())
        return cls(**values)


# key -> the types a [launcher] table may give it
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "partition": (str,), "account": (str,), "time_min": (int,), "gpus_per_task": (int,), "cpus_per_task": (int,),
    "mem_gb": (int, float), "tasks": (int,), "max_running": (int,), "setup": (list,), "sbatch": (dict,),
}


def settings_from_table(table: Any) -> tuple[LaunchSettings | None, tuple[str, str] | None]:
    """A suite's [launcher] table as settings, or (None, (key, what is wrong))."""
    if not isinstance(table, dict):
        return None, ("launcher", "must be a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        kinds = SETTING_TYPES.get(key)
        if kinds is None:
            return None, (f"launcher.{key}", f"unknown key; allowed: {', '.join(SETTING_TYPES)}")
        if isinstance(value, bool) or not isinstance(value, kinds):
            return None, (f"launcher.{key}", f"must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
        values[key] = value
    if not all(isinstance(line, str) for line in values.get("setup", [])):
        return None, ("launcher.setup", "must be a list of shell lines (strings)")
    sbatch = values.get("sbatch", {})
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in sbatch.values()):
        return None, ("launcher.sbatch", "values must be strings or integers")
    values["setup"] = tuple(values.get("setup", ()))
    values["sbatch"] = tuple((str(k), str(v)) for k, v in sbatch.items())
    if "mem_gb" in values:
        values["mem_gb"] = float(values["mem_gb"])
    settings = LaunchSettings(**values)
    problems = settings.problems()
    if problems:
        key, problem = problems[0]
        return None, (f"launcher.{key}", problem)
    return settings, None


def parse_sbatch_flag(text: str) -> tuple[str, str]:
    """`--sbatch KEY=VALUE` (`--sbatch constraint=h100`; a bare `--sbatch exclusive` is `exclusive=`)."""
    key, _, value = text.partition("=")
    return key.strip().lstrip("-"), value.strip()
