"""The offline GPU images have no plotly: reports, sweeps and exports must work there, report.html with every
table and a sentence instead of figures."""
from __future__ import annotations

import pytest
from cli_helpers import rpbench_without
from fake_runs import scaling_rows, write_run


pytestmark = pytest.mark.slow  # the fast lane leaves these out: a sweep and report in a subprocess without plotly

def test_report_without_plotly_prints_tables_and_writes_a_page_without_figures(tmp_path):
    run = write_run(tmp_path / "run", scaling_rows())
    result = rpbench_without("plotly", "report", str(run), "--html")
    assert result.returncode == 0, result.stderr
    assert "Median latency per call" in result.stdout and "Scaling with N" in result.stdout
    assert "rpattention" in result.stdout
    page = (run / "report.html").read_text()
    assert "No figures: plotly is not importable here" in page and 'content="0"' in page and "rpattention" in page


def test_a_sweep_without_plotly_runs_and_reports(tmp_path):
    from cli_helpers import tiny_suite

    out = tmp_path / "out"
    result = rpbench_without("plotly", "sweep", str(tiny_suite(tmp_path, names=("dense",), tokens="16")),
                                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "report.html").exists() and "No figures" in (out / "report.html").read_text()
