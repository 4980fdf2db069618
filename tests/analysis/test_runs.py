"""Several runs joined by case_id and told apart by run facets: curves never mix devices, runs or timers; the
matrix of speedups against the first run matches ratios worked out by hand, with today's noise rules."""
from __future__ import annotations

import shutil

import pandas as pd
import pytest

from rpbench.analysis import get_metric
from rpbench.analysis.matrix import run_matrix
from rpbench.analysis.runs import analyse_runs
from rpbench.core.errors import AnalysisError
from rpbench.results.runs import load_runs
from rpbench.views.figures import build_figures
from rpbench.views.runs_terminal import matrix_table
from rich.console import Console

from fake_runs import H100, dense_latency, rp_latency, scaled, scaling_rows, write_run
from multi_runs import A100, COMMITS, SLOWED, commit_runs, device_runs, env

INTERVAL = (0.95 / 1.05, 1.05 / 0.95)  # a bootstrap of three samples (p20, median, p80) per case: see below


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    return device_runs(tmp_path_factory.mktemp("devices"))


@pytest.fixture(scope="module")
def commits(tmp_path_factory):
    return commit_runs(tmp_path_factory.mktemp("commits"))


def _values(runs, device: str) -> set[float]:
    frame = runs.combined.frame
    return set(frame.loc[frame["device_name"] == device, "latency_ms_median"].astype(float))


def test_curves_never_mix_devices(devices):
    runs = analyse_runs(load_runs(devices))
    h100, a100 = _values(runs, H100), _values(runs, A100)
    figures = {figure.key: figure for figure in build_figures(runs.combined)}
    latency = figures["latency-vs-tokens"]
    assert sorted(panel.title for panel in latency.panels) == [f"{A100} · a100", f"{H100} · h100"]
    for panel in latency.panels:
        device = H100 if panel.title.startswith(H100) else A100
        assert sorted(series.name for series in panel.series) == ["dense", "rpattention"]
        for series in panel.series:  # every point of a curve is its panel's device's, none the other's
            assert set(series.y) <= (h100 if device == H100 else a100) and not set(series.y) & (a100 if device == H100
                                                                                                 else h100)
    # The speedups over dense are each run's own: rpattention is as many times faster on both devices.
    speedup = figures["speedup-vs-tokens"]
    assert [s.y for p in speedup.panels for s in p.series][0] == [s.y for p in speedup.panels for s in p.series][1]
    assert runs.varying() == ["device", "date"]


def test_runs_on_one_device_share_a_panel_and_keep_their_own_curves(commits):
    runs = analyse_runs(load_runs(commits))
    latency = next(f for f in build_figures(runs.combined) if f.key == "latency-vs-tokens")
    assert len(latency.panels) == 1
    names = sorted(series.name for series in latency.panels[0].series)
    assert names == sorted(f"{m} · run-{c[:2]}" for m in ("dense", "rpattention") for c in COMMITS)
    slowed = next(s for s in latency.panels[0].series if s.name == "rpattention · run-c3")
    assert slowed.y[1] == pytest.approx(2 * rp_latency(784))  # the planted slowdown, in its own run's curve only
    assert all(s.y[1] == pytest.approx(rp_latency(784)) for s in latency.panels[0].series
               if s.name.startswith("rpattention") and s.name != "rpattention · run-c3")


def test_a_run_that_mixed_timers_gets_one_curve_per_timer(tmp_path, devices):
    rows = [dict(row, timer="cuda_graph") if row["tokens"] >= 3136 else row for row in scaling_rows()]
    mixed = write_run(tmp_path / "mixed", rows, env=env(3))
    runs = analyse_runs(load_runs([devices[0], mixed]))
    lines = set(runs.combined.frame.loc[runs.combined.frame["run"] == "mixed", "line"])
    assert lines == {f"{m} · mixed · timer={t}" for m in ("dense", "rpattention") for t in ("cuda_event", "cuda_graph")}


@pytest.fixture(scope="module")
def matrix(devices, tmp_path_factory):
    """h100, a100 (2x slower) and a third H100 run with the planted 2x slowdown and one case of its own."""
    rows = scaling_rows()
    rows[SLOWED] = scaled(rows[SLOWED], 2.0)
    rows.append(scaled(scaling_rows()[0], 1.0, tokens=400, case_id="only-here"))
    third = write_run(tmp_path_factory.mktemp("third") / "c3", rows, env=env(3, COMMITS[2]))
    runs = analyse_runs(load_runs([*devices, third]))
    return run_matrix(runs.runs, get_metric("latency"))


