"""The Measurement type: statistics derived from the kept samples, rates derived from the statistics."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from rpbench.core.case import Case
from rpbench.core.measurement import NOISY_IQR_PCT, Measurement, summarize

CASE = Case(scope="layer", attention="dense", label="dense", knobs=(("backend", "auto"),), batch=4, height=8,
            width=8, dim=32, heads=4, dtype="float32", mode="fwd", device="cpu")


def test_summary_statistics_match_numpy_and_the_statistics_module():
    samples = [3.0, 1.0, 2.0, 10.0, 4.0, 5.0, 2.5]
    stats = summarize(samples)
    p20, q25, median, q75, p80 = np.quantile(samples, [0.2, 0.25, 0.5, 0.75, 0.8])
    assert (stats.p20, stats.median, stats.p80) == (p20, median, p80)
    assert stats.median == statistics.median(samples) and stats.mean == pytest.approx(statistics.fmean(samples))
    assert stats.minimum == 1.0 and stats.n == 7
    assert stats.iqr_pct == pytest.approx(100 * (q75 - q25) / median)
    assert stats.noisy == (stats.iqr_pct > NOISY_IQR_PCT)
    assert not summarize([1.0, 1.0, 1.0, 1.01]).noisy


def test_rates_come_from_the_median_and_the_case():
    measured = Measurement(case=CASE, suite="t", status="ok", samples=(2.0, 4.0, 3.0), flops_counted=9_000_000,
                           flops_analytic=6_000_000)
    assert measured.stats.median == 3.0
    assert measured.throughput_img_s == pytest.approx(4 / 3e-3)
    assert measured.tokens_s == pytest.approx(4 * 64 / 3e-3)
    assert measured.tflops_s == pytest.approx(6e6 / 3e-3 / 1e12)  # the formula wins over the count
    without_formula = Measurement(case=CASE, suite="t", status="ok", samples=(3.0,), flops_counted=9_000_000)
    assert without_formula.tflops_s == pytest.approx(9e6 / 3e-3 / 1e12)


def test_a_failed_measurement_has_no_statistics():
    failed = Measurement(case=CASE, suite="t", status="oom", notes=("CUDA out of memory", ""))
    assert failed.stats is None and failed.throughput_img_s is None and failed.tflops_s is None
    assert failed.note == "CUDA out of memory" and not failed.ok


def test_a_spread_relative_to_a_zero_median_is_unknown_not_zero():
    """A timer too coarse for the call gives a 0 ms median: its IQR % and its pass spread are unknown (empty),
    never a 0 % that would read as perfectly stable."""
    from rpbench.core.measurement import Round, round_spread_pct

    stats = summarize([0.0, 0.0, 0.0, 0.001])
    assert stats.median == 0.0 and stats.iqr_pct is None and not stats.noisy
    assert round_spread_pct([Round(samples=(0.0, 0.0)), Round(samples=(0.0, 0.001, 0.0))]) is None
