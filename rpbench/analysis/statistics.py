"""Statistics the fits need, with numpy only: Student's t quantile (exact for integer df) and a log-log power law
with a confidence interval on its exponent."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


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
