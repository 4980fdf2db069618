"""`rpbench sweep`: a suite's cases measured one by one into a run dir, with a progress bar and a summary."""
from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from ..core.case import Case
from ..core.timing import TIMERS
from ..core.errors import UsageError
from ..core.measurement import Measurement
from .app import command, console, err_console, layout_width
from .options import DEVICE_HELP, TIMER_HELP, Device, Launcher, TimerName, plain, resolve_device_flag, with_width


@command()
@with_width
def sweep(
    suite: Optional[str] = typer.Argument(
        None, help="Shipped suite name (see `rpbench suites`) or a path to a suite .toml. Default: quick, "
        "or the suite.toml of the --resume dir."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Results dir to create. Default: results/<suite>-<time>."),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue this results dir: cases already written with a final status are skipped."
    ),
    device: Optional[Device] = typer.Option(None, "--device", help=DEVICE_HELP + "; overrides the suite's device axis."),
    filter_: Optional[str] = typer.Option(
        None, "--filter", help="Only the matching cases. Comma-separated terms, each a mechanism/label glob "
        "(`rp*`) or field=glob (`tokens=4096`, `dtype=bfloat16`, `mode=fwd`); terms on the same field are "
        "alternatives, terms on different fields must all match: `rp*,dense,tokens=1024|4096` = rpattention or "
        "dense, at 1024 or 4096 tokens."
    ),
    profile: bool = typer.Option(False, "--profile", help="Also write one profiler trace per timed case (traces/), "
                                 "linked from the row's trace column; traced after every case is timed, so profiling "
                                 "never slows a timed pass. A resume traces the cases a killed run left untraced."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html into the run dir at the end."),
    timer: Optional[TimerName] = typer.Option(None, "--timer", help=TIMER_HELP + "; overrides the suite's \\[measure] "
                                              "timer."),
    isolate: bool = typer.Option(False, "--isolate", help="Run every pass of every case out of this process, in a "
                                 "persistent worker process (replaced after a compiled or failed case, or one that "
                                 "changed a torch setting): a crash, a hang or a lost CUDA context becomes that "
                                 "case's status (crashed, timeout, error) and the sweep goes on."),
    case_timeout: float = typer.Option(900.0, "--case-timeout", help="With --isolate: seconds one pass may take "
                                       "before its process is killed and the case is a timeout (1 to 86400)."),
    workers: int = typer.Option(1, "--workers", help="Run this many isolated passes at a time on as many persistent "
                                "workers (implies --isolate; 1 to 64), the suite's CPU threads split between them; "
                                "this process stays the only writer of the run dir. Passes side by side on one CPU "
                                "disturb each other: their rows say so."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="Run one isolated worker per GPU: `all` or torch's "
                                       "numbers, comma-separated (`0,1,3`). Each worker sees only its GPU "
                                       "(CUDA_VISIBLE_DEVICES), takes one case at a time and keeps it for all its "
                                       "passes; the CPU threads are split between workers. Implies --isolate; every "
                                       "case must run on cuda."),
    launcher: Launcher = typer.Option("none", "--launcher", help="none: measure here. slurm: submit the cases as a "
                                      "SLURM job array through submitit and return at once: tasks of cuda cases ask "
                                      "for a GPU each, tasks of CPU cases for none (device auto means cuda on the "
                                      "nodes); follow with `rpbench status RUN_DIR`, merge with `rpbench collect "
                                      "RUN_DIR`. local: the same array as processes on this machine (submitit's local "
                                      "executor). The suite's \\[launcher] table gives defaults for the options "
                                      "below."),
    partition: Optional[str] = typer.Option(None, "--partition", help="With --launcher slurm: the partition."),
    account: Optional[str] = typer.Option(None, "--account", help="With --launcher slurm: the account charged."),
    time_min: Optional[int] = typer.Option(None, "--time", help="With --launcher: each task's time limit, minutes "
                                           "(default 60)."),
    tasks: Optional[int] = typer.Option(None, "--tasks", help="With --launcher: split the cases into this many "
                                        "array tasks, longest first (default: one task per case)."),
    max_running: Optional[int] = typer.Option(None, "--max-running", help="With --launcher slurm: at most this "
                                              "many tasks at once (sbatch --array=…%N)."),
    sbatch: Optional[List[str]] = typer.Option(None, "--sbatch", help="With --launcher slurm: another sbatch option "
                                               "as KEY=VALUE (`--sbatch constraint=h100 --sbatch qos=high`); "
                                               "repeatable."),
) -> None:
    """Measure every case of a suite; one row per case is appended to results.csv as soon as it finishes."""
    from ..results import resume as resume_rules
    from ..results import store
    from ..suites import filter_cases, find_suite, load_suite

    device, launcher = plain(device), plain(launcher)
    from . import cluster

    launch_flags = cluster.launch_flags(partition=partition, account=account, time_min=time_min, tasks=tasks,
                                        max_running=max_running, sbatch=sbatch)
    if resume is not None and cluster.relaunch_if_launched(resume, launcher, launch_flags):
        return
    if launcher == "none" and launch_flags:
        raise UsageError(f"{cluster.flag_names(launch_flags)}: only with --launcher slurm (or local)")
    if not 1 <= case_timeout <= 86400:  # nan fails both comparisons
        raise UsageError(f"--case-timeout {case_timeout:g}: must be between 1 and 86400 seconds")
    if not 1 <= workers <= 64:
        raise UsageError(f"--workers {workers}: must be between 1 and 64")
    if gpus is not None and workers != 1:
        raise UsageError("give --gpus (one worker per GPU) or --workers N, not both")
    from ..measure.isolated import gpu_slots

    slots = gpu_slots(gpus) if gpus is not None else None
    isolate = isolate or workers > 1 or slots is not None
    if resume is not None and out is not None:
        raise UsageError("give either --out or --resume, not both")
    if resume is not None:
        kept = store.suite_copy(resume)  # refuses a dir that is not a run dir, whatever suite is given
        started = resume_rules.recorded_run(resume)
        filter_ = started.get("filter") if filter_ is None else filter_  # a resume takes the run's own cases
        device = started.get("device") if device is None else device
        recorded_timing = started.get("timing") if isinstance(started.get("timing"), dict) else {}
        timer = recorded_timing.get("timer") if timer is None else timer
        source = suite or str(kept)
    else:
        source = suite or "quick"
    placement = None
    if launcher == "none":
        if isolate:  # the workers import torch while this process loads the suite
            from ..measure.isolated import prestart, slot_envs

            prestart(slot_envs(workers, slots))
        loaded = load_suite(find_suite(source), device_override=resolve_device_flag(device))
    else:  # the cases run on the nodes: each on the device the suite (or --device) gives it, auto meaning theirs
        from ..measure.launch import load_for_launch

        loaded, placement = load_for_launch(find_suite(source), device, launcher)
    if timer is not None:
        if plain(timer) not in TIMERS:
            raise UsageError(f"--timer {timer!r} is not one of {', '.join(TIMERS)}")
        loaded.timing = dataclasses.replace(loaded.timing, timer=plain(timer))
    cases = filter_cases(loaded.cases, filter_)
    if not cases:
        raise UsageError(f"--filter {filter_!r} matches none of the suite's {len(loaded.cases)} cases")
    on_cpu = sum(case.device != "cuda" for case in cases)
    if slots is not None and on_cpu:
        raise UsageError(f"--gpus: {on_cpu} of the {len(cases)} cases run on the CPU; give --device cuda, or use "
                         f"--workers N for CPU cases")
    run_dir = resume or out or store.default_run_dir(loaded.name)
    recorded = ["rpbench", "sweep", source, "--resume" if resume else "--out", str(run_dir)]
    recorded += [f"--device={device}"] * bool(device) + [f"--filter={filter_}"] * bool(filter_)
    recorded += [f"--timer={plain(timer)}"] * bool(timer)
    if launcher != "none":
        if gpus is not None or workers != 1 or resume is not None:
            raise UsageError("--launcher runs the cases as array tasks on the cluster's nodes: leave out --gpus, "
                             "--workers and --resume (resume a launched run with `rpbench sweep --resume RUN_DIR`)")
        recorded += [f"--launcher={launcher}"]
        cluster.launch_sweep(loaded, cases, run_dir, recorded, filter_, launcher, launch_flags, profile,
                             case_timeout if isolate else None, placement)
        return
    from ..measure.runner import device_names

    record = resume_rules.RunRecord(suite=loaded.name, suite_text=loaded.text, timing=loaded.timing.to_json(),
                                    filter=filter_, device=device, command=shlex.join(recorded),
                                    device_names=device_names(cases))
    _sweep_with_progress(loaded, cases, run_dir, record, resume is not None, profile, report,
                         case_timeout if isolate else None, workers, slots)


def _sweep_with_progress(loaded, cases: list[Case], run_dir: Path, record, resume: bool, profile: bool,
                         report: bool, isolate_timeout_s: float | None = None, workers: int = 1,
                         gpus: list[str] | None = None) -> None:
    from ..analysis import analyse_run
    from ..measure.sweep import run_sweep
    from ..results import store
    from ..views.terminal import drift_line
    from ..views.terminal_grid import flag_lines, grids_view

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=console,
    )
    rounds, timing = loaded.timing.rounds, loaded.timing
    extra = (f" (up to {timing.most_rounds} for a ±{timing.target_ci_pct:g} % interval)"
             if timing.adaptive else "")

    def on_ready() -> None:
        """Once the run dir is open (every refusal of it is one error line, before any of this): what will run, and
        the warnings about the suite and the machine."""
        console.print(Text.assemble((loaded.name, "bold"), f": {len(cases)} cases × {rounds} "
                                    f"round{'s' * (rounds != 1)}{extra} -> {run_dir}"
                                    + (f" (one worker on each of GPUs {', '.join(gpus)})" if gpus else "")))
        for line in loaded.warnings:
            err_console.print(Text(f"warning: {line}", style="yellow"), soft_wrap=True)
        busy = _busy_machine_warning(cases)
        if busy:
            err_console.print(Text(f"warning: {busy}", style="yellow"), soft_wrap=True)

    task = progress.add_task(_markup_free(loaded.name), total=len(cases) * rounds)

    def on_start(case: Case, taken: int, planned: int) -> None:
        progress.update(task, completed=taken - 1, total=planned,
                        description=f"{_markup_free(loaded.name)} [dim]{_markup_free(case.describe())}[/]")

    def on_measured(measured: Measurement) -> None:
        line = Text(f"  {measured.case.describe()}: ")
        if measured.timed:
            line.append(f"{measured.stats.median:.4g} ms")
            if measured.ci_pct is not None:
                line.append(f" ±{measured.ci_pct:.0f} %" + (f" ({len(measured.pooled)} rounds)"
                                                             if len(measured.pooled) > rounds else ""))
            if not measured.ok:
                line.append(f" {measured.status}: {measured.note or ''}", style="yellow")
            for flag in _row_flags(measured):
                line.append(f" {flag}", style="yellow")
        else:
            line.append(measured.status, style="yellow").append(f" {measured.note or ''}")
        progress.console.print(line)

    def on_trace(case: Case) -> None:
        progress.update(task, description=f"{_markup_free(loaded.name)} [dim]tracing {_markup_free(case.describe())}[/]")

    try:
        with progress:
            outcome = run_sweep(loaded, cases, run_dir, record, resume=resume, on_ready=on_ready, on_start=on_start,
                                on_measured=on_measured, profile=profile, on_trace=on_trace,
                                isolate_timeout_s=isolate_timeout_s, workers=workers, gpus=gpus)
            progress.update(task, completed=progress.tasks[0].total)
    except KeyboardInterrupt:
        err_console.print(Text(f"interrupted; rows written so far are kept. Continue with: rpbench sweep --resume "
                               f"{run_dir}"))
        raise typer.Exit(130)
    if outcome.skipped:
        console.print(f"resumed: {outcome.skipped} case(s) already done were skipped")
    run = store.load_run(run_dir)
    analysed = analyse_run(run.frame, run.env)  # no samples: the grid needs no bootstrap
    for part in [*grids_view(analysed, layout_width()), *flag_lines(analysed.summary)]:
        console.print(part)
    console.print(drift_line(outcome.drift))
    if analysed.frame["disturbed"].fillna(False).astype(bool).any():
        _name_the_busiest()
    if report:
        try:
            from ..views.html import write_html

            console.print(Text(f"report: {write_html(run_dir)}"))
        except Exception as err:  # the measurements are on disk; a rendering problem must not hide them
            err_console.print(Text(f"report.html not written: {type(err).__name__}: {err}"))
    console.print(Text(f"results: {run_dir / store.RESULTS}  (rpbench report {run_dir})"))


