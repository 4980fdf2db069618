"""The numbers behind every view: scaling exponents, crossovers, speedups and hardware efficiency.

Pure pandas/numpy (no torch, no scipy) so reports open anywhere a results dir can be copied to.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

DEFAULT_BASELINE = "dense"

# Columns that place a case on a size axis; never part of a curve's identity.
SIZE_KEYS = ("tokens", "height", "width", "resolution", "patch")
# Settings shared by the curves that may be compared with each other (a mechanism vs its baseline).
CONTEXT_KEYS = ("scope", "backbone", "dtype", "mode", "dim", "heads", "batch", "device", "device_name", "threads")
# What distinguishes one curve from another inside a context.
VARIANT_KEYS = ("mechanism", "attention", "layout", "knobs", "m")
# Context settings that get their own facet in plots instead of a longer line name.
FACET_KEYS = ("dtype", "mode")

SCALING_QUANTITIES = {"latency": "latency_ms_median", "memory": "peak_mem_mb", "flops": "flops"}


class AnalysisError(Exception):
    """Bad analysis input (unknown metric, baseline not in the run); the message is one line for the user."""


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """A headline quantity: which column, which direction is better, and its p20–p80 spread."""

    name: str
    column: str
    label: str
    unit: str
    higher_is_better: bool

    def band(self, frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Low and high ends of the spread, derived from the latency percentiles where the metric has one."""
        value = frame[self.column].astype("Float64")
        median = frame["latency_ms_median"].astype("Float64")
        if self.name == "latency":
            return frame["latency_ms_p20"].astype("Float64"), frame["latency_ms_p80"].astype("Float64")
        if self.name == "throughput":
            # Throughput is work / latency, so its slow end comes from p80 and its fast end from p20.
            return value * median / frame["latency_ms_p80"], value * median / frame["latency_ms_p20"]
        return value, value


METRICS = {
    "latency": Metric("latency", "latency_ms_median", "latency", "ms", higher_is_better=False),
    "throughput": Metric("throughput", "throughput_img_s", "throughput", "img/s", higher_is_better=True),
    "memory": Metric("memory", "peak_mem_mb", "peak memory", "MiB", higher_is_better=False),
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise AnalysisError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)}") from None


# ---------------------------------------------------------------- preparing a results table


