"""rpbench compare: cases matched by case_id; only changes beyond threshold and spread count."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from rpbench.results import store
from rpbench.analysis import METRICS
from rpbench.cli import app
from rpbench.analysis import compare_runs

from fake_runs import DEFAULT_ENV, make_row, scaling_rows, write_run


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def _slowed(rows, index, factor, spread=None):
    """Scale one row's latency figures (and throughput inversely); optionally widen its p20–p80 band."""
    row = dict(rows[index])
    for key in ("latency_ms_median", "latency_ms_p20", "latency_ms_p80", "latency_ms_min", "latency_ms_mean"):
        row[key] *= factor
    row["throughput_img_s"] /= factor
    if spread is not None:
        row["latency_ms_p20"] = row["latency_ms_median"] * (1 - spread)
        row["latency_ms_p80"] = row["latency_ms_median"] * (1 + spread)
    return rows[:index] + [row] + rows[index + 1 :]


@pytest.fixture
def run_a(tmp_path):
    return write_run(tmp_path / "a", scaling_rows())


def test_identical_runs_show_no_change(run_a, tmp_path):
    run_b = write_run(tmp_path / "b", scaling_rows())
    result = invoke("compare", str(run_a), str(run_b), "--fail-on-regression")
    assert result.exit_code == 0, result.output
    assert "0 regressions, 0 improvements, 8 unchanged, 0 flagged (left out), 0 only in A, 0 only in B" in result.output


def test_a_slowed_case_is_a_regression(run_a, tmp_path):
    run_b = write_run(tmp_path / "b", _slowed(scaling_rows(), 3, 1.5))  # rpattention at N=784
    result = invoke("compare", str(run_a), str(run_b))
    assert result.exit_code == 0, result.output  # without the flag a regression is reported, not fatal
    assert "1 regression, 0 improvements, 7 unchanged" in result.output
    assert "+50.0 %" in result.output
    gated = invoke("compare", str(run_a), str(run_b), "--fail-on-regression")
    assert gated.exit_code == 1
    assert "1 regression" in gated.output


def test_a_faster_case_is_an_improvement(run_a, tmp_path):
    run_b = write_run(tmp_path / "b", _slowed(scaling_rows(), 0, 0.5))
    result = invoke("compare", str(run_a), str(run_b), "--fail-on-regression")
    assert result.exit_code == 0
    assert "0 regressions, 1 improvement, 7 unchanged" in result.output


def _verdicts(run_a, run_b, metric="latency", threshold=5.0):
    comparison = compare_runs(store.load(run_a), store.load(run_b), METRICS[metric], threshold)
    return comparison, dict(zip(comparison.cases["case_id"], zip(comparison.cases["verdict"], comparison.cases["reason"])))


def test_small_changes_and_noisy_changes_do_not_count(run_a, tmp_path):
    rows = _slowed(scaling_rows(), 1, 1.03)  # 3 %: under the threshold
    rows = _slowed(rows, 2, 1.2, spread=0.25)  # 20 %, but the new band overlaps the old one
    run_b = write_run(tmp_path / "b", rows)
    comparison, verdicts = _verdicts(run_a, run_b)
    assert comparison.counts()["regression"] == 0
    ids = [r["case_id"] for r in scaling_rows()]
    assert verdicts[ids[1]] == ("unchanged", "+3.0 %, within threshold")
    assert verdicts[ids[2]] == ("unchanged", "+20.0 %, within p20–p80 spread")
    # a lower threshold turns the 3 % change (bands ±5 %, so still overlapping) into noise, not a regression
    assert _verdicts(run_a, run_b, threshold=1.0)[1][ids[1]][0] == "unchanged"


def test_status_changes_and_cases_in_one_run_only(run_a, tmp_path):
    rows = scaling_rows(dense_oom_at=12544)  # dense at the largest N now runs out of memory
    rows = rows[1:] + [make_row(attention="new", tokens=196, latency_ms_median=1.0)]  # first case dropped
    run_b = write_run(tmp_path / "b", rows)
    comparison, verdicts = _verdicts(run_a, run_b)
    assert comparison.counts() == {"regression": 1, "improvement": 0, "flagged": 0, "unchanged": 6, "only in A": 1, "only in B": 1}
    oom_id = scaling_rows()[6]["case_id"]
    assert verdicts[oom_id] == ("regression", "status ok → oom")
    _, verdicts_back = _verdicts(run_b, run_a)
    assert verdicts_back[oom_id] == ("improvement", "status oom → ok")


