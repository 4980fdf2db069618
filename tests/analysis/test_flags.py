"""Flags: disturbed, unstable, throttled and implausible rows are marked everywhere and left out of fits,
crossovers, speedups and compare, which say how many they left out; broken ceilings never show as a number."""
from __future__ import annotations

import pandas as pd
import pytest

from rpbench.analysis import analyse_run, flag_summary, prepare
from rpbench.analysis.flags import implausible_pairs
from rpbench.core.schema import COLUMNS
from rpbench.results import store
from rpbench.views.export import display_table
from rpbench.views.html import render_html
from rpbench.views.terminal import terminal_report
from rpbench.views.terminal_grid import grids_view

from cli_helpers import invoke
from fake_runs import DEFAULT_ENV, make_row, scaling_rows, write_run


def _with(rows, index, **fields):
    row = {**rows[index], **fields}
    return rows[:index] + [row] + rows[index + 1:]


def _prepared(rows):
    return prepare(pd.DataFrame(rows).reindex(columns=list(COLUMNS)))


def _analysed(tmp_path, rows, env=None):
    run = store.load_run(write_run(tmp_path / "run", rows, env))
    return analyse_run(run.frame, run.env), run.directory


def test_a_case_slower_at_fewer_tokens_is_implausible_and_both_rows_are_flagged():
    # The example: cbsa N=196 measured at 88 ms while N=784 took 0.6 ms (and N=3136 1.8 ms).
    rows = [make_row(attention="cbsa", tokens=n, latency_ms_median=ms, flops_analytic=f)
            for n, ms, f in ((196, 88.0, 1_000), (784, 0.6, 4_000), (3136, 1.8, 16_000))]
    frame = _prepared(rows)
    flagged = frame[frame["flagged"]]
    assert sorted(flagged["tokens"]) == [196, 784, 3136]  # each larger case is more than 2x faster than N=196
    assert "implausible: N=196 took 88 ms but N=784 (more tokens and FLOPs) 0.6 ms" in frame.loc[0, "flags"]
    # once the slowed row is known to be disturbed, it alone is blamed
    rows[0]["disturbed"], rows[0]["others_busy_cores"] = True, 1.9
    frame = _prepared(rows)
    assert list(frame["flagged"]) == [True, False, False]
    assert frame.loc[0, "flags"].startswith("disturbed: other processes kept 1.90 cores busy; implausible")


def test_fewer_flops_at_more_tokens_or_a_mild_drop_is_plausible():
    rows = [make_row(attention="window", tokens=196, latency_ms_median=1.0, flops_analytic=1000),
            make_row(attention="window", tokens=784, latency_ms_median=0.6, flops_analytic=4000),  # 1.7x: fine
            make_row(attention="grid", tokens=196, latency_ms_median=1.0, flops_analytic=1000),
            make_row(attention="grid", tokens=784, latency_ms_median=0.1, flops_analytic=500)]  # fewer FLOPs
    frame = _prepared(rows)
    assert not frame["flagged"].any() and implausible_pairs(frame) == {}


def test_a_disturbed_row_is_left_out_of_fits_crossovers_and_speedups_and_they_say_so(tmp_path):
    rows = _with(scaling_rows(), 5, disturbed=True, others_busy_cores=1.95)  # rpattention at N=3136
    analysed, _ = _analysed(tmp_path, rows)
    flagged = analysed.summary[analysed.summary["flagged"]]
    assert list(flagged["series"]) == ["rpattention"] and int(flagged["tokens"].iloc[0]) == 3136
    assert pd.isna(flagged["speedup"].iloc[0])  # no speedup from a number not to be believed
    fit = analysed.exponents.query("series == 'rpattention' and quantity == 'latency'").iloc[0]
    assert fit["n_points"] == 3 and fit["left_out"] == 1
    crossing = analysed.crossings.query("series == 'rpattention'").iloc[0]
    assert crossing["left_out"] == 1 and crossing["status"] == "crossover"
    text = _render(*terminal_report(analysed, cases=True).parts())
    assert "disturbed: other processes kept 1.95 cores busy" in text and "(1 flagged left out)" in text
    short = _render(*terminal_report(analysed).parts())  # the default report: grid, scaling, one line per flag kind
    assert "1 of 8 measured rows flagged (1 disturbed); fits, crossovers and speedups leave them out" in short
    assert "d disturbed (1): other processes were busy in every pass: rpattention N=3,136 (others: 1.95 cores)" in short
    assert "(1 flagged left out)" in short


