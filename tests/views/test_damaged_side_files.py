"""A run dir whose env.json, run.json, rounds.csv or samples.csv is damaged still reports, exports and compares from
results.csv, and says so: one warning line naming the file, what is wrong and what the command left out."""
from __future__ import annotations

import shutil

import pytest

from cli_helpers import invoke
from fake_runs import scaling_rows, write_run

DAMAGE = {
    "env.json": ("[1, 2]", "env.json: holds a JSON list, not an object; left out: the environment"),
    "run.json": ("{not json", "run.json: unreadable (JSONDecodeError); left out: nothing shown here"),
    "rounds.csv": ("case_id,round\nabc,1,2,3\n", "rounds.csv: line 2 has 4 fields, the header 2"),
    "samples.csv": ("case_id,round,ms\nabc,0\n", "samples.csv: line 2 has 2 fields, the header 3"),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("damage") / "clean", scaling_rows())


def damaged(clean, tmp_path, name):
    run = tmp_path / "run"
    shutil.copytree(clean, run)
    (run / name).write_text(DAMAGE[name][0])
    return run


@pytest.mark.parametrize("name", DAMAGE)
def test_report_and_export_name_the_damaged_file_and_go_on(clean, tmp_path, name):
    run = damaged(clean, tmp_path, name)
    for args, shown in ((("report", str(run)), "Median latency per call"),
                        (("export", str(run), "--format", "md", "--out", str(tmp_path / "t.md")), "wrote ")):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert shown in result.stdout
        warnings = result.stderr.strip().splitlines()
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: {run / name}: "), warnings
        assert DAMAGE[name][1] in warnings[0] and "left out: " in warnings[0]


def test_the_intervals_left_out_are_said(clean, tmp_path):
    run = damaged(clean, tmp_path, "samples.csv")
    result = invoke("report", str(run), "--cases")
    assert "left out: the bootstrap intervals" in result.stderr
    assert "†" in result.stdout  # the speedups' p20–p80 fallback, marked


def test_compare_names_the_damaged_file_of_either_run(clean, tmp_path):
    run = damaged(clean, tmp_path, "env.json")
    result = invoke("compare", str(clean), str(run))
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        f"warning: {run / 'env.json'}: holds a JSON list, not an object; left out: the check that both runs used "
        f"the same torch"]


def test_a_clean_run_dir_warns_of_nothing(clean):
    result = invoke("report", str(clean))
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("name", ["env.json", "samples.csv"])
def test_commands_on_several_runs_name_the_damaged_file_of_each(tmp_path, name):
    """report, export, compare and history of several runs: the damaged file of the one run is named, once."""
    from fake_runs import DEFAULT_ENV

    def rows(day: int) -> list[dict]:  # rows that say when they were measured: a run without env.json is placed
        return [{**row, "started_at": f"2026-12-0{day}T10:00:00+00:00"} for row in scaling_rows()]

    first = write_run(tmp_path / "first", rows(1), {**DEFAULT_ENV, "collected_at": "2026-12-01T10:00:00+00:00"})
    other = write_run(tmp_path / "other", rows(2), {**DEFAULT_ENV, "collected_at": "2026-12-02T10:00:00+00:00"})
    run = damaged(first, tmp_path, name)
    commands = [("report", str(other), str(run)),
                ("export", str(other), str(run), "--format", "csv", "--out", str(tmp_path / "all.csv")),
                ("compare", str(first), str(other), str(run))]
    if name == "env.json":  # history reads no samples (it judges by the p20–p80 rule of compare)
        commands.append(("history", str(other), str(run)))
    for args in commands:
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
        warnings = [line for line in result.stderr.strip().splitlines() if line.startswith("warning: ")]
        assert len(warnings) == 1 and warnings[0].startswith(f"warning: {run / name}: "), (args, warnings)
        assert DAMAGE[name][1].split("; left out")[0] in warnings[0] and "left out: " in warnings[0]
