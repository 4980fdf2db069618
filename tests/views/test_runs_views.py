"""report, export and compare of several runs, end to end through the CLI: tables, pages, figures and one file
for many runs that pandas and pyarrow read back without rpbench."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rpbench.cli import app

from multi_runs import A100, commit_runs, device_runs, wide_consoles  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("wide_consoles")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "260"})


@pytest.fixture(scope="module")
def devices(tmp_path_factory):
    return [str(p) for p in device_runs(tmp_path_factory.mktemp("devices"))]


@pytest.fixture(scope="module")
def commits(tmp_path_factory):
    return [str(p) for p in commit_runs(tmp_path_factory.mktemp("commits"))]


@pytest.fixture
def drawn(monkeypatch):
    """Figures "rendered" as their key and panel titles (matplotlib takes seconds; test_figures renders for real)."""
    from rpbench.views import static

    monkeypatch.setattr(static, "render", lambda figure, fmt: " | ".join(
        [figure.key, *(f"{p.title}: {', '.join(s.name for s in p.series)}" for p in figure.panels)]).encode())


def test_report_of_several_runs_prints_the_legend_the_matrix_and_each_runs_fits(devices, tmp_path, drawn):
    page = tmp_path / "runs.html"
    result = invoke("report", *devices, "--label", f"{devices[1]}=A100 box", "--html", "--out", str(page),
                    "--figures", str(tmp_path / "figs"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert A100 in out and "A100 box" in out
    assert "A100 box × h100" in out and "0.50× [0.45–0.55]" in out  # twice as slow, 0.5 × 0.95/1.05 .. 1.05/0.95
    assert out.count("faster from N ≈ 500 [467–538]") == 2  # each run's own crossover
    text = page.read_text()
    assert 'name="rpbench-figures" content="7"' in text and text.count("Plotly.newPlot") == 7
    assert text.count(f"{A100} \\u00b7 A100 box") == 7  # a panel per device in each figure, titled with its run
    assert (tmp_path / "figs" / "latency-vs-tokens.svg").read_text() == (
        f"latency-vs-tokens | {A100} · A100 box: dense, rpattention | NVIDIA H100 80GB HBM3 · h100: dense, "
        f"rpattention")


def test_one_run_given_by_a_glob_reports_as_it_always_did(devices):
    direct = invoke("report", devices[0])
    pattern = invoke("report", devices[0][:-1] + "*")
    assert direct.exit_code == pattern.exit_code == 0
    assert pattern.output == direct.output and "Runs" not in direct.output


@pytest.mark.parametrize("args, message", [
    (["--html"], "--html with several runs needs --out FILE"),
    (["--out", "x.html"], "--out is where --html writes the page"),
    (["--label", "nosuch=x"], "nosuch is not one of the runs given"),
    (["--baseline", "nosuch"], "run h100 "),
])
def test_report_of_several_runs_refuses_bad_options_with_one_line(devices, args, message):
    result = invoke("report", *devices, *args)
    assert result.exit_code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_compare_of_three_runs_gives_the_matrix_and_gates(commits, devices):
    result = invoke("compare", *commits, "--fail-on-regression")
    assert result.exit_code == 1, result.output  # run-c3 regressed against run-c1
    assert "0.50× [0.45–0.55] regression" in result.output
    assert "run-c3 vs run-c1: 1 regression, 0 improvements, 7 unchanged" in result.output
    assert "run-c2 vs run-c1: 0 regressions, 0 improvements, 8 unchanged" in result.output
    fine = invoke("compare", commits[0], commits[1], commits[0] + "/results.csv", "--fail-on-regression")
    assert fine.exit_code == 2 and "given twice" in fine.stderr
    mixed = invoke("compare", *devices, commits[0], "--fail-on-regression")
    assert mixed.exit_code == 2 and "differ from the first in" in mixed.stderr and "device" in mixed.stderr
    assert "warning: a100 differs from h100 in device" in mixed.stderr
    data = json.loads(invoke("compare", *commits, "--json").stdout)
    assert [run["run"] for run in data["runs"]] == ["run-c1", "run-c2", "run-c3"]
    assert data["counts"]["run-c3"]["regression"] == 1
    assert sum(case["verdict"] == "regression" for case in data["cases"]) == 1
    one = invoke("compare", commits[0])
    assert one.exit_code == 2 and "compare needs two runs or more" in one.stderr


READ_BACK = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "rpbench" or name.startswith("rpbench."):
            raise ImportError("no rpbench here")
sys.meta_path.insert(0, Blocked())
import pandas, pyarrow.parquet
table = pyarrow.parquet.read_table(sys.argv[1])
frame = pandas.read_parquet(sys.argv[1])
by_run = frame.groupby("run")["latency_ms_median"].sum()
print(table.num_rows, list(frame.columns[:3]), round(by_run["a100"] / by_run["h100"], 6), frame["run_device"].nunique())
"""


def test_one_parquet_file_for_many_runs_reads_back_without_rpbench(devices, tmp_path):
    out = tmp_path / "all.parquet"
    result = invoke("export", *devices, "--format", "parquet", "--out", str(out))
    assert result.exit_code == 0, result.output
    done = subprocess.run([sys.executable, "-c", READ_BACK, str(out)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["16", "['run',", "'run_dir',", "'run_device']", "2.0", "2"]


def test_export_of_several_runs_in_the_readable_formats(devices, tmp_path, drawn):
    md = invoke("export", *devices, "--format", "md", "--out", str(tmp_path / "t.md"))
    assert md.exit_code == 0, md.output
    text = (tmp_path / "t.md").read_text()
    assert "**Table 1.** Run h100: Median latency per call" in text and "**Table 2.** Run a100:" in text
    assert invoke("export", *devices, "--format", "csv", "--out", str(tmp_path / "t.csv")).exit_code == 0
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("run,run_dir,run_device,")
    cases = invoke("export", *devices, "--format", "html", "--out", str(tmp_path / "t.html"))
    assert cases.exit_code == 0 and "<th>run</th>" in (tmp_path / "t.html").read_text()
    figures = invoke("export", *devices, "--format", "figures", "--out", str(tmp_path / "figs"))
    assert figures.exit_code == 0
    assert (tmp_path / "figs" / "speedup-vs-tokens.pdf").read_text().startswith(f"speedup-vs-tokens | {A100} · a100")
    missing = invoke("export", *devices, "--format", "csv")
    assert missing.exit_code == 2 and "several runs need --out FILE" in missing.stderr