def test_matrix_matches_hand_computed_ratios(matrix):
    """Speedup over the first run = its median / this run's median (latency); the 95 % bootstrap interval of three
    samples per case is exact here: each resampled median is one of the three samples, the extreme ones with
    probability 7/27 each, so both 2.5 % tails of the ratio sit at the extreme pairings 0.95/1.05 and 1.05/0.95."""
    cases = matrix.cases.set_index(["run", "tokens", "name"])
    for tokens in (196, 784, 3136, 12544):
        for name, latency in (("dense", dense_latency), ("rpattention", rp_latency)):
            a100 = cases.loc[("a100", tokens, name)]
            assert a100["value"] == pytest.approx(2 * latency(tokens))
            assert a100["speedup"] == pytest.approx(0.5)  # twice as slow as the first run
            assert (a100["speedup_low"], a100["speedup_high"]) == pytest.approx((0.5 * INTERVAL[0], 0.5 * INTERVAL[1]))
            assert a100["speedup_method"] == "within-pass" and a100["verdict"] == "regression"
            c3 = cases.loc[("c3", tokens, name)]
            expected = 0.5 if (tokens, name) == (784, "rpattention") else 1.0
            assert c3["speedup"] == pytest.approx(expected)
            assert c3["verdict"] == ("regression" if expected == 0.5 else "unchanged")
    assert pd.isna(cases.loc[("h100", 196, "dense"), "speedup"])  # the first run is the reference
    assert matrix.regressed() == ["a100", "c3"]
    assert matrix.summary_lines()[1].startswith("c3 vs h100: 1 regression, 0 improvements, 7 unchanged")


def test_cases_are_joined_by_case_id_whatever_device_ran_them(matrix):
    """The device model is a run facet, not part of a case's identity; a case only one run has stays, alone."""
    found = matrix.cases.groupby("case_id")["run"].nunique()
    assert (found.drop("only-here") == 3).all() and found["only-here"] == 1
    assert matrix.comparisons["c3"].counts()["only in B"] == 1


def test_matrix_falls_back_to_the_band_without_samples_and_leaves_flagged_cases_out(tmp_path, devices):
    first = tmp_path / "first"
    shutil.copytree(devices[0], first)
    (first / "samples.csv").unlink()
    rows = scaling_rows(dense_oom_at=12544)
    rows[0] = dict(rows[0], disturbed=True, others_busy_cores=1.5)
    flagged = write_run(tmp_path / "flagged", rows, env=env(4))
    runs = analyse_runs(load_runs([first, devices[1], flagged]))
    matrix = run_matrix(runs.runs, get_metric("latency"))
    console = Console(record=True, width=250)
    console.print(matrix_table(matrix, verdicts=True))
    shown = {line.split("│")[1].strip() + line.split("│")[2].strip(): line for line in console.export_text().splitlines()
             if line.count("│") > 3}
    assert "0.0768*" in shown["dense196"] and "flagged" in shown["dense196"]  # flagged: marked, no speedup
    assert "oom" in shown["dense12,544"] and "regression" in shown["dense12,544"]  # ok → oom counts as one
    cases = matrix.cases.set_index(["run", "tokens", "name"])
    a100 = cases.loc[("a100", 3136, "rpattention")]
    # p20–p80 pairing, least favourable: first p20 / this p80 .. first p80 / this p20 = the same extremes.
    assert a100["speedup_method"] == "p20-p80"
    assert (a100["speedup_low"], a100["speedup_high"]) == pytest.approx((0.5 * INTERVAL[0], 0.5 * INTERVAL[1]))
    disturbed = cases.loc[("flagged", 196, "dense")]
    assert disturbed["verdict"] == "flagged" and pd.isna(disturbed["speedup"])


def test_a_baseline_missing_from_one_run_names_that_run(tmp_path, devices):
    only_rp = write_run(tmp_path / "only-rp", [r for r in scaling_rows() if r["attention"] == "rpattention"],
                        env=env(5))
    with pytest.raises(AnalysisError, match="run only-rp .*baseline 'dense' is not in this run"):
        analyse_runs(load_runs([only_rp, devices[0]]), baseline="dense")