def _busy_machine_warning(cases: list[Case]) -> str | None:
    """The doctor's busy-machine sentence, when other processes already load the CPU (or the GPU) at the start."""
    from ..machine import interference

    gpu = None
    if any(case.device == "cuda" for case in cases):
        gpu = interference.gpu_others(0)
    return interference.busy_machine_sentence(interference.others_busy_cores(0.3), interference.logical_cores(), gpu)


def _name_the_busiest() -> None:
    from ..machine import interference

    busiest = interference.busiest_others()
    if busiest:
        console.print(Text(f"busiest other processes now: {interference.describe_busiest(busiest)}"))


def _row_flags(measured: Measurement) -> list[str]:
    """Short marks for the progress line of a case that will be flagged."""
    flags = []
    if measured.busy_machine:
        flags.append("disturbed")
    if measured.throttled:
        flags.append("throttled")
    if measured.unstable:
        flags.append(f"unstable ({measured.spread_pct:.0f} % between passes)")
    if measured.stats is not None and measured.stats.noisy:
        flags.append(f"noisy (IQR {measured.stats.iqr_pct:.0f} %)")
    return flags


def _markup_free(text: str) -> str:
    """A progress description is rendered as rich markup; escape what the user wrote (suite names, labels)."""
    return escape(text)
