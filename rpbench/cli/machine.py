"""Commands about the machine: `rpbench env` and `rpbench doctor`."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..core.errors import UsageError
from .app import command, console
from .options import DEVICE_HELP, Device, plain, with_width


@command("env")
@with_width
def env_command(
    as_json: bool = typer.Option(False, "--json", help="Print the env.json dict as JSON instead of tables."),
) -> None:
    """Show what would produce the numbers: versions, CPU, GPUs (torch + NVML), TF32 settings, git commit."""
    from ..machine.environment import collect
    from ..views.machine import render_environment

    env = collect("rpbench " + shlex.join(sys.argv[1:]))
    if as_json:
        typer.echo(json.dumps(env, indent=2))
    else:
        render_environment(env, console)


@command("doctor")
@with_width
def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print the checks and measured ceilings as JSON."),
    device: Device = typer.Option("auto", "--device", help=DEVICE_HELP + "."),
    save: Optional[Path] = typer.Option(
        None, "--save", help="Also write the JSON report to this file (the ceilings are cached for sweeps either way)."
    ),
) -> None:
    """Check this machine is fit to benchmark on (pass/warn/fail with advice); exit 1 when a check fails."""
    from ..machine import ceilings, doctor
    from ..views.machine import render_doctor

    if save is not None and (save.is_dir() or any(parent.is_file() for parent in save.parents)):
        raise UsageError(f"--save {save}: not a file path (it is a directory, or lies under a file)")
    report = doctor.run(plain(device))
    cached = ceilings.save(report.ceilings)
    payload = json.dumps(report.to_json(), indent=2)
    if save is not None:
        try:
            save.parent.mkdir(parents=True, exist_ok=True)
            save.write_text(payload + "\n", encoding="utf-8")
        except OSError as err:
            raise UsageError(f"--save {save}: cannot write ({err.strerror or err})") from None
    if as_json:
        typer.echo(payload)
    else:
        render_doctor(report, console)
        if cached:
            console.print(Text(f"ceilings cached in {cached}: later sweeps on this device put them into env.json"))
    if report.failed:
        raise typer.Exit(1)
