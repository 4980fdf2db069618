"""`rpbench profile` as tables: time per phase label, top kernels/ops, peak memory, how to open the traces."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..core.diagnostics import ProfileSummary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _pct(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "-"
    return f"{100.0 * part / whole:.1f}%"


def phase_table(summary: ProfileSummary) -> Table:
    """Time per phase label per call; the last rows are the call's total and what no label covers."""
    on_device = summary.call_device_ms is not None
    table = Table(title=f"time per phase label, ms per call (mean of {summary.active_steps} active step(s))")
    table.add_column("label")
    table.add_column("calls", justify="right")
    table.add_column("self CPU", justify="right")
    table.add_column("CPU total", justify="right")
    table.add_column("% of call CPU", justify="right")
    if on_device:
        table.add_column("device", justify="right")
        table.add_column("% of call device", justify="right")
    for phase in summary.phases:
        cells = [Text(phase.label), f"{phase.calls:g}", _ms(phase.self_cpu_ms), _ms(phase.cpu_ms),
                 _pct(phase.cpu_ms, summary.call_cpu_ms)]
        if on_device:
            cells += [_ms(phase.device_ms), _pct(phase.device_ms, summary.call_device_ms)]
        table.add_row(*cells)
    outside_cpu = max(summary.call_cpu_ms - summary.labelled_cpu_ms, 0.0)
    outside = ["outside labels", "", "", _ms(outside_cpu), _pct(outside_cpu, summary.call_cpu_ms)]
    total = ["call total", "1", "", _ms(summary.call_cpu_ms), "100.0%"]
    if on_device:
        outside_device = max(summary.call_device_ms - summary.labelled_device_ms, 0.0)
        outside += [_ms(outside_device), _pct(outside_device, summary.call_device_ms)]
        total += [_ms(summary.call_device_ms), "100.0%"]
    table.add_section()
    table.add_row(*outside, style="dim")
    table.add_row(*total, style="bold")
    return table


def ops_table(summary: ProfileSummary) -> Table:
    whole = summary.call_device_ms if summary.call_device_ms is not None else summary.call_cpu_ms
    time_kind = "device" if summary.call_device_ms is not None else "self CPU"
    table = Table(title=f"top {summary.ops_kind}s by {time_kind} time, per call")
    table.add_column(summary.ops_kind, overflow="fold")
    table.add_column("calls", justify="right")
    table.add_column(f"{time_kind} ms", justify="right")
    table.add_column("% of call", justify="right")
    for op in summary.top_ops:
        table.add_row(Text(op.name), f"{op.calls:g}", _ms(op.self_ms), _pct(op.self_ms, whole))
    return table


def memory_line(summary: ProfileSummary) -> str:
    where = "GPU" if summary.device == "cuda" else "CPU"
    if summary.peak_memory_mb is None:
        return f"peak {where} memory: the profiler recorded no allocations"
    return (f"peak {where} memory of one call: {summary.peak_memory_mb:.2f} MiB allocated above what was resident "
            "when it began (largest over the active calls)")


def how_to_open(summary: ProfileSummary) -> list[str]:
    lines = [f"Perfetto: open https://ui.perfetto.dev and load {summary.trace_path}"]
    if summary.tensorboard_dir is not None:
        lines.append(f"TensorBoard: tensorboard --logdir {summary.tensorboard_dir}  "
                     "(needs the optional extra: pip install 'rpbench[tensorboard]')")
    return lines
