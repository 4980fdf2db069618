"""Hand-made results dirs written through the real RunWriter, so view tests need neither torch nor the sweep."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from rpbench.results.store import RunWriter

H100 = "NVIDIA H100 80GB HBM3"

# The keys environment.collect() writes that the views read.
DEFAULT_ENV = {
    "rpbench": "0.1.0",
    "python": "3.11.7",
    "torch": "2.13.0",
    "cuda": "12.8",
    "git_commit": "0123abcd",
    "git_dirty": False,
    "threads": 16,
    "tf32": {"float32_matmul_precision": "highest", "matmul_allow_tf32": False},
    "command": "rpbench sweep suites/layer.toml --out runs/fake",
}


def make_row(**fields: Any) -> dict[str, Any]:
    """A complete ok row from a few defining fields; latency percentiles spread ±5 % around the median."""
    row: dict[str, Any] = {
        "suite": "fake",
        "scope": "layer",
        "attention": "dense",
        "knobs": "{}",
        "batch": 8,
        "tokens": 196,
        "dim": 384,
        "heads": 6,
        "dtype": "bfloat16",
        "mode": "fwd",
        "device": "cuda",
        "device_name": H100,
        "status": "ok",
        "timer": "cuda_event",
        "latency_ms_median": 1.0,
    }
    row.update(fields)
    row.setdefault("label", row["attention"])
    if row["status"] == "ok":
        median = row["latency_ms_median"]
        row.setdefault("latency_ms_p20", median * 0.95)
        row.setdefault("latency_ms_p80", median * 1.05)
        row.setdefault("latency_ms_min", median * 0.9)
        row.setdefault("latency_ms_mean", median)
        row.setdefault("throughput_img_s", row["batch"] * 1000.0 / median)
        row.setdefault("n_samples", 3)
        row.setdefault("noisy", False)
        if "flops_counted" in row:
            row.setdefault("tflops_s", row["flops_counted"] / (median * 1e-3) / 1e12)
    else:
        for column in ("latency_ms_median",):
            row[column] = None
    defining = json.dumps({k: row.get(k) for k in ("label", "knobs", "tokens", "m", "dtype", "mode", "batch")})
    row.setdefault("case_id", hashlib.sha1(defining.encode()).hexdigest()[:12])
    return row


def write_run(run_dir: Path, rows: Iterable[Mapping[str, Any]], env: Mapping[str, Any] | None = None) -> Path:
    """Write rows (with three samples each for ok rows) plus env.json into run_dir."""
    writer = RunWriter(run_dir)
    for row in rows:
        samples = []
        if row.get("status") == "ok":
            samples = [row["latency_ms_p20"], row["latency_ms_median"], row["latency_ms_p80"]]
        writer.append_row(row, samples)
    writer.record_environment(dict(DEFAULT_ENV if env is None else env))
    return Path(run_dir)


# Two curves with a known crossover: dense ~ N², RPAttention ~ N (m = 64), on a 16 px patch grid.
SIDES = (14, 28, 56, 112)


def dense_latency(tokens: int) -> float:
    return 2e-6 * tokens**2


def rp_latency(tokens: int) -> float:
    return 1e-3 * tokens


def scaling_rows(slow_factor: float = 1.0, dense_oom_at: int | None = None) -> list[dict[str, Any]]:
    """dense and RPAttention over four sizes; dense is faster at N=196 and slower from N=784 on."""
    rows = []
    for side in SIDES:
        tokens = side * side
        resolution = side * 16
        common = dict(tokens=tokens, height=side, width=side, resolution=resolution, patch=16)
        if dense_oom_at is not None and tokens >= dense_oom_at:
            rows.append(make_row(attention="dense", status="oom", notes="CUDA out of memory", **common))
        else:
            rows.append(
                make_row(
                    attention="dense",
                    latency_ms_median=dense_latency(tokens),
                    peak_mem_mb=1e-4 * tokens**2,
                    flops_counted=int(4 * 8 * tokens**2 * 384),
                    **common,
                )
            )
        rows.append(
            make_row(
                attention="rpattention",
                m=64,
                knobs='{"m": 64}',
                latency_ms_median=rp_latency(tokens) * slow_factor,
                peak_mem_mb=0.05 * tokens,
                flops_counted=int(4 * 8 * tokens * 64 * 384),
                **common,
            )
        )
    return rows


LATENCY_FIELDS = ("latency_ms_median", "latency_ms_p20", "latency_ms_p80", "latency_ms_min", "latency_ms_mean")


def scaled(row: Mapping[str, Any], factor: float, **fields: Any) -> dict[str, Any]:
    """A row `factor` times slower (every latency figure scaled, throughput and TFLOP/s divided), other fields
    replaced by `fields`: the same case measured on another device or commit."""
    out = dict(row, **fields)
    if out.get("status") == "ok":
        for key in LATENCY_FIELDS:
            out[key] = row[key] * factor
        for key in ("throughput_img_s", "tflops_s"):
            if out.get(key) is not None:
                out[key] = row[key] / factor
    return out
