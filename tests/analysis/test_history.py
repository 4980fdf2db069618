"""rpbench history: runs ordered by commit or time, each case followed per device model, changes beyond noise marked
by the rules of compare (a planted 2x slowdown is marked, two identical runs mark nothing)."""
from __future__ import annotations

import pytest

from rpbench.analysis import get_metric
from rpbench.analysis.history import history, order_runs
from rpbench.core.errors import AnalysisError
from rpbench.results.runs import load_runs

from cli_helpers import invoke
from fake_runs import DEFAULT_ENV, rp_latency, scaled, scaling_rows, write_run
from multi_runs import A100, COMMITS, SLOWED, commit_runs, env, wide_consoles  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("wide_consoles")

LATENCY = get_metric("latency")


@pytest.fixture(scope="module")
def commits(tmp_path_factory):
    return commit_runs(tmp_path_factory.mktemp("commits"))


@pytest.fixture(scope="module")
def by_commit(commits):
    return history(load_runs(commits[::-1]), LATENCY, by="commit")  # given in any order


def test_history_by_commit_marks_the_planted_slowdown_and_nothing_else(by_commit):
    found = by_commit
    assert found.labels == [f"{c[:8]} run-{c[:2]}" for c in COMMITS]  # by committer date, not sweep date or as given
    changes = found.changes()
    assert len(changes) == 1
    change = changes.iloc[0]
    assert (change["name"], change["tokens"], change["run"], change["verdict"]) == ("rpattention", 784, "run-c3",
                                                                                     "regression")
    assert change["ratio"] == pytest.approx(2.0) and change["value"] == pytest.approx(2 * rp_latency(784))
    assert found.summary_line().startswith("1 regression, 0 improvements beyond noise over 3 runs ordered by commit")


def test_history_by_time_follows_the_sweep_dates(commits):
    found = history(load_runs(commits), LATENCY, by="time")
    assert [f.name for f in found.runs] == ["run-c3", "run-c2", "run-c1"]  # swept c3 first (a bisect)
    change = found.changes().iloc[0]
    assert len(found.changes()) == 1 and change["run"] == "run-c2" and change["verdict"] == "improvement"


def test_two_identical_runs_mark_nothing(tmp_path):
    runs = [write_run(tmp_path / name, scaling_rows(), env=env(day)) for name, day in (("a", 1), ("b", 2))]
    found = history(load_runs(runs), LATENCY)
    assert found.changes().empty
    assert set(found.points.loc[found.points["position"] == 1, "verdict"]) == {"unchanged"}


def test_devices_have_their_own_history_and_a_gap_is_bridged(tmp_path):
    """An A100 run 2x slower between two H100 runs is no change of either; a case missing from the middle H100 run
    is judged against the last run that measured it."""
    first = write_run(tmp_path / "h1", scaling_rows(), env=env(1))
    a100 = write_run(tmp_path / "a", [scaled(r, 2.0, device_name=A100) for r in scaling_rows()], env=env(2))
    middle = write_run(tmp_path / "h2", [r for i, r in enumerate(scaling_rows()) if i != SLOWED], env=env(3))
    rows = scaling_rows()
    rows[SLOWED] = scaled(rows[SLOWED], 1.5)
    last = write_run(tmp_path / "h3", rows, env=env(4))
    found = history(load_runs([first, a100, middle, last]), LATENCY)
    assert set(found.points["device"]) == {A100, "NVIDIA H100 80GB HBM3"}
    assert found.points.loc[found.points["device"] == A100, "verdict"].isna().all()  # its first and only point
    change = found.changes()
    assert len(change) == 1 and change.iloc[0]["run"] == "h3" and change.iloc[0]["ratio"] == pytest.approx(1.5)


def test_runs_that_cannot_be_placed_are_named(tmp_path):
    no_commit = write_run(tmp_path / "nocommit", scaling_rows(), env=env(1, commit=None))
    no_date = write_run(tmp_path / "nodate", scaling_rows(), env=dict(DEFAULT_ENV))
    with pytest.raises(AnalysisError, match="run nocommit .*no git commit of the project recorded"):
        order_runs(load_runs([no_commit]), "commit")
    with pytest.raises(AnalysisError, match="run nodate .*no date recorded"):
        order_runs(load_runs([no_date]), "time")
    with pytest.raises(AnalysisError, match="no git commit of package rpbench-example-plugin"):
        order_runs(load_runs([no_date]), "commit", commit_of="rpbench-example-plugin")


def test_history_can_follow_a_plugins_commits(tmp_path):
    """--commit-of orders by the commit env.json `code` recorded for one package (a plugin under development)."""
    dirs = []
    for day, (commit, when) in enumerate((("bbb", "2025-01-02"), ("aaa", "2025-01-01")), 1):
        code = {"my-plugin": {"version": "0.1", "commit": commit * 4, "commit_time": f"{when}T00:00:00+00:00"}}
        dirs.append(write_run(tmp_path / commit, scaling_rows(), env=env(day, code=code)))
    assert [label for _, label in order_runs(load_runs(dirs), "commit", "my-plugin")] == ["aaaaaaaa aaa",
                                                                                         "bbbbbbbb bbb"]


def test_history_command_prints_marks_writes_the_page_and_gates(commits, tmp_path):
    page = tmp_path / "history.html"
    result = invoke("history", *map(str, commits), "--by", "commit", "--html", str(page), "--label",
                    f"{commits[2]}=slow", "--fail-on-regression")
    assert result.exit_code == 1, result.output  # the last run regressed
    assert "▲ 1.57 (+100 %)" in result.output and "c3333333 slow" in result.output
    assert 'name="rpbench-figures" content="2"' in page.read_text()  # dense and rpattention on one device
    bad = invoke("history", str(commits[0]), "--commit-of", "x")
    assert bad.exit_code == 2 and "--commit-of is for --by commit" in bad.output
