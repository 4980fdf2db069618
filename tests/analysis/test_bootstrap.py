"""Intervals from the samples: two levels (passes, then samples), exact medians from the rank trick, seeded, and the
intervals they give speedups, latency exponents and crossovers (with the p20–p80 / t fallbacks where samples are
missing)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rpbench import analysis
from rpbench.analysis import METRICS, bootstrap
from rpbench.core import intervals
from rpbench.results import store
from rpbench.views.format import describe_crossover, fmt_speedup

from fake_runs import make_row, write_run


def _samples(cases: dict[str, list[list[float]]]) -> pd.DataFrame:
    """samples.csv as the store reads it: case_id -> one list of latencies per pass."""
    lines = [{"case_id": case, "sample": i, "latency_ms": v, "round": p}
             for case, passes in cases.items() for p, values in enumerate(passes) for i, v in enumerate(values)]
    return pd.DataFrame(lines).astype({"case_id": "string", "sample": "Int64", "latency_ms": "Float64",
                                       "round": "Int64"})


def _frame(tmp_path, rows):
    return analysis.prepare(store.load(write_run(tmp_path / "run", rows)))


@pytest.mark.parametrize("passes", [[[3.0, 1.0, 2.0]], [[1.0, 5.0, 2.0, 2.0], [7.0, 1.5, 3.0]],
                                    [[4.0, 4.0, 1.0], [2.0, 9.0], [6.0, 6.0, 0.5, 3.0]]])
def test_rank_medians_are_the_medians_of_the_drawn_values(passes):
    """The rank trick replayed against the plain recipe: same draws, np.median of the drawn values."""
    values = np.concatenate([np.asarray(p, float) for p in passes])
    labels = np.concatenate([np.full(len(p), i) for i, p in enumerate(passes)])
    fast = intervals.resampled_medians(values, labels, 500, np.random.default_rng(7))
    rng, parts = np.random.default_rng(7), []
    for one in passes:
        ordered = np.sort(np.asarray(one, float))
        parts.append(ordered[rng.integers(0, len(one), size=(500, len(one)), dtype=np.int16)])
    np.testing.assert_array_equal(fast, np.median(np.concatenate(parts, axis=1), axis=1))


def test_the_interval_holds_the_drift_between_passes(tmp_path):
    """Three passes whose samples agree closely inside each (±0.5 %) but whose medians drift 1.0 → 1.3 → 0.8 ms:
    a bootstrap that holds the passes fixed gives an interval of about ±1 % that misses the middle pass and 0.8;
    the interval over passes (t, 2 df) must hold every pass median."""
    passes = [[m * f for f in (0.995, 1.0, 1.005, 0.998, 1.002)] for m in (1.0, 1.3, 0.8)]
    median = float(np.median(np.concatenate(passes)))
    frame = _frame(tmp_path, [make_row(latency_ms_median=median)])
    draws = bootstrap.median_draws(frame, _samples({frame["case_id"][0]: passes}))
    assert draws.methods[0] == intervals.PASS_T
    low, high = draws.estimates[0].interval(median=median)
    assert low < 0.8 and high > 1.3
    assert bootstrap.interval(draws[0]) == pytest.approx((low, high), rel=0.15)  # the draws say the same
    fixed = intervals.resampled_medians(np.concatenate(passes), np.repeat([0, 1, 2], 5), 1000,
                                        np.random.default_rng(0))
    assert bootstrap.interval(fixed)[1] - bootstrap.interval(fixed)[0] < 0.1 * (high - low)  # what it replaced
    filled = bootstrap.with_latency_intervals(frame, draws)  # a row of an older run gets the same interval
    assert (filled.at[0, "latency_ms_ci_low"], filled.at[0, "latency_ms_ci_high"]) == pytest.approx((low, high))
    assert filled.at[0, "latency_ci_method"] == "pass-t"


def test_draws_are_seeded_per_case(tmp_path):
    rows = [make_row(attention=name, latency_ms_median=2.1) for name in ("a", "b")]
    frame = _frame(tmp_path, rows)
    noise = [[1.0, 2.0, 2.5, 3.0, 1.5], [2.2, 2.4, 1.1]]
    both = _samples({case: noise for case in frame["case_id"]})
    first, again = bootstrap.median_draws(frame, both), bootstrap.median_draws(frame, both)
    np.testing.assert_array_equal(first[0], again[0])
    alone = bootstrap.median_draws(frame.iloc[:1], both[both["case_id"] == frame["case_id"][0]])
    np.testing.assert_array_equal(alone[0], first[0])  # other cases do not move a case's draws
    assert not np.array_equal(first[0], first[1])  # each case has its own stream


def test_samples_that_are_not_the_rows_give_no_draws(tmp_path):
    frame = _frame(tmp_path, [make_row(latency_ms_median=5.0)])
    assert bootstrap.median_draws(frame, _samples({frame["case_id"][0]: [[1.0, 2.0, 3.0]]})) == {}
    assert bootstrap.median_draws(frame, None) == {}


def _pair(tmp_path, base_samples, mech_samples):
    rows = [make_row(attention="dense", latency_ms_median=10.0, latency_ms_p20=9.0, latency_ms_p80=11.0),
            make_row(attention="rp", latency_ms_median=5.0, latency_ms_p20=4.0, latency_ms_p80=6.0)]
    frame = _frame(tmp_path, rows)
    cases = dict(zip(frame["mechanism"], frame["case_id"]))
    chosen = {cases["dense"]: base_samples} | ({cases["rp"]: mech_samples} if mech_samples else {})
    return frame, bootstrap.median_draws(frame, _samples(chosen))


def test_speedup_interval_from_the_bootstrap(tmp_path):
    """Baseline always 10 ms; the mechanism's resampled median of (4, 5, 6) is 4, 5 or 6 with chances 7/27,
    13/27, 7/27 (> 2.5 % each): the 95 % interval of 10 / median is exactly [10/6, 10/4]."""
    frame, draws = _pair(tmp_path, [[10.0] * 5], [[4.0, 5.0, 6.0]])
    for metric in ("latency", "throughput"):  # same batch: images per second scale the same way
        rp = analysis.speedups(frame, "dense", METRICS[metric], draws).iloc[1]
        assert rp["speedup"] == pytest.approx(2.0)
        assert (rp["speedup_low"], rp["speedup_high"]) == pytest.approx((10 / 6, 2.5))
        assert rp["speedup_method"] == "within-pass"  # one pass each: nothing to pair, no drift inside
        assert fmt_speedup(rp) == "2.00× [1.67–2.50]"


def test_speedup_falls_back_to_the_p20_p80_pairing(tmp_path):
    frame, draws = _pair(tmp_path, [[10.0] * 5], None)  # the mechanism has no samples
    rp = analysis.speedups(frame, "dense", METRICS["latency"], draws).iloc[1]
    assert (rp["speedup_low"], rp["speedup_high"]) == pytest.approx((9 / 6, 11 / 4))
    assert rp["speedup_method"] == "p20-p80"
    assert fmt_speedup(rp) == "2.00× [1.50–2.75]†"
    memory = analysis.speedups(frame.assign(peak_mem_mb=[8.0, 2.0]), "dense", METRICS["memory"], draws).iloc[1]
    assert memory["speedup_method"] == "p20-p80" and fmt_speedup(memory) == "4.00×"  # one number: no interval


SIZES = (196, 784, 3136, 12544)
WOBBLE = (1.04, 0.97, 1.02, 0.95)


def test_latency_exponent_interval_is_bootstrapped_memory_keeps_t(tmp_path):
    """Samples all equal to their median: no measurement noise, so the bootstrap interval of the latency exponent
    is the point; the t-interval of memory (same wobble) is not, and without samples latency gets it too."""
    rows = [make_row(attention="rp", tokens=n, latency_ms_median=1e-3 * n * w, peak_mem_mb=0.1 * n * w)
            for n, w in zip(SIZES, WOBBLE)]
    frame = _frame(tmp_path, rows)
    draws = bootstrap.median_draws(frame, _samples({c: [[m] * 4] for c, m in
                                                    zip(frame["case_id"], frame["latency_ms_median"])}))
    fits = analysis.scaling_exponents(frame, draws).set_index("quantity")
    assert fits.loc["latency", "ci_method"] == "within-pass"
    assert fits.loc["latency", "ci_low"] == pytest.approx(fits.loc["latency", "exponent"])
    assert fits.loc["latency", "ci_high"] == pytest.approx(fits.loc["latency", "exponent"])
    assert fits.loc["memory", "ci_method"] == "t"
    assert fits.loc["memory", "ci_high"] - fits.loc["memory", "ci_low"] > 0.05
    plain = analysis.scaling_exponents(frame).set_index("quantity")
    assert plain.loc["latency", "ci_method"] == "t"
    assert plain.loc["latency", "ci_low"] == pytest.approx(plain.loc["memory", "ci_low"])


def _crossing(tmp_path, mech_last):
    """dense 1 → 4 ms and rp 2 ms → (samples `mech_last`) over N = 100, 400: rp is faster at 400 when its median
    is below 4 ms."""
    rows = [make_row(attention="dense", tokens=100, latency_ms_median=1.0),
            make_row(attention="dense", tokens=400, latency_ms_median=4.0),
            make_row(attention="rp", tokens=100, latency_ms_median=2.0),
            make_row(attention="rp", tokens=400, latency_ms_median=float(np.median(mech_last)))]
    frame = _frame(tmp_path, rows)
    passes = [[[1.0] * 3], [[4.0] * 3], [[2.0] * 3], [mech_last]]
    draws = bootstrap.median_draws(frame, _samples(dict(zip(frame["case_id"], passes))))
    return analysis.crossovers(frame, "dense", METRICS["latency"], draws).iloc[0]


def test_crossover_interval_when_the_resamples_agree(tmp_path):
    row = _crossing(tmp_path, [2.9, 3.0, 3.1, 3.2, 3.3])
    assert row["status"] == "crossover" and row["agree"] == 1.0 and row["ci_method"] == "within-pass"
    assert row["tokens_low"] < row["tokens"] < row["tokens_high"]
    # log-log interpolation: the gap log(rp/dense) goes from log 2 at N=100 to log(m/4) at N=400
    for median, bound in ((2.9, row["tokens_low"]), (3.3, row["tokens_high"])):
        fraction = np.log(2) / (np.log(2) - np.log(median / 4))
        assert bound == pytest.approx(100 * 4**fraction, rel=0.03)
    text = describe_crossover(row["status"], row["tokens"], None, METRICS["latency"], row)
    assert text == f"faster from N ≈ {row['tokens']:,.0f} [{row['tokens_low']:,.0f}–{row['tokens_high']:,.0f}]"


def test_crossover_says_when_the_resamples_disagree(tmp_path):
    row = _crossing(tmp_path, [3.7, 3.8, 3.9, 4.1, 4.2, 4.3, 3.95])  # median 3.95: barely faster at N=400
    assert row["status"] == "crossover" and 0.05 < row["agree"] < 0.95 and row["other"] == "never"
    assert pd.isna(row["tokens_low"]) and pd.isna(row["tokens_high"])  # no tight interval over a coin flip
    text = describe_crossover(row["status"], row["tokens"], None, METRICS["latency"], row)
    assert "[" not in text
    assert text.endswith(f"resamples disagree: {row['agree']:.0%} agree, the rest mostly never faster in range")


def test_analyse_run_uses_the_samples_it_is_given(tmp_path):
    frame = store.load(write_run(tmp_path / "run", [make_row(attention="dense"), make_row(attention="rp",
                                                                                         latency_ms_median=0.5)]))
    run = store.load_run(tmp_path / "run")  # write_run keeps three samples per case: p20, median, p80
    assert len(run.samples) == 6
    methods = analysis.analyse_run(frame, {}, samples=run.samples).summary["speedup_method"]
    assert list(methods) == ["within-pass", "within-pass"]
    assert list(analysis.analyse_run(frame, {}).summary["speedup_method"]) == ["p20-p80", "p20-p80"]


def test_a_damaged_samples_file_costs_only_the_intervals(tmp_path):
    write_run(tmp_path / "run", [make_row(attention="dense")])
    (tmp_path / "run" / "samples.csv").write_bytes(b"\xff\xfe not a table")
    assert store.load_run(tmp_path / "run").samples.empty


def _round_samples(cases: dict[str, list[list[float]]], sweep_rounds: dict[str, list[int]]) -> pd.DataFrame:
    frame = _samples(cases)
    frame["sweep_round"] = [sweep_rounds[case][int(number)] for case, number in zip(frame["case_id"], frame["round"])]
    return frame.astype({"sweep_round": "Int64"})


def _drifting_pair(tmp_path, factors=(1.0, 1.5, 0.7)):
    """dense 2 ms and rp 1 ms, both slowed by the same factor in each round of the sweep (the machine's state)."""
    jitter = (0.998, 1.0, 1.002)
    dense = [[2.0 * f * j for j in jitter] for f in factors]
    rp = [[1.0 * f * j for j in jitter] for f in factors]
    rows = [make_row(attention="dense", latency_ms_median=float(np.median(np.concatenate(dense)))),
            make_row(attention="rp", latency_ms_median=float(np.median(np.concatenate(rp))))]
    frame = _frame(tmp_path, rows)
    cases = dict(zip(frame["mechanism"], frame["case_id"]))
    return frame, {cases["dense"]: dense, cases["rp"]: rp}


def test_speedups_are_paired_by_round_so_drift_a_round_shares_cancels(tmp_path):
    """The machine runs 1.0, 1.5, 0.7× in rounds 0, 1, 2 and slows both cases alike: per round rp is exactly 2×
    faster, so the round-paired speedup is 2.00 with a tight interval. Without pairing the same passes give an
    interval several times 2 wide (each case's passes disagree by 2×)."""
    frame, passes = _drifting_pair(tmp_path)
    samples = _round_samples(passes, {case: [0, 1, 2] for case in passes})
    draws = bootstrap.median_draws(frame, samples)
    rp = analysis.speedups(frame, "dense", METRICS["latency"], draws).iloc[1]
    assert rp["speedup_method"] == "paired-t"
    assert rp["speedup"] == pytest.approx(2.0, rel=1e-3)
    assert rp["speedup_high"] / rp["speedup_low"] < 1.02
    throughput = analysis.speedups(frame, "dense", METRICS["throughput"], draws).iloc[1]
    assert throughput["speedup_method"] == "paired-t" and throughput["speedup"] == pytest.approx(2.0, rel=1e-3)
    unpaired = bootstrap.interval(draws[0] / draws[1])  # what the same draws say without the rounds
    assert unpaired[1] / unpaired[0] > 3


def test_passes_taken_in_different_rounds_are_not_paired(tmp_path):
    """rp's passes were taken in rounds 3, 4, 5 (say, after a resume): no round in common with dense, so its
    speedup is the ratio of medians with the two-level interval of both cases' passes."""
    frame, passes = _drifting_pair(tmp_path)
    ids = list(passes)
    samples = _round_samples(passes, {ids[0]: [0, 1, 2], ids[1]: [3, 4, 5]})
    rp = analysis.speedups(frame, "dense", METRICS["latency"], bootstrap.median_draws(frame, samples)).iloc[1]
    assert rp["speedup_method"] == "pass-t" and rp["speedup_high"] / rp["speedup_low"] > 3
