"""The rpbench command line (Typer). Commands stay thin: they parse, call the harness or a view, and print."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    name="rpbench",
    help="Benchmark and profile efficient attention (RPAttention and baselines) for vision transformers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: the only way commands report bad input."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# ---- commands are registered below this line ----


def _load_suite_or_fail(source: str, device: str | None):
    from .cases import SuiteError, find_suite, load_suite

    try:
        return load_suite(find_suite(source), device_override=device)
    except SuiteError as err:
        fail(str(err))


DEVICE_HELP = "auto (GPU when torch sees one), cuda or cpu; overrides the suite's device axis"


@app.command()
def sweep(
    suite: Optional[str] = typer.Argument(
        None, help="Shipped suite name (see `rpbench suites`) or a path to a suite .toml. Default: quick, "
        "or the suite.toml of the --resume dir."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Results dir to create. Default: results/<suite>-<time>."),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue this results dir: cases already written with a final status are skipped."
    ),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    filter_: Optional[str] = typer.Option(
        None, "--filter", help="Only cases matching all comma-separated terms: a mechanism/label glob "
        "(`rp*`) or field=glob (`tokens=4096`, `dtype=bfloat16`, `mode=fwd`)."
    ),
    profile: bool = typer.Option(False, "--profile", help="Also write one profiler trace per case (traces/), linked "
                                 "from the row's trace column."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write report.html into the run dir at the end."),
) -> None:
    """Measure every case of a suite; one row per case is appended to results.csv as soon as it finishes."""
    import shlex

    from .cases import SuiteError
    from .store import SUITE
    from .sweep import default_run_dir, filter_cases

    if resume is not None and out is not None:
        fail("give either --out or --resume, not both")
    if resume is not None:
        if not (resume / SUITE).is_file():
            fail(f"--resume {resume}: not a results dir of rpbench (no {SUITE} inside)")
        source = suite or str(resume / SUITE)
    else:
        source = suite or "quick"
    resolved_device = _resolve_device_or_fail(device)
    loaded = _load_suite_or_fail(source, resolved_device)
    try:
        cases = filter_cases(loaded.cases, filter_)
    except SuiteError as err:
        fail(str(err))
    if not cases:
        fail(f"--filter {filter_!r} matches none of the suite's {len(loaded.cases)} cases")
    run_dir = resume or out or default_run_dir(loaded)
    if resume is None and (run_dir / "results.csv").exists():
        fail(f"{run_dir} already holds results; use --resume {run_dir} to continue it, or another --out")
    command = ["rpbench", "sweep", source, "--resume" if resume else "--out", str(run_dir)]
    command += [f"--device={device}"] * bool(device) + [f"--filter={filter_}"] * bool(filter_)
    _sweep_with_progress(loaded, cases, run_dir, shlex.join(command), profile, report)


def _resolve_device_or_fail(device: str | None) -> str | None:
    """auto/cuda/cpu -> the device to run on; one error line for anything else or a missing GPU."""
    if device is None:
        return None
    from .cases import DEVICES, resolve_device

    if device not in DEVICES:
        fail(f"--device: {device!r} is not one of {', '.join(DEVICES)}")
    resolved = resolve_device(device)
    if resolved == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: torch sees no CUDA GPU here (use --device cpu or auto)")
    return resolved


def _sweep_with_progress(loaded, cases, run_dir: Path, command: str, profile: bool, report: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .sweep import run_sweep
    from .summary import summary_table

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), console=console,
    )
    console.print(f"[bold]{loaded.name}[/]: {len(cases)} cases -> {run_dir}")
    task = progress.add_task(loaded.name, total=len(cases))

    def on_start(case, index):
        progress.update(task, description=f"{loaded.name} [dim]{case.describe()}[/]")

    def on_row(case, row):
        status = row["status"]
        detail = f"{row['latency_ms_median']:.4g} ms" if status == "ok" else f"[yellow]{status}[/] {row['notes'] or ''}"
        progress.console.print(f"  {case.describe()}: {detail}", highlight=False)
        progress.update(task, advance=1, description=loaded.name)

    try:
        with progress:
            outcome = run_sweep(loaded, cases, run_dir, command, on_start=on_start, on_row=on_row,
                                profile=profile)
            progress.update(task, completed=outcome.skipped + len(outcome.rows))
    except KeyboardInterrupt:
        err_console.print(f"interrupted; rows written so far are kept. Continue with: rpbench sweep --resume {run_dir}")
        raise typer.Exit(130)
    if outcome.skipped:
        console.print(f"resumed: {outcome.skipped} case(s) already done were skipped")
    console.print(summary_table(run_dir))
    if report:
        try:
            from .html import write_html

            console.print(f"report: {write_html(run_dir)}")
        except Exception as err:  # the measurements are on disk; a rendering problem must not hide them
            err_console.print(f"report.html not written: {type(err).__name__}: {err}")
    console.print(f"results: {run_dir / 'results.csv'}  (rpbench report {run_dir})")


# Case flags shared by `run` and `profile` (the same Option objects, so help stays identical).
ATTENTION_OPT = typer.Option(None, "--attention", help="Registry name (see `rpbench list`).")
TOKENS_OPT = typer.Option(None, "--tokens", help="N tokens on a square grid (N must be a square).")
GRID_OPT = typer.Option(None, "--grid", help="Token grid as HxW, e.g. 32x64.")
RESOLUTION_OPT = typer.Option(None, "--resolution", help="Image side in px (with --patch, or with --backbone).")
PATCH_OPT = typer.Option(16, "--patch", help="Patch size in px used with --resolution.")
DIM_OPT = typer.Option(384, "--dim", help="Channels C.")
HEADS_OPT = typer.Option(6, "--heads", help="Attention heads.")
M_OPT = typer.Option(None, "--m", help="Representatives/agents, for mechanisms that have them.")
KNOB_OPT = typer.Option([], "--knob", help="Extra mechanism knob as key=value (repeatable), e.g. --knob em_iters=2.")
BATCH_OPT = typer.Option(1, "--batch", help="Batch size.")
DTYPE_OPT = typer.Option("float32", "--dtype", help="float32, float16 or bfloat16.")
MODE_OPT = typer.Option("fwd", "--mode", help="fwd (forward, inference mode) or fwdbwd (forward + backward).")
CASE_DEVICE_OPT = typer.Option("auto", "--device", help="auto, cuda or cpu.")
BACKBONE_OPT = typer.Option(None, "--backbone", help="A whole backbone instead of one layer (see `rpbench list`); "
                            "needs --resolution.")
LAYOUT_OPT = typer.Option(None, "--layout", help="Backbone stage pattern, e.g. AAAB (A = --attention, B = the "
                          "backbone's own attention).")


def _case_or_fail(flags: dict):
    """The case named by the shared flags (a command's locals), or one error line and exit 2."""
    from dataclasses import fields

    from .one_case import CaseArgs, build_case

    case, error = build_case(CaseArgs(**{f.name: flags[f.name] for f in fields(CaseArgs)}))
    if error:
        fail(error)
    _resolve_device_or_fail(case.device)
    return case


@app.command()
def run(
    attention: Optional[str] = ATTENTION_OPT,
    tokens: Optional[int] = TOKENS_OPT,
    grid: Optional[str] = GRID_OPT,
    resolution: Optional[int] = RESOLUTION_OPT,
    patch: int = PATCH_OPT,
    dim: int = DIM_OPT,
    heads: int = HEADS_OPT,
    m: Optional[int] = M_OPT,
    knobs: list[str] = KNOB_OPT,
    batch: int = BATCH_OPT,
    dtype: str = DTYPE_OPT,
    mode: str = MODE_OPT,
    device: str = CASE_DEVICE_OPT,
    backbone: Optional[str] = BACKBONE_OPT,
    layout: Optional[str] = LAYOUT_OPT,
    warmup_ms: float = typer.Option(50.0, "--warmup-ms", help="Warm-up time before sampling, ms."),
    repeat_ms: float = typer.Option(200.0, "--repeat-ms", help="Time budget for timed samples, ms."),
    max_batch: bool = typer.Option(False, "--max-batch", help="Double the batch from 1 until CUDA runs out of "
                                   "memory; report the largest batch that fits and the peak img/s (CUDA only)."),
    batch_limit: int = typer.Option(4096, "--batch-limit", help="Largest batch --max-batch tries."),
    as_json: bool = typer.Option(False, "--json", help="Print the row (or the --max-batch search) as JSON."),
) -> None:
    """Measure one case and print its row."""
    import json

    from .cases import Measure
    from .runner import run_case
    from .summary import row_table

    case = _case_or_fail(locals())
    measure = Measure(warmup_ms=warmup_ms, repeat_ms=repeat_ms)
    if max_batch:
        _max_batch(case, measure, batch_limit, as_json)
        return
    row, _ = run_case(case, measure, suite="run")
    if as_json:
        typer.echo(json.dumps(row, default=str, indent=2))
    else:
        console.print(row_table(row))
    if row["status"] not in ("ok",):
        raise typer.Exit(1)


@app.command("profile")
def profile_command(
    attention: Optional[str] = ATTENTION_OPT,
    tokens: Optional[int] = TOKENS_OPT,
    grid: Optional[str] = GRID_OPT,
    resolution: Optional[int] = RESOLUTION_OPT,
    patch: int = PATCH_OPT,
    dim: int = DIM_OPT,
    heads: int = HEADS_OPT,
    m: Optional[int] = M_OPT,
    knobs: list[str] = KNOB_OPT,
    batch: int = BATCH_OPT,
    dtype: str = DTYPE_OPT,
    mode: str = MODE_OPT,
    device: str = CASE_DEVICE_OPT,
    backbone: Optional[str] = BACKBONE_OPT,
    layout: Optional[str] = LAYOUT_OPT,
    out: Optional[Path] = typer.Option(None, "--out", help="Dir for tb/ and trace.json.gz. Default: "
                                       "results/profile-<attention>-<time>."),
    wait: int = typer.Option(1, "--wait", help="Calls run before the profiler starts."),
    warmup: int = typer.Option(2, "--warmup", help="Calls profiled but discarded (warm caches, lazy init)."),
    active: int = typer.Option(3, "--active", help="Calls recorded; tables show the mean per call."),
) -> None:
    """Profile one case: TensorBoard run + gzipped Chrome/Perfetto trace, time per phase label, top ops, peak memory."""
    from datetime import datetime

    import attentions

    from .profile import Schedule, build_as_measured, how_to_open, memory_line, ops_table, phase_table, profile_workload
    from .runner import one_line

    case = _case_or_fail(locals())
    plan = Schedule(wait=wait, warmup=warmup, active=active)
    if plan.problem():
        fail(plan.problem())
    subject = case.label if case.backbone is None else f"{case.backbone}-{case.label}"
    out_dir = out or Path("results") / f"profile-{subject}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        work = build_as_measured(case)
    except attentions.UnsupportedConfig as err:
        fail(str(err))
    except Exception as err:  # e.g. out of memory while building
        fail(f"building the case failed: {one_line(err)}", code=1)
    console.print(f"[bold]profiling[/] {case.describe()}: {plan.wait} wait, {plan.warmup} warm-up, "
                  f"{plan.active} active call(s) -> {out_dir}")
    try:
        summary = profile_workload(work, case.device, out_dir / "trace.json.gz", tensorboard_dir=out_dir / "tb",
                                   plan=plan, worker=subject)
    except Exception as err:  # e.g. out of memory: one line, not a traceback
        fail(f"profiling failed: {one_line(err)}", code=1)
    console.print(phase_table(summary))
    console.print(ops_table(summary))
    console.print(memory_line(summary))
    for line in how_to_open(summary):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _max_batch(case, measure, limit: int, as_json: bool) -> None:
    import json

    from rich.table import Table

    from .max_batch import search_max_batch
    from .runner import run_case

    if case.device != "cuda":
        fail("--max-batch searches for the CUDA out-of-memory boundary; this case runs on cpu")
    search = search_max_batch(case, lambda c: run_case(c, measure, suite="run")[0], limit)
    best = search.best
    if as_json:
        payload = {"max_batch": search.max_batch, "oom_at": search.oom_at, "stopped": search.stopped,
                   "best": best, "rows": search.rows}
        typer.echo(json.dumps(payload, default=str, indent=2))
        return
    table = Table("batch", "status", "median ms", "img/s", "peak MiB", title=f"--max-batch: {case.describe()}")
    for row in search.rows:
        ok = row["status"] == "ok"
        table.add_row(str(row["batch"]), row["status"], f"{row['latency_ms_median']:.4g}" if ok else "-",
                      f"{row['throughput_img_s']:.4g}" if ok else "-",
                      f"{row['peak_mem_mb']:.4g}" if ok and row.get("peak_mem_mb") else "-")
    console.print(table)
    boundary = f"out of memory at batch {search.oom_at}" if search.oom_at else search.stopped
    console.print(f"largest batch that fits: {search.max_batch or 'none'} ({boundary})")
    if best:
        console.print(f"peak throughput: {best['throughput_img_s']:.4g} img/s at batch {best['batch']}")


@app.command("list")
def list_mechanisms() -> None:
    """The attention mechanisms (paper, cost, knobs with defaults and what they do, state-dict compatibility)
    and the backbones."""
    from .summary import backbones_table, knobs_table, mechanisms_table

    console.print(mechanisms_table())
    console.print(knobs_table())
    console.print(backbones_table())


@app.command()
def suites() -> None:
    """The shipped suites, one line each."""
    from .cases import SuiteError, load_suite, shipped_suites

    from rich.table import Table

    table = Table("suite", "cases", "description", title="shipped suites (rpbench sweep NAME)")
    for name, path in shipped_suites().items():
        try:
            loaded = load_suite(path, device_override="cpu")
            table.add_row(name, str(len(loaded.cases)), loaded.description)
        except SuiteError as err:
            table.add_row(name, "-", f"[red]{err}[/]")
    console.print(table)


@app.command("env")
def env_command(
    as_json: bool = typer.Option(False, "--json", help="Print the env.json dict as JSON instead of tables."),
) -> None:
    """Show what would produce the numbers: versions, CPU, GPUs (torch + NVML), TF32 settings, git commit."""
    import json
    import shlex

    from .environment import collect, render

    env = collect("rpbench " + shlex.join(sys.argv[1:]))
    if as_json:
        typer.echo(json.dumps(env, indent=2))
    else:
        render(env, console)


@app.command("doctor")
def doctor_command(
    as_json: bool = typer.Option(False, "--json", help="Print the checks and measured ceilings as JSON."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when torch sees one), cuda or cpu"),
    save: Optional[Path] = typer.Option(
        None, "--save", help="Also write the JSON report to this file (the ceilings are cached for sweeps either way)."
    ),
) -> None:
    """Check this machine is fit to benchmark on (pass/warn/fail with advice); exit 1 when a check fails."""
    import json

    from .cases import DEVICES
    from .doctor import render, run, save_ceilings

    if device not in DEVICES:
        fail(f"--device: {device!r} is not one of {', '.join(DEVICES)}")
    report = run(device)
    cached = save_ceilings(report.ceilings)
    payload = json.dumps(report.to_json(), indent=2)
    if save is not None:
        try:
            save.parent.mkdir(parents=True, exist_ok=True)
            save.write_text(payload + "\n", encoding="utf-8")
        except OSError as err:
            fail(f"--save {save}: cannot write ({err.strerror or err})")
    if as_json:
        typer.echo(payload)
    else:
        render(report, console)
        if cached:
            console.print(f"ceilings cached in {cached}: later sweeps on this device put them into env.json")
    if report.failed:
        raise typer.Exit(1)


METRIC_HELP = "latency (median ms), throughput (img/s) or memory (peak MiB)"


@app.command("report")
def report_command(
    run_dir: Path = typer.Argument(..., help="Results dir written by `rpbench sweep` (or its results.csv)."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Mechanism label to compare against. Default: dense, when the run has it."
    ),
    metric: str = typer.Option("latency", "--metric", help=f"Headline metric for speedups and crossovers: {METRIC_HELP}."),
) -> None:
    """Tables of every case (best per size highlighted), fitted scaling exponents and crossovers; refreshes report.html."""
    from .analysis import AnalysisError
    from .html import write_html
    from .report import build_report
    from .store import ResultsError

    try:
        built = build_report(run_dir, baseline, metric)
        page = write_html(run_dir, baseline, metric)
    except (ResultsError, AnalysisError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write report.html in {run_dir}: {err.strerror or err}")
    console.print(built.cases)
    console.print(built.scaling)
    console.print(f"report: {page}")


@app.command("export")
def export_command(
    run_dir: Path = typer.Argument(..., help="Results dir written by `rpbench sweep` (or its results.csv)."),
    format_: str = typer.Option(
        "csv", "--format", help="csv, parquet or json (every column); md or html (the readable case table)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write. Default: RUN_DIR/export.<format>."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Label for the speedup column of md/html. Default: dense, when the run has it."
    ),
) -> None:
    """Write a run's results in another format."""
    from .analysis import AnalysisError
    from .export import ExportError, export
    from .store import ResultsError

    try:
        path = export(run_dir, format_, out, baseline)
    except (ResultsError, AnalysisError, ExportError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"cannot write {out or run_dir}: {err.strerror or err}")
    console.print(f"wrote {path}")


@app.command("compare")
def compare_command(
    run_a: Path = typer.Argument(..., help="Reference results dir (A)."),
    run_b: Path = typer.Argument(..., help="Results dir to judge against A (B)."),
    threshold: float = typer.Option(
        5.0, "--threshold", help="Relative change (%) a case must exceed, beyond both runs' p20–p80 spread, to count."
    ),
    metric: str = typer.Option("latency", "--metric", help=f"What to compare: {METRIC_HELP}."),
    fail_on_regression: bool = typer.Option(
        False, "--fail-on-regression", help="Exit 1 when any case regressed (for CI gates)."
    ),
) -> None:
    """Match cases of two runs by case_id and flag regressions and improvements beyond noise."""
    from .analysis import AnalysisError, get_metric
    from .compare import compare_runs, comparison_table
    from .store import ResultsError, load

    try:
        comparison = compare_runs(load(run_a), load(run_b), get_metric(metric), threshold)
    except (ResultsError, AnalysisError) as err:
        fail(str(err))
    console.print(comparison_table(comparison, f"A={run_a}", f"B={run_b}"))
    console.print(comparison.summary_line(), highlight=False)
    if fail_on_regression and comparison.counts()["regression"]:
        raise typer.Exit(1)


def main() -> None:
    app()
