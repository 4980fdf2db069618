"""rpbench report / export and report.html on hand-made runs: numbers shown, formats round-trip, bad input is one line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from html.parser import HTMLParser

import pandas as pd
import pytest
from typer.testing import CliRunner

from rpbench.results import store
from rpbench.cli import app
from rpbench.views.html import write_html

from fake_runs import DEFAULT_ENV, make_row, scaling_rows, write_run


def invoke(*args: str):
    # A wide virtual terminal so rich does not fold numbers across lines.
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "260"})


@pytest.fixture
def run_dir(tmp_path):
    rows = scaling_rows(dense_oom_at=12544)
    rows.append(make_row(attention="rpattention", m=32, knobs='{"m": 32}', tokens=3136, latency_ms_median=2.0,
                         trace="traces/rp_m32.json.gz"))
    rows.append(make_row(attention="rpattention", m=128, knobs='{"m": 128}', tokens=3136, latency_ms_median=6.0))
    return write_run(tmp_path / "run", rows, env=dict(DEFAULT_ENV, ceilings={"bfloat16": 700.0}))


def test_my_modules_do_not_import_torch():
    """Every module of the views, analysis, results and core rooms, imported for real in a fresh interpreter."""
    import pkgutil

    import rpbench

    rooms = ("core", "results", "analysis", "views")
    modules = [f"rpbench.{room}.{info.name}" for room in rooms
               for info in pkgutil.iter_modules([str(Path(rpbench.__file__).parent / room)])]
    code = f"import sys, importlib; [importlib.import_module(m) for m in {modules!r}]; " \
           "assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_report_command_shows_the_key_numbers(run_dir):
    (run_dir / "report.html").unlink(missing_ok=True)
    assert invoke("report", str(run_dir)).exit_code == 0
    assert not (run_dir / "report.html").exists()  # HTML only when asked
    result = invoke("report", str(run_dir), "--html")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "0.0768 ±5% ◆" in out and "19.7 ±5%" in out  # dense medians at N=196 (the fastest) and N=3136
    assert "n/a (3 sizes)" in out  # dense latency has three ok sizes: no exponent from fewer than four
    assert "1.00 [0.98, 1.02] n=4" in out  # rpattention's latency exponent with its bootstrap interval
    assert "faster from N ≈ 500 [467–538] (≈ 358 px)" in out
    assert " oom " in out and "oom: not measured" in out  # in the grid, and the legend says where the reason is
    assert "CUDA out of memory" not in out and "6.27×" not in out  # the case table is behind --cases
    assert (run_dir / "report.html").is_file()
    assert f"report: {run_dir / 'report.html'}" in out.replace("\n", "")
    cases = invoke("report", str(run_dir), "--cases").output
    assert "6.27× [5.67–6.93]" in cases  # rpattention vs dense at N=3136: 19.67/3.136 with p20/p80 bounds
    assert "oom: CUDA out of memory" in cases
    assert "0.6%" in cases  # 6.14 TFLOP/s of the H100's 989.5 bf16 peak
    assert "1.00 [1.00, 1.00] n=4 R²=1.000" in cases  # the full scaling table: R² and the interval method


def test_a_run_measured_with_the_test_seam_says_so_above_the_grids(tmp_path):
    """RPBENCH_ASSUME_QUIET (rpbench's own tests) hides other processes' load: a run measured with it says so."""
    quiet = write_run(tmp_path / "quiet", scaling_rows(), env=dict(DEFAULT_ENV, assume_quiet=True))
    out = invoke("report", str(quiet)).output
    assert out.index("RPBENCH_ASSUME_QUIET") < out.index("Median latency per call")
    assert "no row of this run could be flagged disturbed" in out.replace("\n", " ")
    assert "RPBENCH_ASSUME_QUIET" not in invoke("report", str(write_run(tmp_path / "plain", scaling_rows()))).output
    assert invoke("report", str(quiet), "--html").exit_code == 0
    assert "no row of this run could be flagged disturbed" in (quiet / "report.html").read_text()


@pytest.mark.parametrize("metric,expected", [("memory", "less memory from N ≈ 500"), ("throughput", "higher throughput from")])
def test_report_other_metrics(run_dir, metric, expected):
    result = invoke("report", str(run_dir), "--metric", metric)
    assert result.exit_code == 0, result.output
    assert expected in result.output


def test_report_with_an_explicit_baseline(run_dir):
    result = invoke("report", str(run_dir), "--baseline", "rpattention (m=64)")
    assert result.exit_code == 2  # series names are not labels
    result = invoke("report", str(run_dir), "--baseline", "rpattention")
    assert result.exit_code == 0, result.output
    assert "crossover vs rpattention (latency)" in result.output
    assert "latency vs rpattention [95 % CI]" in invoke("report", str(run_dir), "--baseline", "rpattention",
                                                        "--cases").output


def test_report_without_a_dense_baseline(tmp_path):
    rows = [make_row(attention="lin", tokens=n, latency_ms_median=1e-3 * n) for n in (196, 784, 3136)]
    write_run(tmp_path / "run", rows)
    result = invoke("report", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "vs dense" not in result.output
    assert "No exponent: a curve needs 4 measured sizes or more to fit one (here at most 3)" in result.output
    assert "n/a (3 sizes)" in invoke("report", str(tmp_path / "run"), "--cases").output


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.csv").write_text("")
    header_only = tmp_path / "header_only"
    header_only.mkdir()
    (header_only / "results.csv").write_text(",".join(store.COLUMNS) + "\n")
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "results.csv").write_text("case_id,tokens\nabc,196\n")
    no_results = tmp_path / "no_results"
    no_results.mkdir()
    return {
        "no such dir": (str(tmp_path / "nope"), "no such file"),
        "not a results dir": (str(no_results), "not a results dir"),
        "empty results.csv": (str(empty), "empty file"),
        "header only": (str(header_only), "no rows"),
        "missing columns": (str(missing), "missing column"),
    }


@pytest.mark.parametrize("command", ["report", "export"])
def test_bad_run_dirs_fail_with_one_line(tmp_path, command):
    for name, (path, message) in _bad_inputs(tmp_path).items():
        result = invoke(command, path)
        assert result.exit_code == 2, name
        assert "Traceback" not in result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (name, result.stderr)


@pytest.mark.parametrize(
    "args,message",
    [
        (("report", "{run}", "--metric", "speed"), "'speed' is not one of 'latency', 'throughput', 'memory'"),
        (("report", "{run}", "--baseline", "flash"), "baseline 'flash' is not in this run"),
        (("export", "{run}", "--format", "xlsx"), "'xlsx' is not one of 'csv', 'parquet', 'json', 'md', 'html'"),
        (("export", "{run}", "--format", "md", "--baseline", "flash"), "baseline 'flash'"),
        (("export", "{run}", "--out", "{run}/no/such/dir/x.csv"), "no such directory"),
        (("export", "{run}", "--out", "{run}"), "is a directory"),
    ],
)
def test_bad_options_fail_with_one_line(run_dir, args, message):
    result = invoke(*(a.format(run=run_dir) for a in args))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_every_option_has_help():
    for command in ("report", "export", "compare"):
        result = invoke(command, "--help")
        assert result.exit_code == 0
        click_command = next(c for c in _commands() if c.name == command)
        for param in click_command.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{command} {param.name} has no help"


def _commands():
    import typer.main

    return typer.main.get_command(app).commands.values()


def test_export_csv_round_trips(run_dir):
    result = invoke("export", str(run_dir), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert (run_dir / "export.csv").is_file()
    pd.testing.assert_frame_equal(store.load(run_dir / "export.csv"), store.load(run_dir))


def test_export_parquet_round_trips(run_dir, tmp_path):
    out = tmp_path / "cases.parquet"
    result = invoke("export", str(run_dir), "--format", "parquet", "--out", str(out))
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out), store.load(run_dir))


def test_export_json_is_one_record_per_case(run_dir):
    assert invoke("export", str(run_dir), "--format", "json").exit_code == 0
    records = json.loads((run_dir / "export.json").read_text())
    original = store.load(run_dir)
    assert len(records) == len(original)
    assert set(records[0]) == set(store.COLUMNS)
    assert records[0]["case_id"] == original["case_id"].iloc[0]
    assert records[0]["latency_ms_median"] == pytest.approx(float(original["latency_ms_median"].iloc[0]))
    oom = next(r for r in records if r["status"] == "oom")
    assert oom["latency_ms_median"] is None and oom["notes"] == "CUDA out of memory"


def test_export_markdown_table(run_dir):
    assert invoke("export", str(run_dir), "--format", "md", "--table", "cases").exit_code == 0
    table, note = (run_dir / "export.md").read_text().split("\n\n")
    lines = table.splitlines()
    cases = len(store.load(run_dir))
    assert len(lines) == cases + 2
    assert note.startswith("Speedups are round-paired")
    assert lines[0].startswith("| mechanism | N |") and lines[1].startswith("|---|")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert any("| 6.27× [5.67–6.93] |" in line for line in lines)
    assert any("oom: CUDA out of memory" in line for line in lines)


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data):
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data.strip()


def test_export_html_table(run_dir):
    assert invoke("export", str(run_dir), "--format", "html").exit_code == 0
    parser = _Cells()
    parser.feed((run_dir / "export.html").read_text())
    header, *rows = parser.rows
    assert header[:2] == ["mechanism", "N"]
    assert len(rows) == len(store.load(run_dir))
    assert ["dense", "196"] == rows[0][:2]


def test_report_html_is_self_contained(run_dir):
    page = write_html(run_dir).read_text()
    assert page.count("plotly.js v") == 1  # the library inlined exactly once
    assert "<script src=" not in page and 'rel="stylesheet"' not in page
    figures = int(page.split('name="rpbench-figures" content="')[1].split('"')[0])
    assert figures == 8  # latency, memory, throughput vs resolution, latency vs M, FLOPs, TFLOP/s, 2 speedups
    assert page.count('class="plotly-graph-div"') == figures
    for expected in ("Latency per call vs tokens", "latency (ms)", "peak memory (MiB)", "image side (px)",
                     "representatives M", "achieved TFLOP", "Latency speedup over dense"):
        assert expected in page
    assert "rpbench sweep suites/layer.toml --out runs/fake" in page  # the command to reproduce
    for value in ("NVIDIA H100 80GB HBM3", "2.13.0", "12.8", "0123abcd"):
        assert value in page
    assert '<a href="traces/rp_m32.json.gz">' in page
    assert "faster from N ≈ 500 [467–538] (≈ 358 px)" in page
    assert "n/a (3 sizes)" in page and "1.00 [1.00, 1.00]" in page  # dense: 3 ok sizes, rp: 4
    cases = _Cells()
    cases.feed(page.split("<h2>Cases</h2>")[1].split("<h2>")[0])
    header, *rows = cases.rows
    assert len(rows) == len(store.load(run_dir)) and {len(r) for r in rows} == {len(header)}
    first = dict(zip(header, rows[0]))
    assert first["mechanism"] == "dense" and first["median ms"] == "0.0768" and first["% datasheet peak"] == "0.6%"
    assert first["% measured ceiling"] == "0.9%"  # 6.14 of the 700 TFLOP/s recorded in env.json


def test_report_html_facets_and_no_figures(tmp_path):
    rows = [make_row(attention="dense", tokens=n, latency_ms_median=1e-6 * n * n, dtype=d) for n in (196, 784)
            for d in ("float16", "bfloat16")]
    write_run(tmp_path / "facets", rows)
    page = write_html(tmp_path / "facets").read_text()
    assert "dtype=bfloat16" in page and "dtype=float16" in page  # one subplot title per dtype
    write_run(tmp_path / "failed", [make_row(attention="dense", status="error", notes="boom")])
    page = write_html(tmp_path / "failed").read_text()
    assert 'content="0"' in page and "plotly.js v" not in page and "error: boom" in page


def test_html_hides_empty_columns_and_names_a_cpu_run(tmp_path):
    rows = [make_row(attention=name, tokens=n, resolution=None, device="cpu", device_name="Some CPU",
                     latency_ms_median=1e-3 * n) for name in ("dense", "lin") for n in (196, 784, 3136, 12544)]
    write_run(tmp_path / "run", rows)
    (tmp_path / "run" / "env.json").write_text('{"torch": "2.13.0+cpu", "cuda": null, "cuda_available": false}')
    page = write_html(tmp_path / "run").read_text()
    assert "res px" not in page and "% measured ceiling" not in page  # no resolution, no ceiling: no column
    assert "none (this torch has no CUDA)" in page and "<dt>CUDA</dt><dd>not recorded</dd>" not in page


def test_the_scaling_table_tells_fwd_from_fwdbwd(tmp_path):
    rows = [make_row(attention="rpattention", tokens=n, mode=mode, case_id=f"{mode}-{n}",
                     latency_ms_median=(3e-3 if mode == "fwdbwd" else 1e-3) * n)
            for mode in ("fwd", "fwdbwd") for n in (196, 784, 3136, 12544)]
    write_run(tmp_path / "run", rows)
    shown = " ".join(invoke("report", str(tmp_path / "run")).output.replace("│", " ").split())
    assert "rpattention · mode=fwd 1.00" in shown and "rpattention · mode=fwdbwd 1.00" in shown