def test_flags_and_noisy_are_marked_in_the_html_report_and_the_grid_alike(tmp_path):
    rows = _with(_with(scaling_rows(), 5, unstable=True, round_spread_pct=41.0), 0, noisy=True)
    analysed, run_dir = _analysed(tmp_path, rows)
    page = render_html(analysed, run_dir)
    assert '<tr class="flagged">' in page and "unstable: passes 41 % apart" in page
    assert "noisy" in page and "1 of 8 measured rows flagged (1 unstable)" in page
    grid = _render(*grids_view(analysed, 100))
    # at N=3136 the flagged rpattention cell is left out: dense is alone there, and the best of nothing is not marked
    assert "19.7 ±5%" in grid and "19.7 ±5% ◆" not in grid and "12.5 ±5% ◆" in grid
    assert "3.14 ±5% u" in grid and "u unstable: its passes apart beyond the machine's drift" in grid
    assert "0.0768 ±5% ◆~" in grid and "~ noisy" in grid  # noisy is marked, and still the best of its column
    table = display_table(analysed)
    assert table["flags"].tolist().count("noisy") == 1 and table["flags"].str.startswith("unstable").sum() == 1


def test_noisy_rows_are_marked_but_kept():
    frame = _prepared([make_row(tokens=n, latency_ms_median=n / 100, noisy=True) for n in (196, 784)])
    assert not frame["flagged"].any() and frame["usable"].all()
    assert flag_summary(frame) == "no row flagged among 2 measured; 2 noisy (IQR > 10 %, marked, kept)"


@pytest.mark.parametrize("ceiling, shown", [(1e6, "%"), (1e-9, "broken ceiling (> 100 %)")])
def test_a_share_above_100_percent_of_the_ceiling_is_a_broken_ceiling_never_a_number(tmp_path, ceiling, shown):
    env = {**DEFAULT_ENV, "ceilings": {"matmul_tflops": {"bfloat16": ceiling}}}
    analysed, run_dir = _analysed(tmp_path, scaling_rows(), env)
    cells = _render(*terminal_report(analysed, cases=True).cases)
    assert shown in cells
    if shown != "%":
        assert analysed.summary["pct_ceiling"].isna().all() and analysed.summary["pct_ceiling_broken"].any()
        assert "broken ceiling" in render_html(analysed, run_dir)


def test_the_end_of_a_sweep_says_how_many_rows_are_flagged(tmp_path):
    from cli_helpers import tiny_suite

    out = tmp_path / "run"
    result = invoke("sweep", str(tiny_suite(tmp_path)), "--out", str(out), "--no-report")
    assert result.exit_code == 0
    assert "measured" in result.output and ("no row flagged" in result.output or "rows flagged" in result.output)


def _render(*renderables) -> str:
    from rich.console import Console

    console = Console(width=400, record=True)
    for renderable in renderables:
        console.print(renderable)
    return console.export_text()


def test_an_unstable_row_says_it_moved_beyond_the_machines_drift():
    frame = _prepared([make_row(tokens=196, unstable=True, round_spread_pct=41.0, drift_pct=3.2),
                       make_row(tokens=784, latency_ms_median=4.0, unstable=True, round_spread_pct=30.0)])
    assert list(frame["flags"]) == ["unstable: passes 41 % apart, beyond the machine's drift (±3.2 %)",
                                    "unstable: passes 30 % apart"]  # a row of a run without a reference kernel
