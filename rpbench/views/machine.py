"""`rpbench env` and `rpbench doctor` as tables: an environment dict (env.json) and a DoctorReport."""
from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..core.diagnostics import CHECK_STATUSES, DoctorReport

STATUS_TEXT = {"pass": Text("PASS", style="green"), "warn": Text("WARN", style="yellow"),
               "fail": Text("FAIL", style="bold red")}


def gpu_note(env: Mapping[str, Any]) -> str | None:
    """The one line explaining missing GPU information, or None when torch sees GPUs and NVML works."""
    nvml = env["nvml"]
    if not env["gpus"]:
        build = "CPU build" if env["cuda"] is None else f"CUDA {env['cuda']} build; no driver or none visible"
        seen = f"; NVML sees {nvml['device_count']} GPU(s)" if nvml["device_count"] else ""
        return f"no CUDA GPU visible to torch ({build}){seen}"
    if not nvml["available"]:
        return f"NVML unavailable: {nvml['reason']} (no clocks, power, temperature or energy)"
    return None


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _key_value_table(title: str, rows: Mapping[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows.items():
        table.add_row(Text(key), Text(_show(value)))
    return table


def render_environment(env: Mapping[str, Any], console: Console) -> None:
    """The fingerprint as rich tables, with at most one line about missing GPU information."""
    git = env["git_commit"] and env["git_commit"][:12] + (" (dirty)" if env["git_dirty"] else "")
    software = {key: env[key] for key in ("rpbench", "python", "torch", "cuda", "cudnn")}
    software |= {name: version for name, version in env["packages"].items() if version is not None}
    software |= {"platform": env["platform"], "host": env["hostname"], "git": git, "command": env["command"]}
    console.print(_key_value_table("Software", software))
    cpu = dict(env["cpu"]) | {"torch threads": env["threads"], "interop threads": env["interop_threads"]}
    console.print(_key_value_table("CPU", cpu))
    console.print(_key_value_table("Numerics", env["tf32"]))
    if env["gpus"]:
        table = Table(title="GPUs", title_justify="left")
        table.add_column("field", style="bold")
        for gpu in env["gpus"]:
            table.add_column(f"cuda:{gpu['index']}", overflow="fold")
        for field in dict.fromkeys(key for gpu in env["gpus"] for key in gpu if key != "index"):
            table.add_row(Text(field), *(Text(_show(gpu.get(field))) for gpu in env["gpus"]))
        console.print(table)
    note = gpu_note(env)
    if note:
        console.print(Text(note, style="yellow"), soft_wrap=True)


def render_doctor(report: DoctorReport, console: Console) -> None:
    """One line per check (status, name, what was seen, advice) and the verdict."""
    table = Table(title=f"rpbench doctor ({report.device or 'no device'})", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("detail", overflow="fold")
    table.add_column("advice", overflow="fold")
    for check in report.checks:
        table.add_row(STATUS_TEXT[check.status], Text(check.name), Text(check.detail), Text(check.advice))
    console.print(table)
    counts = {status: sum(check.status == status for check in report.checks) for status in CHECK_STATUSES}
    verdict = Text("not fit to benchmark", style="bold red") if report.failed else Text("fit to benchmark", style="green")
    console.print(Text(f"{counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail: ").append_text(verdict))
