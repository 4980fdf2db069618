"""Statistics the fits need, with numpy only: a log-log power law with a confidence interval on its exponent (Student's
t quantile, exact for integer df, lives in `core.intervals` beside the latency intervals that use it too)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.intervals import student_t_cdf, student_t_quantile  # noqa: F401  (re-exported)


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
