"""rpbench from Python (a notebook, a script): `rpbench.bench(...)` and `rpbench.sweep(...)`, each returning the
run's results table, the very DataFrame `rpbench.load` gives for a run dir (same columns, same dtypes).

Both go the way `rpbench sweep` goes (suite -> cases -> rounds -> run dir -> table): a dict becomes a suite file
(kept in the run dir as `suite.toml`, so the run can be resumed, reported and compared like any other), and every
rule of a suite file applies. Errors are `rpbench.core.errors.RpbenchError` subclasses with one-line messages.

    import rpbench
    frame = rpbench.bench(["dense", "rpattention", "./my_attn.py:MyAttention"], tokens=[1024, 4096], dim=128,
                          heads=4, dtype="bfloat16", measure={"rounds": 1})
    frame[["label", "tokens", "latency_ms_median", "peak_mem_mb"]]
"""
from __future__ import annotations

import json
import math
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from ..core.case import DEVICES
from ..core.launch import LAUNCHERS
from ..measure.isolated import gpu_slots
from ..measure.launch import load_for_launch
from ..measure.runner import device_names
from ..measure.sweep import run_sweep
from ..core.case import safe_name
from ..core.errors import UsageError
from ..results import launched, store
from ..results.resume import RunRecord, recorded_run
from ..suites import filter_cases, find_suite, load_suite
from ..suites.fields import resolve_device_choice
from .handle import LaunchedRun, relaunch, submit_sweep

SuiteSource = str | Path | Mapping[str, Any]


def sweep(suite: SuiteSource | None = None, out: str | Path | None = None, *, device: str | None = None,
          filter: str | None = None, resume: bool = False, profile: bool = False, isolate: bool = False,
          case_timeout_s: float = 900.0, workers: int = 1, gpus: str | Sequence[int] | None = None,
          launcher: str = "none", launch: Mapping[str, Any] | None = None) -> pd.DataFrame | LaunchedRun:
    """Run a suite and return its results table; or, with a launcher, submit it and return the run dir's handle.

    suite: a shipped suite's name ("quick"), a path to a suite .toml, or a dict with the tables of a suite file
        ({"name": ..., "axes": {...}, "measure": {...}, "attention": [{"name": "dense"}, ...]}).
    out: the run dir to create (or, with resume=True, to continue). Default: results/<suite name>-<time>.
    device: "auto", "cuda" or "cpu" for every case (default: the suite's own).
    filter: only the cases matching these terms (the syntax of `rpbench sweep --filter`).
    profile: also write a profiler trace per timed case (after all cases are timed).
    isolate: every pass in a persistent worker process, killed after case_timeout_s (`rpbench sweep --isolate`).
    workers: that many isolated passes at a time (implies isolate; `rpbench sweep --workers`).
    gpus: one isolated worker per GPU, "all" or a list of torch's GPU numbers (`rpbench sweep --gpus`).
    launcher: "slurm" submits the cases as job arrays (`rpbench sweep --launcher slurm`: tasks of cuda cases ask
        for a GPU, tasks of CPU cases for none) and returns at once; "local" runs the same array as processes here.
    launch: the launcher's settings, the keys of a suite's [launcher] table over the suite's own ({"partition":
        "gpu", "time_min": 120, "tasks": 16, "sbatch": {"constraint": "h100"}}).

    The returned DataFrame has `attrs["run_dir"]`. With a launcher (or resume=True of a launched run: the tasks
    neither done, running nor queued are submitted again), the return is a `LaunchedRun`: `.status()`,
    `.wait()`, `.collect()` (the table so far) and `.resume()`.
    """
    if launcher not in LAUNCHERS:
        raise UsageError(f"launcher={launcher!r} is not one of {', '.join(LAUNCHERS)}")
    if resume and out is not None and launched.is_launched(out):
        was = launched.read_launch(out).get("launcher")
        if launcher not in ("none", was):
            raise UsageError(f"resume of {out}: it was launched with launcher={was!r}")
        return relaunch(Path(out), launch)
    if launch and launcher == "none":
        raise UsageError("launch=...: only with launcher='slurm' (or 'local')")
    if suite is None and not resume:
        raise UsageError("name the suite: a shipped suite's name, a .toml path or a dict")
    with tempfile.TemporaryDirectory(prefix="rpbench-suite-") as scratch:
        run_dir = Path(out) if out is not None else None
        if resume and run_dir is None:
            raise UsageError("resume=True needs out=<the run dir to continue>")
        path = _suite_file(suite if suite is not None else store.suite_copy(run_dir), Path(scratch))
        if resume:
            started = recorded_run(run_dir)
            filter = started.get("filter") if filter is None else filter
            device = started.get("device") if device is None else device
        if launcher == "none":
            loaded = load_suite(path, device_override=resolve_device_choice(device, "device="))
        else:
            if resume or workers != 1 or gpus is not None:
                raise UsageError(f"launcher={launcher!r} runs each task on a node of its own: leave out workers=, "
                                 f"gpus= and resume=")
            if device is not None and device not in DEVICES:
                raise UsageError(f"device={device!r} is not one of {', '.join(DEVICES)}")
            loaded, placement = load_for_launch(path, device, launcher)
        cases = filter_cases(loaded.cases, filter)
        if not cases:
            raise UsageError(f"filter {filter!r} matches none of the suite's {len(loaded.cases)} cases")
        run_dir = run_dir or store.default_run_dir(loaded.name)
        command = ["rpbench.sweep", str(suite if not isinstance(suite, Mapping) else loaded.name), str(run_dir)]
        if launcher != "none":
            if isolate and not 1 <= case_timeout_s <= 86400:
                raise UsageError(f"case_timeout_s={case_timeout_s!r}: must be between 1 and 86400 seconds")
            return submit_sweep(loaded, cases, run_dir, shlex.join(command + [f"launcher={launcher}"]), filter,
                                launcher, placement, launch, profile, case_timeout_s if isolate else None)
        record = RunRecord(suite=loaded.name, suite_text=loaded.text, timing=loaded.timing.to_json(), filter=filter,
                           device=device, command=shlex.join(command), device_names=device_names(cases))
        if gpus is not None and workers != 1:
            raise UsageError("give gpus= (one worker per GPU) or workers=, not both")
        slots = None if gpus is None else gpu_slots(gpus if isinstance(gpus, str) else ",".join(map(str, gpus)))
        if slots is not None and any(case.device != "cuda" for case in cases):
            raise UsageError("gpus=: every case must run on cuda (give device='cuda')")
        isolate = isolate or workers != 1 or slots is not None
        if isolate and not 1 <= case_timeout_s <= 86400:
            raise UsageError(f"case_timeout_s={case_timeout_s!r}: must be between 1 and 86400 seconds")
        if not isinstance(workers, int) or not 1 <= workers <= 64:
            raise UsageError(f"workers={workers!r}: must be an integer between 1 and 64")
        run_sweep(loaded, cases, run_dir, record, resume=resume, profile=profile,
                  isolate_timeout_s=case_timeout_s if isolate else None, workers=workers, gpus=slots)
    frame = store.load(run_dir)
    frame.attrs["run_dir"] = str(run_dir)
    return frame