def _key(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.Series:
    parts = [frame[col].astype("string").fillna("") for col in columns]
    joined = parts[0]
    for part in parts[1:]:
        joined = joined + "\x1f" + part
    return joined.astype(str)


def _varying(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [col for col in columns if frame[col].astype("string").fillna("").nunique() > 1]


def _describe(row: pd.Series, columns: list[str]) -> str:
    return " · ".join(f"{col}={'' if pd.isna(row[col]) else row[col]}" for col in columns)


def _series_names(frame: pd.DataFrame) -> pd.Series:
    """The mechanism label, plus whichever variant fields differ between rows sharing that label."""
    names = frame["mechanism"].astype(str).copy()
    for mechanism, rows in frame.groupby("mechanism", sort=False):
        extra = _varying(rows, ("attention", "layout", "m"))
        # Knobs are named only when they tell apart rows the other fields do not (m usually is a knob).
        groups = [same for _, same in rows.groupby(_key(rows, tuple(extra)))] if extra else [rows]
        if any(_varying(same, ("knobs",)) for same in groups):
            extra.append("knobs")
        if extra:
            names.loc[rows.index] = [f"{mechanism} ({_describe(row, extra)})" for _, row in rows.iterrows()]
    return names


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the derived columns every view relies on: mechanism, series, context, flops, ok and the curve keys."""
    out = frame.copy()
    out["mechanism"] = out["label"].fillna(out["attention"]).fillna("?").astype(str)
    out["flops"] = out["flops_counted"].fillna(out["flops_analytic"]).astype("Float64")
    out["ok"] = (out["status"] == "ok").fillna(False).astype(bool)
    out["_context"] = _key(out, CONTEXT_KEYS)
    out["_variant"] = _key(out, VARIANT_KEYS)
    out["_size"] = _key(out, SIZE_KEYS)
    out["series"] = _series_names(out)
    varying = _varying(out, CONTEXT_KEYS)
    out["context"] = [_describe(row, varying) for _, row in out.iterrows()] if varying else ""
    facets = [col for col in varying if col in FACET_KEYS]
    others = [col for col in varying if col not in FACET_KEYS]
    out["facet"] = [_describe(row, facets) for _, row in out.iterrows()] if facets else ""
    out["setting"] = [_describe(row, others) for _, row in out.iterrows()] if others else ""
    out["line"] = [f"{s} · {o}" if o else s for s, o in zip(out["series"], out["setting"])]
    return out


def resolve_baseline(frame: pd.DataFrame, requested: str | None) -> str | None:
    """The baseline label to compare against: the requested one (which must exist), else dense when present."""
    labels = sorted(set(frame["mechanism"]))
    if requested is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in labels else None
    if requested not in labels:
        raise AnalysisError(f"baseline {requested!r} is not in this run; its mechanisms are: {', '.join(labels)}")
    return requested


# ---------------------------------------------------------------- Student t quantile


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with an integer df, exact via the finite series of Abramowitz & Stegun 26.7.3–4."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    theta = math.atan2(abs(t), math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        total, term = 0.0, 1.0
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * j) / (2 * j + 1)
        inside = (2 / math.pi) * (theta + math.sin(theta) * math.cos(theta) * total)  # total = 0 for df = 1
    else:
        total, term = 0.0, 1.0
        for j in range(1, df // 2 + 1):
            total += term
            term *= cos2 * (2 * j - 1) / (2 * j)
        inside = math.sin(theta) * total
    return 0.5 + math.copysign(inside / 2, t)


def student_t_quantile(p: float, df: int) -> float:
    """Inverse of student_t_cdf by bisection (the CDF is monotone, so this converges to machine precision)."""
    if not 0 < p < 1:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1 - p, df)
    high = 1.0
    while student_t_cdf(high, df) < p:
        high *= 2
    low = 0.0
    for _ in range(200):
        mid = (low + high) / 2
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return (low + high) / 2


# ---------------------------------------------------------------- scaling exponents


@dataclass(frozen=True)
class PowerFit:
    """y ≈ exp(intercept) · N^exponent, with a 95 % confidence interval on the exponent."""

    exponent: float
    ci_low: float
    ci_high: float
    intercept: float
    r2: float
    n_points: int


def fit_power_law(sizes: Any, values: Any, confidence: float = 0.95) -> PowerFit:
    """Least squares of log(y) on log(N); needs >= 3 distinct N so the interval has a degree of freedom."""
    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.asarray(values, dtype=float))
    if len(np.unique(x)) < 3:
        raise ValueError("a power-law fit needs at least 3 distinct sizes")
    n = len(x)
    x_mean, y_mean = x.mean(), y.mean()
    sxx = float(((x - x_mean) ** 2).sum())
    slope = float(((x - x_mean) * (y - y_mean)).sum() / sxx)
    intercept = float(y_mean - slope * x_mean)
    residuals = y - (intercept + slope * x)
    ssr = float((residuals**2).sum())
    sst = float(((y - y_mean) ** 2).sum())
    r2 = 1.0 - ssr / sst if sst > 0 else 1.0
    half = student_t_quantile(0.5 + confidence / 2, n - 2) * math.sqrt(ssr / (n - 2) / sxx)
    return PowerFit(slope, slope - half, slope + half, intercept, r2, n)


def scaling_exponents(frame: pd.DataFrame) -> pd.DataFrame:
    """Fitted exponent of latency, peak memory and FLOPs vs N for every curve with >= 3 measured sizes."""
    records = []
    ok = frame[frame["ok"]]
    for (_, _), rows in ok.groupby(["_context", "_variant"], sort=False):
        first = rows.iloc[0]
        for quantity, column in SCALING_QUANTITIES.items():
            values = rows[column].astype("Float64")
            usable = rows[values.notna() & (values > 0) & rows["tokens"].notna() & (rows["tokens"] > 0)]
            if usable["tokens"].nunique() < 3:
                continue
            fit = fit_power_law(usable["tokens"].astype(float), usable[column].astype(float))
            records.append(
                {
                    "context": first["context"],
                    "series": first["series"],
                    "line": first["line"],
                    "_context": first["_context"],
                    "_variant": first["_variant"],
                    "quantity": quantity,
                    "exponent": fit.exponent,
                    "ci_low": fit.ci_low,
                    "ci_high": fit.ci_high,
                    "r2": fit.r2,
                    "n_points": fit.n_points,
                }
            )
    columns = ["context", "series", "line", "_context", "_variant", "quantity", "exponent", "ci_low", "ci_high", "r2"]
    return pd.DataFrame.from_records(records, columns=[*columns, "n_points"])


# ---------------------------------------------------------------- crossovers


@dataclass(frozen=True)
class Crossover:
    """Where a mechanism starts beating the baseline. status: crossover | always | never | mixed | insufficient."""

    status: str
    tokens: float | None = None


def find_crossover(
    base_sizes: Any, base_values: Any, mech_sizes: Any, mech_values: Any, higher_is_better: bool = False
) -> Crossover:
    """Smallest N from which the mechanism stays better, interpolating both curves linearly in log-log space.

    Both curves are compared on the union of their sizes inside the range they share; "mixed" means the
    mechanism is better somewhere but not at the largest shared N, so no single crossover describes it.
    """
    base = pd.Series(np.asarray(base_values, float)).groupby(np.asarray(base_sizes, float)).median()
    mech = pd.Series(np.asarray(mech_values, float)).groupby(np.asarray(mech_sizes, float)).median()
    low, high = max(base.index.min(), mech.index.min()), min(base.index.max(), mech.index.max())
    if not low < high:
        return Crossover("insufficient")
    grid = np.log(np.array(sorted(n for n in set(base.index) | set(mech.index) if low <= n <= high)))
    log_base = np.interp(grid, np.log(base.index.to_numpy()), np.log(base.to_numpy()))
    log_mech = np.interp(grid, np.log(mech.index.to_numpy()), np.log(mech.to_numpy()))
    gap = (log_base - log_mech) if higher_is_better else (log_mech - log_base)  # < 0: mechanism better
    better = gap < 0
    if better.all():
        return Crossover("always")
    if not better.any():
        return Crossover("never")
    if not better[-1]:
        return Crossover("mixed")
    last_worse = int(np.flatnonzero(~better)[-1])
    fraction = gap[last_worse] / (gap[last_worse] - gap[last_worse + 1])
    log_n = grid[last_worse] + fraction * (grid[last_worse + 1] - grid[last_worse])
    return Crossover("crossover", float(math.exp(log_n)))


def _resolution_at(rows: pd.DataFrame, tokens: float) -> float | None:
    """Image side matching a token count, interpolated log-log between the measured (N, resolution) pairs."""
    known = rows[rows["resolution"].notna() & rows["tokens"].notna()]
    pairs = known.groupby(known["tokens"].astype(float))["resolution"].median().astype(float)
    if len(pairs) < 2 or not pairs.index.min() <= tokens <= pairs.index.max():
        return None
    return float(np.exp(np.interp(np.log(tokens), np.log(pairs.index.to_numpy()), np.log(pairs.to_numpy()))))


def crossovers(frame: pd.DataFrame, baseline: str, metric: Metric) -> pd.DataFrame:
    """For every non-baseline curve, where it overtakes each baseline curve of the same context."""
    records = []
    ok = frame[frame["ok"] & frame[metric.column].notna() & (frame[metric.column] > 0) & frame["tokens"].notna()]
    is_base = ok["mechanism"] == baseline
    for (context, variant), mech in ok[~is_base].groupby(["_context", "_variant"], sort=False):
        if mech["tokens"].nunique() < 2:
            continue  # a single size is a point, not a curve: nothing to cross
        for _, base in ok[is_base & (ok["_context"] == context)].groupby("_variant", sort=False):
            found = find_crossover(
                base["tokens"].astype(float),
                base[metric.column].astype(float),
                mech["tokens"].astype(float),
                mech[metric.column].astype(float),
                metric.higher_is_better,
            )
            resolution = None
            if found.tokens is not None:
                resolution = _resolution_at(pd.concat([mech, base]), found.tokens)
            first = mech.iloc[0]
            records.append(
                {
                    "context": first["context"],
                    "series": first["series"],
                    "line": first["line"],
                    "_context": context,
                    "_variant": variant,
                    "baseline": base.iloc[0]["series"],
                    "metric": metric.name,
                    "status": found.status,
                    "tokens": found.tokens,
                    "resolution": resolution,
                }
            )
    columns = ["context", "series", "line", "_context", "_variant", "baseline", "metric", "status", "tokens"]
    return pd.DataFrame.from_records(records, columns=[*columns, "resolution"])


def describe_crossover(status: str, tokens: float | None, resolution: float | None, metric: Metric) -> str:
    """Human wording of a crossover row."""
    verb = {"latency": "faster", "throughput": "higher throughput", "memory": "less memory"}[metric.name]
    if status == "crossover" and tokens is not None:
        where = f"N ≈ {tokens:,.0f}"
        if resolution is not None:
            where += f" (≈ {resolution:,.0f} px)"
        return f"{verb} from {where}"
    return {
        "always": f"always {verb} in range",
        "never": f"never {verb} in range",
        "mixed": f"{verb} only at some N, not at the largest",
        "insufficient": "too few shared sizes",
    }[status]


# ---------------------------------------------------------------- speedups


def speedups(frame: pd.DataFrame, baseline: str, metric: Metric) -> pd.DataFrame:
    """Per case, how many times better than the baseline at the same context and size (> 1: better).

    The interval pairs the ends of both p20–p80 spreads in the least favourable way, e.g. for latency
    baseline p20 / mechanism p80 up to baseline p80 / mechanism p20.
    """
    value = frame[metric.column].astype("Float64")
    low, high = metric.band(frame)
    parts = pd.DataFrame({"value": value, "low": low, "high": high, "_context": frame["_context"], "_size": frame["_size"]})
    usable = frame["ok"] & value.notna() & (value > 0)
    reference = (
        parts[usable & (frame["mechanism"] == baseline)]
        .groupby(["_context", "_size"])[["value", "low", "high"]]
        .median()
    )
    joined = parts.join(reference.add_suffix("_base"), on=["_context", "_size"])
    if metric.higher_is_better:
        ratio, lo, hi = (
            joined["value"] / joined["value_base"],
            joined["low"] / joined["high_base"],
            joined["high"] / joined["low_base"],
        )
    else:
        ratio, lo, hi = (
            joined["value_base"] / joined["value"],
            joined["low_base"] / joined["high"],
            joined["high_base"] / joined["low"],
        )
    result = pd.DataFrame({"speedup": ratio, "speedup_low": lo, "speedup_high": hi}, index=frame.index)
    result = result.astype("Float64")
    result.loc[~usable] = pd.NA
    return result


# ---------------------------------------------------------------- hardware peaks

# Dense (no 2:4 sparsity) peak TFLOP/s per device and dtype, from NVIDIA's own documents:
#   H100 SXM / PCIe / NVL: "NVIDIA H100 Tensor Core GPU" datasheet (tensor figures there are quoted with sparsity;
#     the datasheet footnote says dense is half).
#   H200 / H200 NVL: "NVIDIA H200 Tensor Core GPU" datasheet (same sparsity footnote).
#   A100 SXM and PCIe: "NVIDIA A100 Tensor Core GPU" datasheet (both form factors list the same figures).
#   A10, L4, L40S: the respective NVIDIA product datasheets (sparsity figures halved).
#   RTX 4090: "NVIDIA Ada GPU Architecture" whitepaper, appendix table; RTX 3090: "NVIDIA Ampere GA102 GPU
#     Architecture" whitepaper, appendix table. GeForce tensor rates are the FP32-accumulate ones, which is
#     what PyTorch's fp16/bf16 GEMMs use.
# fp32 is the non-tensor CUDA-core rate (PyTorch's default float32 matmul precision "highest"); tf32 the tensor rate.
# A key maps to None where a variant with the same prefix has different, unlisted figures: better unknown than wrong.
PEAK_TFLOPS: dict[str, dict[str, float] | None] = {
    "H100 SXM": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},  # how the SXM5 part names itself
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "H200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2},
    "RTX 4090 D": None,
    "RTX 3090": {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0},
    "RTX 3090 Ti": None,
}

_DTYPE_PEAK_KEY = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def _mentions(name: str, key: str) -> bool:
    """key appears in name as whole words (so "L4" does not match "L40S", nor "H200" match "GH200")."""
    pattern = r"(?<![A-Za-z0-9])" + r"\s+".join(map(re.escape, key.split())) + r"(?![A-Za-z0-9])"
    return re.search(pattern, name, flags=re.IGNORECASE) is not None


def peak_tflops(device_name: str | None, dtype: str | None, float32_mode: str | None = "fp32") -> float | None:
    """Dense datasheet peak for a device and dtype, or None ("unknown") when not in the table: never a guess.

    The longest matching key wins ("H100 NVL" over a shorter key). MIG slices are unknown: they have a
    fraction of the SMs. float32_mode says which float32 rate applies ("fp32" or "tf32"; None: unknown).
    """
    if not isinstance(device_name, str) or not isinstance(dtype, str) or _mentions(device_name, "MIG"):
        return None
    matches = [key for key in PEAK_TFLOPS if _mentions(device_name, key)]
    if not matches:
        return None
    figures = PEAK_TFLOPS[max(matches, key=len)]
    key = float32_mode if dtype == "float32" else _DTYPE_PEAK_KEY.get(dtype)
    return figures.get(key) if figures is not None and key is not None else None


def float32_mode(env: Mapping[str, Any]) -> str | None:
    """Which float32 peak applies, from the TF32 settings env.json records (environment.collect's "tf32").

    "highest" precision without TF32 -> the CUDA-core fp32 rate; "high" or TF32 allowed -> the tf32 tensor rate;
    "medium" (may use bf16 internally) or nothing recorded -> None, so no percentage is claimed.
    """
    settings = env.get("tf32") if isinstance(env.get("tf32"), Mapping) else {}
    precision = settings.get("float32_matmul_precision")
    if precision == "high" or settings.get("matmul_allow_tf32") is True:
        return "tf32"
    if precision == "highest":
        return "fp32"
    return None


def measured_ceilings(env: Mapping[str, Any]) -> dict[str, float]:
    """Measured matmul TFLOP/s per dtype from env.json "ceilings": {dtype: tflops}, or doctor's
    {"matmul_tflops": {dtype: tflops}, ...} layout; unusable entries are dropped."""
    ceilings = env.get("ceilings")
    if not isinstance(ceilings, Mapping):
        return {}
    if isinstance(ceilings.get("matmul_tflops"), Mapping):
        ceilings = ceilings["matmul_tflops"]
    return {
        dtype: float(rate)
        for dtype, rate in ceilings.items()
        if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0
    }


def efficiency(frame: pd.DataFrame, env: Mapping[str, Any]) -> pd.DataFrame:
    """Achieved TFLOP/s per case and its share of the datasheet peak and of measured ceilings (env.json)."""
    mode = float32_mode(env)
    ceilings = measured_ceilings(env)
    peaks = [
        peak_tflops(None if pd.isna(name) else name, None if pd.isna(dtype) else dtype, mode)
        for name, dtype in zip(frame["device_name"], frame["dtype"])
    ]
    result = pd.DataFrame(
        {
            "tflops_s": frame["tflops_s"].astype("Float64"),
            "peak_tflops": pd.array([pd.NA if p is None else p for p in peaks], dtype="Float64"),
            "ceiling_tflops": pd.array(
                [ceilings.get(dtype, pd.NA) if isinstance(dtype, str) else pd.NA for dtype in frame["dtype"]],
                dtype="Float64",
            ),
        },
        index=frame.index,
    )
    result["pct_peak"] = 100 * result["tflops_s"] / result["peak_tflops"]
    result["pct_ceiling"] = 100 * result["tflops_s"] / result["ceiling_tflops"]
    return result


# ---------------------------------------------------------------- the case table every view shows

BEST_DIRECTIONS = {
    "latency_ms_median": "min",
    "throughput_img_s": "max",
    "peak_mem_mb": "min",
    "flops": "min",
    "tflops_s": "max",
    "speedup": "max",
}


def case_summary(frame: pd.DataFrame, env: Mapping[str, Any], baseline: str | None, metric: Metric) -> pd.DataFrame:
    """Prepared rows plus efficiency and speedup columns, ordered by context, size and series."""
    summary = pd.concat([frame, efficiency(frame, env).drop(columns="tflops_s")], axis=1)
    if baseline is not None:
        summary = pd.concat([summary, speedups(frame, baseline, metric)], axis=1)
    else:
        for col in ("speedup", "speedup_low", "speedup_high"):
            summary[col] = pd.Series(pd.NA, index=summary.index, dtype="Float64")
    order = summary.sort_values(["context", "tokens", "resolution", "series"], na_position="last", kind="stable")
    return order.reset_index(drop=True)


def best_flags(summary: pd.DataFrame) -> pd.DataFrame:
    """True where a case has the best value of a column among the ok cases of the same context and size."""
    flags = pd.DataFrame(False, index=summary.index, columns=list(BEST_DIRECTIONS))
    ok = summary[summary["ok"]]
    for _, rows in ok.groupby(["_context", "_size"], sort=False):
        if len(rows) < 2:
            continue
        for column, direction in BEST_DIRECTIONS.items():
            values = rows[column].astype("Float64").dropna()
            if values.nunique() < 2:
                continue
            best = values.min() if direction == "min" else values.max()
            flags.loc[values[values == best].index, column] = True
    return flags


# ---------------------------------------------------------------- display helpers shared by the views


def fmt_number(value: Any, digits: int = 3) -> str:
    """Three significant digits, thousands separators, "—" for missing."""
    if value is None or pd.isna(value):
        return "—"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def fmt_int(value: Any) -> str:
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def fmt_flops(value: Any) -> str:
    """FLOPs with an SI prefix (G, T, P): counts span many decades across a sweep."""
    if value is None or pd.isna(value):
        return "—"
    value = float(value)
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{fmt_number(value / scale)} {prefix}"
    return fmt_number(value)


def fmt_exponent(row: Mapping[str, Any]) -> str:
    return f"{row['exponent']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