def test_throughput_and_memory_metrics_point_the_right_way(run_a, tmp_path):
    run_b = write_run(tmp_path / "b", _slowed(scaling_rows(), 3, 1.5))
    comparison, _ = _verdicts(run_a, run_b, metric="throughput")
    assert comparison.counts()["regression"] == 1  # slower means fewer images per second
    rows = scaling_rows()
    rows[5] = dict(rows[5], peak_mem_mb=rows[5]["peak_mem_mb"] * 0.8)
    run_c = write_run(tmp_path / "c", rows)
    comparison, verdicts = _verdicts(run_a, run_c, metric="memory")
    assert comparison.counts()["improvement"] == 1
    assert verdicts[rows[5]["case_id"]] == ("improvement", "-20.0 %")


@pytest.mark.parametrize(
    "extra,message",
    [
        (("--metric", "speed"), "'speed' is not one of 'latency', 'throughput', 'memory'"),
        (("--threshold", "-1"), "threshold must be between 0 and 1e+06 %"),
    ],
)
def test_bad_options_fail_with_one_line(run_a, extra, message):
    result = invoke("compare", str(run_a), str(run_a), *extra)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_bad_run_dirs_fail_with_one_line(run_a, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.csv").write_text("")
    for other in (tmp_path / "nope", tmp_path / "empty"):
        for args in ((str(run_a), str(other)), (str(other), str(run_a))):
            result = invoke("compare", *args)
            assert result.exit_code == 2
            assert "Traceback" not in result.output
            assert len(result.stderr.strip().splitlines()) == 1


def test_a_case_flagged_in_either_run_is_left_out_not_a_regression(run_a, tmp_path):
    rows = _slowed(scaling_rows(), 3, 40.0)  # rpattention at N=784, 40x slower: what two busy processes did
    rows[3] = {**rows[3], "disturbed": True, "others_busy_cores": 1.98}
    run_b = write_run(tmp_path / "b", rows)
    result = invoke("compare", str(run_a), str(run_b), "--fail-on-regression")
    assert result.exit_code == 0, result.output
    assert "0 regressions, 0 improvements, 7 unchanged, 1 flagged (left out)" in result.output
    assert "B: disturbed: other processes kept 1.98 cores busy" in result.output


@pytest.mark.parametrize("field, a, b", [("device_name", "NVIDIA H100 80GB HBM3", "NVIDIA H200"),
                                         ("timer", "cuda_event", "cuda_graph")])
def test_runs_of_different_setups_are_warned_about_and_refused_as_a_gate(tmp_path, field, a, b):
    run_a = write_run(tmp_path / "a", [{**row, field: a} for row in scaling_rows()])
    run_b = write_run(tmp_path / "b", [{**row, field: b} for row in scaling_rows()])
    warned = invoke("compare", str(run_a), str(run_b))
    assert warned.exit_code == 0 and f"the runs differ in {field.split('_')[0]}: A {a}, B {b}" in warned.output
    gated = invoke("compare", str(run_a), str(run_b), "--fail-on-regression")
    assert gated.exit_code == 2 and "--force" in gated.output and "Traceback" not in gated.output
    forced = invoke("compare", str(run_a), str(run_b), "--fail-on-regression", "--force")
    assert forced.exit_code == 0 and "0 regressions" in forced.output


def test_torch_versions_and_rounds_are_compared_too(tmp_path):
    run_a = write_run(tmp_path / "a", scaling_rows())
    env_b = {**DEFAULT_ENV, "torch": "2.11.0"}
    rows_b = [{**row, "timing": '{"rounds":3}'} for row in scaling_rows()]
    run_b = write_run(tmp_path / "b", rows_b, env_b)
    from rpbench.analysis import run_differences

    a, b = store.load_run(run_a), store.load_run(run_b)
    assert run_differences(a.frame, a.env, b.frame, b.env) == ["torch: A 2.13.0, B 2.11.0", "rounds: A 1, B 3"]


def test_runs_without_a_shared_case_say_so(run_a, tmp_path):
    run_b = write_run(tmp_path / "b", [make_row(attention="other", tokens=n) for n in (196, 784)])
    result = invoke("compare", str(run_a), str(run_b))
    assert result.exit_code == 0 and "no shared cases" in result.output
    assert invoke("compare", str(run_a), str(run_b), "--fail-on-regression").exit_code == 1  # a gate on nothing fails


def test_compare_as_json(run_a, tmp_path):
    import json

    run_b = write_run(tmp_path / "b", _slowed(scaling_rows(), 3, 1.5))
    result = invoke("compare", str(run_a), str(run_b), "--json")
    payload = json.loads(result.stdout)
    assert payload["counts"]["regression"] == 1 and payload["shared"] == 8 and payload["differences"] == []
    regression = next(case for case in payload["cases"] if case["verdict"] == "regression")
    assert regression["ratio"] == pytest.approx(1.5) and regression["series"] == "rpattention"


def test_a_machine_that_drifted_between_two_runs_is_not_a_regression(tmp_path):
    """Run B is 20 % slower everywhere, as a drifting machine makes it: each row's p20–p80 band (±5 %, noise
    inside a pass) no longer overlaps A's, but the 95 % intervals, which hold the drift between passes (±25 %),
    do: nothing is a regression. With intervals as tight as the bands it would be one."""
    def with_interval(rows, half):
        return [{**row, "latency_ms_ci_low": row["latency_ms_median"] * (1 - half),
                 "latency_ms_ci_high": row["latency_ms_median"] * (1 + half), "latency_ci_method": "pass-t"}
                for row in rows]

    slowed = scaling_rows()
    for index in range(len(slowed)):
        slowed = _slowed(slowed, index, 1.2)
    run_a = write_run(tmp_path / "a", with_interval(scaling_rows(), 0.25))
    run_b = write_run(tmp_path / "b", with_interval(slowed, 0.25))
    comparison, verdicts = _verdicts(run_a, run_b)
    assert comparison.counts()["regression"] == 0 and comparison.spread == "95 % intervals"
    assert set(verdicts.values()) == {("unchanged", "+20.0 %, within 95 % intervals")}
    assert "beyond the 95 % intervals)" in comparison.summary_line()
    tight_b = write_run(tmp_path / "tight", with_interval(slowed, 0.04))
    tight_a = write_run(tmp_path / "tight-a", with_interval(scaling_rows(), 0.04))
    assert _verdicts(tight_a, tight_b)[0].counts()["regression"] == 8


def test_a_shift_common_to_every_case_is_the_machine_when_both_runs_measured_the_same_code(tmp_path):
    """B is every case of A 30 % slower (a cloud VM whose level moved between two runs a minute apart), and one case
    twice that. Same commit, clean checkouts, same torch: `--shift auto` takes the common shift out and finds only
    the case that moved on its own; `--shift keep`, or runs of different commits under auto, judge as measured."""
    from fake_runs import scaled

    rows = [scaled(row, 1.3) for row in scaling_rows()]
    rows[5] = scaled(scaling_rows()[5], 2.6)
    env = {**DEFAULT_ENV, "git_commit": "c0ffee", "git_dirty": False}
    run_a = write_run(tmp_path / "a", scaling_rows(), env=env)
    run_b = write_run(tmp_path / "b", rows, env=env)
    auto = invoke("compare", str(run_a), str(run_b), "--fail-on-regression")
    assert auto.exit_code == 1
    assert "moved together by +30.0 % (median of B/A); verdicts are beyond it" in auto.output
    assert "1 regression, 0 improvements, 7 unchanged" in auto.output and "beyond the common shift" in auto.output
    kept = invoke("compare", str(run_a), str(run_b), "--shift", "keep")
    assert "8 regressions" in kept.output and "verdicts include it (--shift remove judges beyond it)" in kept.output
    other = write_run(tmp_path / "other", rows, env={**env, "git_commit": "decade"})
    assert "8 regressions" in invoke("compare", str(run_a), str(other)).output  # another commit: maybe the code
    removed = invoke("compare", str(run_a), str(other), "--shift", "remove", "--json")
    assert '"shift_removed": true' in removed.output and '"regression": 1' in removed.output


def test_shift_of_three_runs_is_refused_in_one_line(run_a, tmp_path):
    run_b = write_run(tmp_path / "b", scaling_rows())
    run_c = write_run(tmp_path / "c", scaling_rows())
    result = invoke("compare", str(run_a), str(run_b), str(run_c), "--shift", "remove")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: --shift judges two runs; of three or more, each run's "
                                                  "speedup over the first is shown as measured"]
