"""Commands on one case named by flags: `rpbench run` (measure it, or search its largest batch) and `rpbench profile`."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..core.case import SIZE_LIMITS, Case, CaseFlags, Timing, safe_name
from ..core.diagnostics import Schedule
from ..core.errors import ExecutionError, UsageError, one_line
from ..results.rows import row_of
from .app import command, console, err_console
from .options import TIMER_HELP, CompileMode, Precision, TimerName, plain, resolve_device_flag, with_case_flags, with_width


def _case(flags: CaseFlags) -> Case:
    from ..suites import case_from_flags

    case = case_from_flags(flags)
    resolve_device_flag(case.device)
    return case


@command()
@with_width
@with_case_flags
def run(
    flags: CaseFlags,
    warmup_ms: float = typer.Option(50.0, "--warmup-ms", help="Warm-up time before sampling, ms (0 to 60000)."),
    repeat_ms: float = typer.Option(200.0, "--repeat-ms", help="Time budget for timed samples, ms (0 to 600000)."),
    max_batch: bool = typer.Option(False, "--max-batch", help="Double the batch from 1 until CUDA runs out of "
                                   "memory; report the largest batch that fits and the peak img/s (CUDA only)."),
    batch_limit: int = typer.Option(4096, "--batch-limit", help="Largest batch --max-batch tries (1 to 65536)."),
    rounds: int = typer.Option(3, "--rounds", help="Timed passes, pooled into the row; their spread shows in "
                               "round_spread_pct (1 to 100)."),
    retries: int = typer.Option(2, "--retries", help="Passes taken again when other processes disturbed one "
                                "(0 to 20)."),
    compile_: CompileMode = typer.Option("none", "--compile", help="Time the torch.compile'd module in this mode "
                                         "(none, default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs); "
                                         "compile time, graphs, graph breaks and recompiles go in their own columns."),
    precision: Precision = typer.Option("cast", "--precision", help="cast (module and inputs in --dtype) or amp "
                                        "(float32 parameters and inputs under torch.autocast to --dtype)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Backbones: weights and images in "
                                       "channels_last memory format."),
    timer: TimerName = typer.Option("auto", "--timer", help=TIMER_HELP + "."),
    as_json: bool = typer.Option(False, "--json", help="Print the row (or the --max-batch search) as JSON."),
) -> None:
    """Measure one case and print its row (flags included: disturbed, unstable, noisy, inaccurate)."""
    from ..machine.reference import ReferenceClock
    from ..measure.rounds import measure_in_rounds
    from ..views.terminal import row_table

    timing = Timing(warmup_ms=warmup_ms, repeat_ms=repeat_ms, rounds=rounds, retries=retries, timer=plain(timer))
    for key, problem in timing.problems():
        raise UsageError(f"--{key.replace('_', '-')} {problem}")
    if not 1 <= batch_limit <= SIZE_LIMITS["batch"][1]:
        raise UsageError(f"--batch-limit {batch_limit}: must be between 1 and {SIZE_LIMITS['batch'][1]}")
    if channels_last and flags.backbone is None:
        raise UsageError("--channels-last applies to backbones (--backbone), whose inputs are images")
    case = replace(_case(flags), compile=plain(compile_), precision=plain(precision), channels_last=channels_last)
    if max_batch:
        _max_batch(case, timing, batch_limit, as_json)
        return
    measured: list = []
    clock = ReferenceClock(case.device, record=lambda timing: None)  # the row's drift, as in a sweep
    measure_in_rounds([case], timing, "run", measured.append, clock=clock)
    clock.close()
    row = row_of(measured[0])
    if as_json:
        typer.echo(json.dumps(row, default=str, indent=2))
    else:
        console.print(row_table(row))
    if row["status"] != "ok":
        raise typer.Exit(1)


def _max_batch(case: Case, timing: Timing, limit: int, as_json: bool) -> None:
    from ..measure.max_batch import search_max_batch
    from ..measure.runner import run_case
    from ..views.terminal import max_batch_table

    if case.device != "cuda":
        raise UsageError("--max-batch searches for the CUDA out-of-memory boundary; this case runs on cpu")
    search = search_max_batch(case, lambda c: run_case(c, timing, suite="run"), limit)
    rows = [row_of(measured) for measured in search.measurements]
    best = None if search.best is None else row_of(search.best)
    if as_json:
        payload = {"max_batch": search.max_batch, "oom_at": search.oom_at, "stopped": search.stopped,
                   "best": best, "rows": rows}
        typer.echo(json.dumps(payload, default=str, indent=2))
        return
    console.print(max_batch_table(rows, f"--max-batch: {case.describe()}"))
    boundary = f"out of memory at batch {search.oom_at}" if search.oom_at else search.stopped
    console.print(Text(f"largest batch that fits: {search.max_batch or 'none'} ({boundary})"))
    if best:
        console.print(f"peak throughput: {best['throughput_img_s']:.4g} img/s at batch {best['batch']}")


@command("profile")
@with_width
@with_case_flags
def profile_command(
    flags: CaseFlags,
    out: Optional[Path] = typer.Option(None, "--out", help="Dir for tb/ and trace.json.gz. Default: "
                                       "results/profile-<attention>-<time>."),
    wait: int = typer.Option(1, "--wait", help="Calls run before the profiler starts (0 to 1000)."),
    warmup: int = typer.Option(2, "--warmup", help="Calls profiled but discarded: warm caches, lazy init (0 to 1000)."),
    active: int = typer.Option(3, "--active", help="Calls recorded; tables show the mean per call (1 to 100)."),
) -> None:
    """Profile one case: TensorBoard run + gzipped Chrome/Perfetto trace, time per phase label, top ops, peak memory."""
    import attentions

    from ..measure.profile import build_as_measured, profile_workload
    from ..views.profile import how_to_open, memory_line, ops_table, phase_table

    from ..results.store import make_dir

    plan = Schedule(wait=wait, warmup=warmup, active=active)
    if plan.problem():
        raise UsageError(plan.problem())
    case = _case(flags)
    subject = case.label if case.backbone is None else f"{case.backbone}-{case.label}"
    out_dir = make_dir(out or Path("results") / f"profile-{safe_name(subject)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}",
                       "--out")
    try:
        work = build_as_measured(case)
    except attentions.UnsupportedConfig:
        raise
    except Exception as err:  # e.g. out of memory while building
        raise ExecutionError(f"building the case failed: {one_line(err)}") from None
    console.print(Text.assemble(("profiling", "bold"), f" {case.describe()}: {plan.wait} wait, {plan.warmup} "
                                f"warm-up, {plan.active} active call(s) -> {out_dir}"))
    try:
        summary = profile_workload(work, case.device, out_dir / "trace.json.gz", tensorboard_dir=out_dir / "tb",
                                   plan=plan, worker=subject)
    except Exception as err:  # e.g. out of memory: one line, not a traceback
        raise ExecutionError(f"profiling failed: {one_line(err)}") from None
    console.print(phase_table(summary))
    console.print(ops_table(summary))
    console.print(memory_line(summary))
    for note in summary.notes:
        err_console.print(Text(f"note: {note}", style="yellow"), soft_wrap=True)
    for line in how_to_open(summary):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
