"""The analysis room on tables with known answers: exponents, t quantiles, crossovers, speedups, peak lookups."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rpbench import analysis
from rpbench.results import store
from rpbench.analysis import METRICS, AnalysisError
from rpbench.views.format import describe_crossover

from fake_runs import make_row, scaling_rows, write_run

# Two-sided 95 % critical values of Student's t (any statistics textbook table, 3 decimals).
T_TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042, 100: 1.984}


@pytest.mark.parametrize("df,expected", sorted(T_TABLE_975.items()))
def test_t_quantile_matches_table(df, expected):
    assert analysis.student_t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)


def test_t_quantile_is_the_inverse_of_the_cdf_and_symmetric():
    for df in (1, 2, 7, 40):
        for p in (0.6, 0.9, 0.995):
            q = analysis.student_t_quantile(p, df)
            assert analysis.student_t_cdf(q, df) == pytest.approx(p, abs=1e-12)
            assert analysis.student_t_quantile(1 - p, df) == pytest.approx(-q, abs=1e-12)
    assert analysis.student_t_cdf(0.0, 3) == 0.5
    # df = 1 is Cauchy: CDF(t) = 1/2 + atan(t)/pi; df = 2 has CDF 1/2 + t / (2 sqrt(2 + t²)).
    assert analysis.student_t_cdf(1.7, 1) == pytest.approx(0.5 + math.atan(1.7) / math.pi, abs=1e-14)
    assert analysis.student_t_cdf(-0.8, 2) == pytest.approx(0.5 - 0.8 / (2 * math.sqrt(2.64)), abs=1e-14)


def test_t_quantile_agrees_with_scipy_when_present():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 8, 25, 301):
        for p in (0.55, 0.8, 0.975, 0.9995):
            assert analysis.student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


def test_t_rejects_bad_arguments():
    with pytest.raises(ValueError):
        analysis.student_t_cdf(1.0, 0)
    with pytest.raises(ValueError):
        analysis.student_t_cdf(1.0, 2.5)
    with pytest.raises(ValueError):
        analysis.student_t_quantile(1.0, 3)


SIZES = np.array([196, 784, 3136, 12544, 50176], dtype=float)


def test_pure_quadratic_series_fits_exponent_two():
    fit = analysis.fit_power_law(SIZES, 3e-7 * SIZES**2)
    assert fit.exponent == pytest.approx(2.0, abs=0.01)
    assert fit.ci_low <= 2.0 <= fit.ci_high
    assert fit.r2 == pytest.approx(1.0)
    assert fit.n_points == 5
    assert math.exp(fit.intercept) == pytest.approx(3e-7, rel=1e-9)


def test_noisy_series_gets_an_interval_that_contains_the_truth():
    wobble = np.array([1.04, 0.97, 1.02, 0.95, 1.03])
    fit = analysis.fit_power_law(SIZES, 2e-3 * SIZES * wobble)
    assert fit.exponent == pytest.approx(1.0, abs=0.02)
    assert fit.ci_low < 1.0 < fit.ci_high
    assert 0 < fit.ci_high - fit.ci_low < 0.2
    assert 0.99 < fit.r2 < 1.0
    # The interval is exactly k ± t(0.975, n-2)·se(k): recompute se by hand.
    x, y = np.log(SIZES), np.log(2e-3 * SIZES * wobble)
    residual = y - (fit.intercept + fit.exponent * x)
    se = math.sqrt((residual**2).sum() / 3 / ((x - x.mean()) ** 2).sum())
    assert fit.ci_high - fit.exponent == pytest.approx(analysis.student_t_quantile(0.975, 3) * se, rel=1e-9)


def test_linear_series_fits_exponent_one():
    fit = analysis.fit_power_law(SIZES, 0.01 * SIZES)
    assert fit.exponent == pytest.approx(1.0, abs=0.01)
    assert fit.ci_low <= 1.0 <= fit.ci_high


def test_fit_needs_three_distinct_sizes():
    with pytest.raises(ValueError):
        analysis.fit_power_law([100, 100, 400], [1.0, 1.1, 4.0])


@pytest.fixture
def scaling_frame(tmp_path):
    write_run(tmp_path / "run", scaling_rows(dense_oom_at=12544))
    return analysis.prepare(store.load(tmp_path / "run"))


def test_scaling_exponents_of_a_run(scaling_frame):
    fits = analysis.scaling_exponents(scaling_frame).set_index(["series", "quantity"])
    for quantity in ("latency", "memory", "flops"):
        assert fits.loc[("rpattention", quantity), "exponent"] == pytest.approx(1.0, abs=0.01)
        # dense ran out of memory at the largest size: three sizes left, too few to fit
        assert pd.isna(fits.loc[("dense", quantity), "exponent"])
    assert fits.loc[("dense", "latency"), "n_points"] == 3
    assert fits.loc[("rpattention", "latency"), "n_points"] == 4


@pytest.mark.parametrize("sizes, fitted", [((196, 784), False), ((196, 784, 3136), False),
                                           ((196, 784, 3136, 12544), True)])
def test_an_exponent_needs_four_sizes(tmp_path, sizes, fitted):
    rows = [make_row(attention="dense", tokens=n, latency_ms_median=1e-6 * n * n) for n in sizes]
    write_run(tmp_path / "run", rows)
    fits = analysis.scaling_exponents(analysis.prepare(store.load(tmp_path / "run")))
    latency = fits[fits["quantity"] == "latency"].iloc[0]
    assert latency["n_points"] == len(sizes)
    assert (latency["exponent"] == pytest.approx(2.0)) if fitted else pd.isna(latency["exponent"])
    from rpbench.views.format import fmt_exponent

    assert fmt_exponent(latency) == ("2.00 [2.00, 2.00]" if fitted else f"n/a ({len(sizes)} sizes)")


def test_crossover_between_two_power_laws_is_where_they_meet():
    sizes = [196, 784, 3136]
    found = analysis.find_crossover(sizes, [2e-6 * n * n for n in sizes], sizes, [1e-3 * n for n in sizes])
    assert found.status == "crossover"
    assert found.tokens == pytest.approx(500.0, rel=1e-9)  # 2e-6·N² = 1e-3·N


def test_crossover_is_interpolated_in_log_log_between_the_bracketing_points():
    # Gap in log space: +log 2 at N=100, -log 2 at N=400, so the crossing is halfway in log N: N = 200.
    found = analysis.find_crossover([100, 400], [1.0, 16.0], [100, 400], [2.0, 8.0])
    assert found.status == "crossover"
    assert 100 < found.tokens < 400
    assert found.tokens == pytest.approx(200.0, rel=1e-9)


def test_crossover_uses_the_union_of_sizes_inside_the_shared_range():
    # The mechanism was measured at one more size than the baseline; the baseline is interpolated there.
    found = analysis.find_crossover([100, 1600], [1.0, 256.0], [100, 400, 1600], [4.0, 10.0, 16.0])
    assert found.status == "crossover"
    base_at_400, mech_at_400 = 16.0, 10.0  # baseline N² through (100, 1) is 16 at N=400
    assert mech_at_400 < base_at_400
    gap_100, gap_400 = math.log(4.0), math.log(mech_at_400 / base_at_400)
    expected = math.exp(math.log(100) + gap_100 / (gap_100 - gap_400) * math.log(4))
    assert found.tokens == pytest.approx(expected, rel=1e-9)


def test_crossover_never_always_mixed_insufficient():
    sizes = [100, 400, 1600]
    assert analysis.find_crossover(sizes, [1, 2, 3], sizes, [2, 3, 4]).status == "never"
    assert analysis.find_crossover(sizes, [2, 3, 4], sizes, [1, 2, 3]).status == "always"
    assert analysis.find_crossover(sizes, [2, 3, 4], sizes, [1, 4, 5]).status == "mixed"
    assert analysis.find_crossover([100, 200], [1, 2], [400, 800], [1, 2]).status == "insufficient"
    # equal is not faster
    assert analysis.find_crossover(sizes, [1, 2, 3], sizes, [1, 2, 3]).status == "never"


def test_crossover_for_a_higher_is_better_metric():
    sizes = [100, 400]
    found = analysis.find_crossover(sizes, [16.0, 1.0], sizes, [8.0, 2.0], higher_is_better=True)
    assert found.status == "crossover"
    assert found.tokens == pytest.approx(200.0, rel=1e-9)


def test_crossovers_of_a_run_report_n_and_resolution(scaling_frame):
    table = analysis.crossovers(scaling_frame, "dense", METRICS["latency"])
    assert list(table["series"]) == ["rpattention"]
    row = table.iloc[0]
    assert row["status"] == "crossover"
    assert row["tokens"] == pytest.approx(500.0, rel=1e-9)
    assert row["resolution"] == pytest.approx(16 * math.sqrt(500), rel=1e-9)  # 16 px patches on a square grid
    text = describe_crossover(row["status"], row["tokens"], row["resolution"], METRICS["latency"])
    assert text == "faster from N ≈ 500 (≈ 358 px)"


def test_crossover_stays_within_its_context(tmp_path):
    rows = [make_row(attention="dense", tokens=n, latency_ms_median=2e-6 * n * n, dtype="float16") for n in (196, 784)]
    rows += [make_row(attention="lin", tokens=n, latency_ms_median=1e-3 * n, dtype="bfloat16") for n in (196, 784)]
    write_run(tmp_path / "run", rows)
    frame = analysis.prepare(store.load(tmp_path / "run"))
    assert analysis.crossovers(frame, "dense", METRICS["latency"]).empty


def _speedup_frame(tmp_path, mech_status="ok"):
    rows = [
        make_row(attention="dense", tokens=196, latency_ms_median=10.0, latency_ms_p20=9.0, latency_ms_p80=11.0),
        make_row(attention="rp", tokens=196, latency_ms_median=5.0, latency_ms_p20=4.0, latency_ms_p80=6.0),
        make_row(attention="rp", tokens=784, latency_ms_median=5.0),  # no dense at this size
        make_row(attention="rp", tokens=3136, status=mech_status, notes="out of memory"),
    ]
    write_run(tmp_path / "run", rows)
    return analysis.prepare(store.load(tmp_path / "run"))


def test_speedup_is_a_ratio_of_medians_with_a_conservative_interval(tmp_path):
    frame = _speedup_frame(tmp_path, mech_status="oom")
    result = analysis.speedups(frame, "dense", METRICS["latency"])
    rp = result.iloc[1]
    assert rp["speedup"] == pytest.approx(2.0)
    assert rp["speedup_low"] == pytest.approx(9.0 / 6.0)  # baseline p20 / mechanism p80
    assert rp["speedup_high"] == pytest.approx(11.0 / 4.0)  # baseline p80 / mechanism p20
    assert result.iloc[0]["speedup"] == pytest.approx(1.0)
    assert pd.isna(result.iloc[2]["speedup"])  # no baseline at that size
    assert pd.isna(result.iloc[3]["speedup"])  # not ok


def test_throughput_speedup_points_the_same_way(tmp_path):
    frame = _speedup_frame(tmp_path)
    rp = analysis.speedups(frame, "dense", METRICS["throughput"]).iloc[1]
    assert rp["speedup"] == pytest.approx(2.0)  # twice the images per second
    assert rp["speedup_low"] == pytest.approx(9.0 / 6.0)
    assert rp["speedup_high"] == pytest.approx(11.0 / 4.0)


@pytest.mark.parametrize(
    "name,dtype,mode,expected",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", "fp32", 989.5),
        ("NVIDIA H100 80GB HBM3", "float32", "fp32", 67.0),
        ("NVIDIA H100 80GB HBM3", "float32", "tf32", 494.5),
        ("NVIDIA H100 80GB HBM3", "float32", None, None),  # precision unknown: no claim
        ("NVIDIA H100 PCIe", "float16", "fp32", 756.5),
        ("NVIDIA H100 NVL", "bfloat16", "fp32", 835.5),  # longest key wins over a shorter "H100 ..." key
        ("NVIDIA H200", "bfloat16", "fp32", 989.5),
        ("NVIDIA H200 NVL", "bfloat16", "fp32", 835.5),
        ("NVIDIA A100-SXM4-80GB", "bfloat16", "fp32", 312.0),
        ("NVIDIA A100 80GB PCIe", "float32", "tf32", 156.0),
        ("NVIDIA L4", "float16", "fp32", 121.0),
        ("NVIDIA L40S", "float16", "fp32", 362.05),  # not L4's figure
        ("NVIDIA GeForce RTX 4090", "bfloat16", "fp32", 165.2),
        ("NVIDIA GeForce RTX 4090 D", "bfloat16", "fp32", None),  # a cut-down variant: unknown, not a guess
        ("NVIDIA GH200 480GB", "bfloat16", "fp32", None),  # "H200" inside another word does not match
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "bfloat16", "fp32", None),
        ("Tesla T4", "float16", "fp32", None),
        ("AMD EPYC 9654 96-Core Processor", "float32", "fp32", None),
        (None, "float32", "fp32", None),
    ],
)
def test_peak_table_lookup(name, dtype, mode, expected):
    assert analysis.peak_tflops(name, dtype, mode) == expected


def test_float32_mode_reads_the_recorded_tf32_settings():
    assert analysis.float32_mode({"tf32": {"float32_matmul_precision": "highest", "matmul_allow_tf32": False}}) == "fp32"
    assert analysis.float32_mode({"tf32": {"float32_matmul_precision": "high"}}) == "tf32"
    assert analysis.float32_mode({"tf32": {"float32_matmul_precision": "highest", "matmul_allow_tf32": True}}) == "tf32"
    assert analysis.float32_mode({"tf32": {"float32_matmul_precision": "medium"}}) is None
    assert analysis.float32_mode({}) is None


@pytest.mark.parametrize("ceilings", [{"bfloat16": 500.0}, {"matmul_tflops": {"bfloat16": 500.0, "float32": None}}])
def test_efficiency_against_datasheet_and_measured_ceiling(tmp_path, ceilings):
    rows = [
        make_row(attention="dense", tokens=196, flops_counted=int(98.95e12 * 1e-3), latency_ms_median=1.0),
        make_row(attention="dense", tokens=784, device_name="Mystery GPU", flops_counted=10**9, latency_ms_median=1.0),
    ]
    write_run(tmp_path / "run", rows)
    frame = analysis.prepare(store.load(tmp_path / "run"))
    result = analysis.efficiency(frame, {"ceilings": ceilings})
    assert result.iloc[0]["tflops_s"] == pytest.approx(98.95)
    assert result.iloc[0]["pct_peak"] == pytest.approx(10.0)  # of 989.5
    assert result.iloc[0]["pct_ceiling"] == pytest.approx(98.95 / 5)
    assert pd.isna(result.iloc[1]["pct_peak"])  # unknown device


def test_baseline_resolution(scaling_frame):
    assert analysis.resolve_baseline(scaling_frame, None) == "dense"
    assert analysis.resolve_baseline(scaling_frame, "rpattention") == "rpattention"
    with pytest.raises(AnalysisError, match="'flash' is not in this run"):
        analysis.resolve_baseline(scaling_frame, "flash")
    without_dense = scaling_frame[scaling_frame["mechanism"] != "dense"]
    assert analysis.resolve_baseline(without_dense, None) is None


def test_unknown_metric_is_a_one_line_error():
    with pytest.raises(AnalysisError, match="unknown metric 'speed'"):
        analysis.get_metric("speed")


def test_series_names_tell_variants_apart(tmp_path):
    rows = [make_row(attention="rp", m=m, knobs=f'{{"m": {m}}}', tokens=196) for m in (16, 64)]
    rows.append(make_row(attention="dense", tokens=196, dtype="float16"))
    write_run(tmp_path / "run", rows)
    frame = analysis.prepare(store.load(tmp_path / "run"))
    assert sorted(frame["series"]) == ["dense", "rp (m=16)", "rp (m=64)"]
    assert sorted(set(frame["facet"])) == ["dtype=bfloat16", "dtype=float16"]


def test_best_flags_pick_the_best_of_each_size(scaling_frame):
    summary = analysis.case_summary(scaling_frame, {}, "dense", METRICS["latency"])
    flags = analysis.best_flags(summary)
    at_196 = summary["tokens"] == 196
    fastest = summary.loc[at_196 & flags["latency_ms_median"], "series"].tolist()
    assert fastest == ["dense"]
    at_784 = summary["tokens"] == 784
    assert summary.loc[at_784 & flags["latency_ms_median"], "series"].tolist() == ["rpattention"]
    assert not flags.loc[~summary["ok"]].any().any()


def test_two_gpu_models_never_share_a_curve(tmp_path):
    """Rows of one mechanism measured on two GPU models (a cluster run) are two curves, each with its own fit."""
    rows = [make_row(attention="dense", tokens=n, device="cuda", device_name=gpu, case_id=f"{gpu[:4]}-{n}",
                     latency_ms_median=scale * 1e-6 * n * n)
            for gpu, scale in (("NVIDIA H100 80GB HBM3", 1.0), ("NVIDIA A100-SXM4-80GB", 3.0))
            for n in (196, 784, 3136, 12544)]
    write_run(tmp_path / "run", rows)
    fits = analysis.scaling_exponents(analysis.prepare(store.load(tmp_path / "run")))
    latency = fits[fits["quantity"] == "latency"]
    assert len(latency) == 2 and latency["_context"].nunique() == 2
    assert latency["exponent"].tolist() == pytest.approx([2.0, 2.0])
    assert {"H100" in c for c in latency["context"]} == {True, False}
