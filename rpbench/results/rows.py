"""A Measurement becomes a results row here and nowhere else: the case's columns, then everything measured, in the
order of `core.schema.COLUMNS` (a column with nothing to say is left out)."""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict
from typing import Any, Iterable, Sequence

from ..core.measurement import ClockWindow, Load, Measurement, Round
from ..core.schema import COLUMNS


def row_of(measured: Measurement) -> dict[str, Any]:
    """The results row of a Measurement: the case's columns, then everything measured (see core.schema)."""
    case, stats, memory, model, gpu = measured.case, measured.stats, measured.memory, measured.model, measured.gpu
    row: dict[str, Any] = {
        "case_id": case.case_id,
        "suite": measured.suite,
        "scope": case.scope,
        "attention": case.attention,
        "label": case.label,
        "knobs": json.dumps(case.knob_dict, sort_keys=True),
        "backbone": case.backbone,
        "layout": None if case.layout is None else str(case.layout),
        "batch": case.batch,
        "tokens": case.tokens,
        "height": case.height,
        "width": case.width,
        "resolution": case.resolution,
        "patch": case.patch,
        "dim": case.dim,
        "heads": case.heads,
        "m": case.m,
        "dtype": case.dtype,
        "mode": case.mode,
        "compile": case.compile,
        "precision": case.precision,
        "channels_last": case.channels_last,
        "device": case.device,
        "device_name": measured.device_name,
        "device_uuid": measured.device_uuid,
        "host": measured.host,
        "threads": measured.threads,
        "status": measured.status,
        "notes": measured.note,
        "timer": measured.timer,
        "rel_err": measured.rel_err,
        "params": measured.params,
        "flops_analytic": measured.flops_analytic,
        "flops_counted": measured.flops_counted,
        "sdpa_backend": measured.sdpa_backend,
        "started_at": measured.started_at,
        "elapsed_s": measured.elapsed_s,
    }
    row.update(measured.compiled)
    if measured.launch:
        row.update(measured.launch, launch_bound=measured.launch_bound)
    if measured.trace is not None:
        row["trace"] = measured.trace
    if measured.timing is not None:
        row["timing"] = measured.timing.to_json()
    if stats is not None:
        row.update(
            latency_ms_median=stats.median, latency_ms_p20=stats.p20, latency_ms_p80=stats.p80,
            latency_ms_min=stats.minimum, latency_ms_mean=stats.mean, iqr_pct=stats.iqr_pct, n_samples=stats.n,
            noisy=stats.noisy, throughput_img_s=measured.throughput_img_s, tokens_s=measured.tokens_s,
            tflops_s=measured.tflops_s,
        )
    if stats is not None and measured.latency_interval is not None:
        low, high = measured.latency_interval
        row.update(latency_ms_ci_low=low, latency_ms_ci_high=high, latency_ci_method=measured.estimate.method,
                   ci_pct=measured.ci_pct, target_met=measured.target_met)
    if measured.rounds and stats is not None:
        gpu_others = measured.load_peak("gpu_others")
        row.update(rounds=len(measured.pooled), round_spread_pct=measured.spread_pct, unstable=measured.unstable,
                   pass_sd_pct=measured.pass_sd_pct,
                   drift_pct=None if measured.drift is None else measured.drift.sd_pct,
                   drift_timings=None if measured.drift is None else measured.drift.timings,
                   others_busy_cores=measured.load_peak("others_busy_cores"), retries=measured.retries,
                   gpu_others=None if gpu_others is None else int(gpu_others),
                   disturbed=measured.busy_machine)
        row.update(_window_columns(measured.gpu_windows))
        if measured.gpu_windows:
            row["throttled"] = measured.throttled
    if memory is not None:
        row.update(peak_mem_mb=memory.allocated_mb, peak_reserved_mb=memory.reserved_mb)
    if model is not None:
        row.update(gmacs=model.gmacs, gflops=model.gflops, attention_share=model.attention_share)
    if gpu is not None:
        for when, reading in (("start", gpu.start), ("end", gpu.end)):
            row.update({f"sm_clock_{when}_mhz": reading.sm_clock_mhz, f"temp_{when}_c": reading.temp_c,
                        f"power_{when}_w": reading.power_w})
        if gpu.energy_j_per_iter is not None:
            row.update(energy_j_per_iter=gpu.energy_j_per_iter, energy_j_per_img=gpu.energy_j_per_iter / case.batch,
                       energy_window_s=gpu.energy_window_s)
    return {column: row[column] for column in COLUMNS if column in row}