def bench(attention: str | Sequence[str | Mapping[str, Any]], *, tokens: Sequence[int | str] | int | str | None = None,
          resolution: Sequence[int] | int | None = None, patch: int = 16, m: Sequence[int] | int | None = None,
          dim: int = 384, heads: int = 6, batch: int = 1, dtype: str = "float32", mode: str = "fwd",
          device: str = "auto", compile: str = "none", knobs: Mapping[str, Any] | None = None,
          measure: Mapping[str, Any] | None = None, out: str | Path | None = None) -> pd.DataFrame:
    """Measure mechanisms at the given sizes and return the results table (the columns of a sweep).

    attention: a registry name, a plugin reference ("pkg.module:Factory", "./file.py:Factory"), or a list of
        them; a dict entry is a suite's [[attention]] table ({"name": "window", "label": "w8", "window": 8}).
    tokens: N per case (an int: a square grid of N tokens; "HxW": that grid), one or a list; or resolution
        (pixels, with patch) instead.
    m: representatives/agents for the mechanisms that have an `m` knob, one or a list.
    knobs: extra knobs given to every mechanism named by a string (for dict entries, put them in the dict).
    measure: the suite's [measure] settings (warmup_ms, repeat, rounds, timer, ...).
    out: keep the run dir there; by default it lives in a temporary dir, removed once the table is read.
    """
    if (tokens is None) == (resolution is None):
        raise UsageError("give exactly one of tokens=... or resolution=...")
    entries = [attention] if isinstance(attention, (str, Mapping)) else list(attention)
    if not entries:
        raise UsageError("attention=[]: name at least one mechanism")
    tables = [dict(entry) if isinstance(entry, Mapping) else {"name": entry, **(knobs or {})} for entry in entries]
    axes: dict[str, Any] = {"dim": [dim], "heads": [heads], "batch": [batch], "dtype": [dtype], "mode": [mode],
                            "compile": [compile]}
    if tokens is not None:
        axes["tokens"] = _as_list(tokens)
    else:
        axes.update(resolution=_as_list(resolution), patch=patch)
    if m is not None:
        axes["m"] = _as_list(m)
    suite = {"name": "bench", "description": "rpbench.bench()", "axes": axes, "measure": dict(measure or {}),
             "attention": tables}
    if out is not None:
        return sweep(suite, out, device=device)
    with tempfile.TemporaryDirectory(prefix="rpbench-bench-") as scratch:
        frame = sweep(suite, Path(scratch) / "run", device=device)
    frame.attrs["run_dir"] = None
    return frame


def to_toml(data: Mapping[str, Any]) -> str:
    """A suite dict as TOML text: top-level values, then tables, then arrays of tables (a dict deeper down is an
    inline table)."""
    if not isinstance(data, Mapping):
        raise UsageError(f"a suite dict must be a mapping, got {type(data).__name__}")
    lines, tables, arrays = [], [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        elif isinstance(value, (list, tuple)) and value and all(isinstance(item, Mapping) for item in value):
            arrays.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, table in tables:
        lines += ["", f"[{_key(key)}]"] + [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    for key, items in arrays:
        for item in items:
            lines += ["", f"[[{_key(key)}]]"] + [f"{_key(k)} = {_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _key(key: Any) -> str:
    """A bare key where TOML allows one (name = ...), else a quoted one."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf") if not math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise UsageError(f"{value!r}: a suite value must be a string, number, boolean, list or table")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _suite_file(suite: SuiteSource, scratch: Path) -> Path:
    if isinstance(suite, Mapping):
        name = safe_name(str(suite.get("name", "suite")))
        path = scratch / f"{name}.toml"
        path.write_text(to_toml(suite), encoding="utf-8")
        return path
    return find_suite(str(suite))


__all__ = ["LaunchedRun", "bench", "sweep", "to_toml"]
