"""A results dir written by rpbench before the restructure still resumes and compares (ids, columns, files)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import rpbench
from rpbench.cli import app
from old_runs import OLD_RUN, measured_on


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_resume_of_an_old_run_dir_finds_every_case_done(old_run):
    run = old_run
    before = (run / "results.csv").read_bytes()
    result = invoke("sweep", "--resume", str(run), "--no-report")
    assert result.exit_code == 0, result.output
    assert "4 case(s) already done were skipped" in result.output
    assert (run / "results.csv").read_bytes() == before


def test_resume_of_an_old_run_dir_on_another_cpu_model_is_refused(old_run, as_measured_on):
    """The same dir on a machine with another CPU model: refused in one line, nothing changed."""
    as_measured_on("Another CPU 9000")
    before = {path.name: path.read_bytes() for path in old_run.iterdir() if path.is_file()}
    result = invoke("sweep", "--resume", str(old_run), "--no-report")
    assert result.exit_code == 2, result.output
    assert f"cpu rows were measured on {measured_on(OLD_RUN)}, this machine runs Another CPU 9000" in result.output
    assert {path.name: path.read_bytes() for path in old_run.iterdir() if path.is_file()} == before


@pytest.mark.slow
def test_compare_matches_every_case_of_an_old_run_with_a_new_one(tmp_path):
    new = tmp_path / "new"
    result = invoke("sweep", str(OLD_RUN / "suite.toml"), "--out", str(new), "--no-report")
    assert result.exit_code == 0, result.output
    assert sorted(rpbench.load(new)["case_id"]) == sorted(rpbench.load(OLD_RUN)["case_id"])
    compared = invoke("compare", str(OLD_RUN), str(new), "--threshold", "1000")
    assert compared.exit_code == 0, compared.output
    assert "0 only in A, 0 only in B" in compared.output


def test_an_old_run_dir_reports_without_a_reference_kernel_and_says_so():
    """No reference kernel, no rounds, no intervals in its rows: the report says the drift is unknown, keeps the
    old unstable rule, and gives every row the interval its single pass allows (named as such)."""
    from rpbench.analysis import analyse_run
    from rpbench.results import store

    result = invoke("report", str(OLD_RUN))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("machine drift unknown: this run has no reference kernel timings")
    run = store.load_run(OLD_RUN)
    assert store.run_drift(OLD_RUN) is None
    summary = analyse_run(run.frame, run.env, samples=run.samples).summary
    assert set(summary["latency_ci_method"].dropna()) == {"within-pass"}
    assert (summary["latency_ms_ci_low"] <= summary["latency_ms_median"]).all()