def _window_columns(windows: Sequence[ClockWindow]) -> dict[str, Any]:
    """The GPU readings of a row's pooled timed windows, taken together."""
    if not windows:
        return {}
    clocks = [w.sm_clock_min_mhz for w in windows if w.sm_clock_min_mhz is not None]
    medians = [w.sm_clock_median_mhz for w in windows if w.sm_clock_median_mhz is not None]
    temps = [w.temp_max_c for w in windows if w.temp_max_c is not None]
    powers = [w.power_median_w for w in windows if w.power_median_w is not None]
    reasons = dict.fromkeys(reason for w in windows for reason in w.reasons)
    return {"sm_clock_min_mhz": min(clocks) if clocks else None,
            "sm_clock_median_mhz": statistics.median(medians) if medians else None,
            "temp_max_c": max(temps) if temps else None,
            "power_median_w": statistics.median(powers) if powers else None,
            "clock_reasons": " ".join(reasons) or None, "power_capped": any(w.power_capped for w in windows)}


def round_rows(measured: Measurement) -> list[dict[str, Any]]:
    """rounds.csv lines of a Measurement: every pass taken, pooled or not (see core.schema.ROUND_COLUMNS)."""
    pooled = set(map(id, measured.pooled))
    lines = []
    for index, taken in enumerate(measured.rounds):
        load = taken.load
        lines.append({
            "case_id": measured.case.case_id, "round": index, "retry": taken.retry, "pooled": id(taken) in pooled,
            "started_at": taken.started_at, "n_samples": len(taken.samples),
            "median_ms": taken.median if taken.samples else None,
            "others_busy_cores": None if load is None else load.others_busy_cores,
            "gpu_others": None if load is None else load.gpu_others,
            "window_s": None if load is None else load.window_s,
            "disturbed": taken.disturbed, "why": "; ".join(taken.reasons()) or None,
            "sm_clock_min_mhz": None if taken.gpu is None else taken.gpu.sm_clock_min_mhz,
            "clock_reasons": None if taken.gpu is None else " ".join(taken.gpu.reasons) or None,
            "host": taken.host, "device_uuid": taken.device_uuid, "sweep_round": taken.sweep_round,
            "reference_ms": taken.reference_ms,
        })
    return lines


def plain_sample_rows(case_id: str, samples: Iterable[float]) -> list[dict[str, Any]]:
    """samples.csv lines of samples that carry no pass (a ready-made row's, or a Measurement without rounds)."""
    return [{"case_id": case_id, "sample": i, "latency_ms": v} for i, v in enumerate(samples)]


def sample_rows(measured: Measurement) -> list[dict[str, Any]]:
    """samples.csv lines of a Measurement: the pooled samples, numbered across passes, each with its pass."""
    if not measured.rounds:
        return plain_sample_rows(measured.case.case_id, measured.samples)
    lines, index = [], 0
    pooled = set(map(id, measured.pooled))
    for number, taken in enumerate(measured.rounds):
        if id(taken) not in pooled:
            continue
        for value in taken.samples:
            lines.append({"case_id": measured.case.case_id, "sample": index, "latency_ms": value, "round": number})
            index += 1
    return lines


def pass_line(case_id: str, index: int, taken: Round) -> str:
    """One journal line (passes.jsonl) for a pass of a case not yet final."""
    return json.dumps({"case_id": case_id, "index": index, "round": asdict(taken)}, separators=(",", ":"))


def pass_from_line(line: str) -> tuple[str, int, Round] | None:
    """(case_id, index, Round) of a journal line, or None for a line that is torn, damaged or not ours."""
    try:
        record = json.loads(line)
        taken = record["round"]
        samples = tuple(float(v) for v in taken["samples"])
        if not samples or not all(math.isfinite(v) and v >= 0 for v in samples):
            return None
        load = None if taken.get("load") is None else Load(**taken["load"])
        if load is not None and not _plausible_load(load):
            return None
        found = Round(samples=samples, load=load, retry=bool(taken.get("retry")), started_at=taken.get("started_at"),
                      timer=str(taken.get("timer") or ""), gpu=_window(taken.get("gpu")),
                      host=_text_or_none(taken.get("host")), device_uuid=_text_or_none(taken.get("device_uuid")),
                      sweep_round=_count_or_none(taken.get("sweep_round")),
                      reference_ms=_positive_or_none(taken.get("reference_ms")))
        return str(record["case_id"]), int(record["index"]), found
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _window(saved: Any) -> ClockWindow | None:
    """A journalled ClockWindow back (its tuples come back from JSON as lists); a damaged one raises TypeError."""
    if saved is None:
        return None
    window = ClockWindow(**{**saved, "reasons": tuple(map(str, saved.get("reasons", ()))),
                            "violation_ms": tuple((str(k), float(v)) for k, v in saved.get("violation_ms", ()))})
    if not isinstance(window.readings, int) or not isinstance(window.window_s, (int, float)):
        raise TypeError("damaged GPU window")
    return window


def _plausible_load(load: Load) -> bool:
    def number(value: object, optional: bool = True) -> bool:
        if value is None:
            return optional
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0

    return (number(load.others_busy_cores) and number(load.window_s, False) and number(load.gpu_others)
            and isinstance(load.cores, int) and isinstance(load.own_threads, int))


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _count_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _positive_or_none(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else None
