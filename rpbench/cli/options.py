"""Option types and the one definition of the case flags that `run` and `profile` share.

Choices are str Enums built from the constants the harness validates against, so `--help` lists them and a wrong
value is refused by Typer before any command runs. (Enums rather than Literals: every Typer since 0.12 knows
them, and the GPU machines' Typer is not ours to choose.) Commands receive plain strings: `plain` unwraps them.
"""
from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import fields
from enum import Enum
from typing import Any, Callable, Optional

import typer

from ..core.case import COMPILE_MODES, DEVICES, DTYPE_ALIASES, DTYPES, MODES, PRECISIONS, CaseFlags
from ..core.launch import LAUNCHERS
from ..core.timing import TIMERS
from ..core.schema import EXPORT_FORMATS, EXPORT_TABLES, HISTORY_ORDERS, METRIC_COLUMNS



def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {value: value for value in values}, type=str)


Dtype = _choices("Dtype", DTYPES + tuple(DTYPE_ALIASES))
Mode = _choices("Mode", MODES)
Device = _choices("Device", DEVICES)
MetricName = _choices("MetricName", tuple(METRIC_COLUMNS))
CompileMode = _choices("CompileMode", COMPILE_MODES)
Precision = _choices("Precision", PRECISIONS)
TimerName = _choices("TimerName", TIMERS)
TIMER_HELP = ("CUDA timer: auto (a CUDA graph replay where capture works, else eager with a note), eager (CUDA "
              "events around each call) or cudagraph (capture must work); the CPU always uses perf_counter")
ExportFormat = _choices("ExportFormat", EXPORT_FORMATS)
ExportTable = _choices("ExportTable", EXPORT_TABLES)
ShiftRule = _choices("ShiftRule", ("auto", "remove", "keep"))
Launcher = _choices("Launcher", LAUNCHERS)
HistoryOrder = _choices("HistoryOrder", HISTORY_ORDERS)


def resolve_device_flag(device: str | None) -> str | None:
    """auto/cuda/cpu -> the device to run on (None: the suite decides); one error line for a missing GPU."""
    from ..suites.fields import resolve_device_choice

    return resolve_device_choice(device, "--device ")


def plain(value: Any) -> Any:
    """The string a choice stands for (None and other values as they are)."""
    return value.value if isinstance(value, Enum) else value

DEVICE_HELP = "auto (GPU when torch sees one), cuda or cpu"

# name -> (type, flag, help); the defaults are CaseFlags' own.
_CASE_FLAGS: dict[str, tuple[object, str, str]] = {
    "attention": (Optional[str], "--attention", "Registry name (see `rpbench list`: built-in and installed "
                  "plugins), or your own factory as pkg.module:Factory or path/to/file.py:Factory."),
    "tokens": (Optional[int], "--tokens", "N tokens on a square grid (N must be a square)."),
    "grid": (Optional[str], "--grid", "Token grid as HxW, e.g. 32x64."),
    "resolution": (Optional[int], "--resolution", "Image side in px (with --patch, or with --backbone)."),
    "patch": (int, "--patch", "Patch size in px used with --resolution."),
    "dim": (int, "--dim", "Channels C."),
    "heads": (int, "--heads", "Attention heads."),
    "m": (Optional[int], "--m", "Representatives/agents, for mechanisms that have them."),
    "knobs": (list[str], "--knob", "Extra mechanism knob as key=value (repeatable), e.g. --knob em_iters=2."),
    "batch": (int, "--batch", "Batch size."),
    "dtype": (Dtype, "--dtype", "Data type of the module and its inputs (fp32, fp16, bf16 and half are aliases)."),
    "mode": (Mode, "--mode", "fwd (forward, inference mode) or fwdbwd (forward + backward)."),
    "device": (Device, "--device", DEVICE_HELP + "."),
    "backbone": (Optional[str], "--backbone", "A whole backbone instead of one layer: deit-t, deit-s, deit-b, "
                 "swin-t, swin-s, pvt-t (see `rpbench list`) or timm:<model_name> (needs timm: pip install "
                 "'rpbench\\[timm]'); needs --resolution."),
    "layout": (Optional[str], "--layout", "Backbone stage pattern, e.g. AAAB (A = --attention, B = the backbone's "
               "own attention); one letter per block for one-stage models (DeiT, timm ViTs)."),
}


def _case_parameters() -> list[inspect.Parameter]:
    defaults = CaseFlags()
    parameters = []
    for spec in fields(CaseFlags):
        kind, flag, help_text = _CASE_FLAGS[spec.name]
        option = typer.Option(getattr(defaults, spec.name), flag, help=help_text)  # a choice's default is its string
        parameters.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=kind))
    return parameters


def with_case_flags(command: Callable) -> Callable:
    """Give `command` the shared case flags: they appear first in its --help and arrive as `flags: CaseFlags`.

    The command declares its own options as usual plus a `flags: CaseFlags` parameter, which is filled here.
    """
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command)
    own = [parameter.replace(annotation=hints[name], kind=inspect.Parameter.KEYWORD_ONLY)
           for name, parameter in signature.parameters.items() if name != "flags"]
    shared = _case_parameters()

    @functools.wraps(command)
    def wrapper(**values):
        flags = CaseFlags(**{parameter.name: plain(values.pop(parameter.name)) for parameter in shared})
        return command(flags=flags, **values)

    del wrapper.__wrapped__  # Typer must read the signature below, not the command's own
    wrapper.__signature__ = signature.replace(parameters=[*shared, *own])
    wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in [*shared, *own]}
    return wrapper


WIDTH_HELP = ("Fit tables to this many columns (40 to 10000); a grid wider than that folds into several. Default: "
              "the terminal's width; when the output is not a terminal (a file, a pipe, a CI log), tables at their "
              "natural width, so no cell is wrapped, and grids folded at 120 columns.")


def with_width(command: Callable) -> Callable:
    """Give `command` the `--width N` option (last in its --help); the consoles are fitted before it runs."""
    from .app import WIDTH_LIMITS, fit_width

    signature = inspect.signature(command)
    hints = typing.get_type_hints(command)
    own = [parameter.replace(annotation=hints[name], kind=inspect.Parameter.KEYWORD_ONLY)
           for name, parameter in signature.parameters.items()]
    width = inspect.Parameter("width", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[int],
                              default=typer.Option(None, "--width", min=WIDTH_LIMITS[0], max=WIDTH_LIMITS[1],
                                                   help=WIDTH_HELP))

    @functools.wraps(command)
    def wrapper(**values):
        fit_width(values.pop("width"))
        return command(**values)

    del wrapper.__wrapped__  # Typer must read the signature below, not the command's own
    wrapper.__signature__ = signature.replace(parameters=[*own, width])
    wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in [*own, width]}
    return wrapper
