"""The offline GPU images have no plotly: reports, sweeps and exports must work there, report.html with every
table and a sentence instead of figures."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fake_runs import scaling_rows, write_run

BLOCK_PLOTLY = """
import sys
class _NoPlotly:
    def find_spec(self, name, path=None, target=None):
        if name == "plotly" or name.startswith("plotly."):
            raise ImportError("No module named 'plotly'")
        return None
sys.meta_path.insert(0, _NoPlotly())
from rpbench.cli import main
sys.argv = ["rpbench"] + sys.argv[1:]
main()
"""


def _rpbench_without_plotly(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_PLOTLY, *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_report_without_plotly_prints_tables_and_writes_a_page_without_figures(tmp_path):
    run = write_run(tmp_path / "run", scaling_rows())
    result = _rpbench_without_plotly("report", str(run), "--html")
    assert result.returncode == 0, result.stderr
    assert "Cases" in result.stdout and "Scaling with N" in result.stdout and "rpattention" in result.stdout
    page = (run / "report.html").read_text()
    assert "No figures: plotly is not importable here" in page and 'content="0"' in page and "rpattention" in page


def test_a_sweep_without_plotly_runs_and_reports(tmp_path):
    from cli_helpers import tiny_suite

    out = tmp_path / "out"
    result = _rpbench_without_plotly("sweep", str(tiny_suite(tmp_path, names=("dense",), tokens="16")),
                                     "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "report.html").exists() and "No figures" in (out / "report.html").read_text()
