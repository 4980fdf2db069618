"""The numbers behind every view, from a results table: prepared curves (table), headline metrics (metrics),
scaling exponents and crossovers (scaling, on statistics), speedups, hardware efficiency (peaks), the case table
(summary), all of it at once for one run (run) and run-vs-run comparison (compare).

Pure pandas/numpy (no torch, no scipy) so reports open anywhere a results dir can be copied to.
"""
from __future__ import annotations

from ..core.errors import AnalysisError
from .compare import VERDICTS, Comparison, compare_runs, run_differences
from .flags import FLAG_KINDS, flag_counts, flag_summary
from .metrics import METRICS, Metric, get_metric
from .peaks import PEAK_TFLOPS, ceiling_rates, efficiency, float32_mode, peak_tflops
from .run import RunAnalysis, analyse_run
from .scaling import SCALING_QUANTITIES, Crossover, crossovers, find_crossover, scaling_exponents
from .speedups import speedups
from .statistics import PowerFit, fit_power_law, student_t_cdf, student_t_quantile
from .summary import BEST_DIRECTIONS, best_flags, case_summary
from .table import DEFAULT_BASELINE, prepare, resolve_baseline

__all__ = [
    "BEST_DIRECTIONS",
    "DEFAULT_BASELINE",
    "FLAG_KINDS",
    "METRICS",
    "PEAK_TFLOPS",
    "SCALING_QUANTITIES",
    "VERDICTS",
    "AnalysisError",
    "Comparison",
    "Crossover",
    "Metric",
    "PowerFit",
    "RunAnalysis",
    "analyse_run",
    "best_flags",
    "case_summary",
    "ceiling_rates",
    "compare_runs",
    "crossovers",
    "efficiency",
    "find_crossover",
    "flag_counts",
    "flag_summary",
    "fit_power_law",
    "float32_mode",
    "get_metric",
    "peak_tflops",
    "prepare",
    "resolve_baseline",
    "run_differences",
    "scaling_exponents",
    "speedups",
    "student_t_cdf",
    "student_t_quantile",
]
