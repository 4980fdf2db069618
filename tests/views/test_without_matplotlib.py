"""Without matplotlib (the offline GPU images lack it): report.html keeps its plotly figures, and what needs
matplotlib (static figures, routing maps) says so in one line, exit 2, before writing anything."""
from __future__ import annotations

from cli_helpers import rpbench_without
from fake_runs import scaling_rows, write_run


def test_report_html_keeps_its_figures_and_static_ones_are_refused_in_one_line(tmp_path):
    run = write_run(tmp_path / "run", scaling_rows())
    result = rpbench_without("matplotlib", "report", str(run), "--html")
    assert result.returncode == 0, result.stderr
    assert 'class="plotly-graph-div"' in (run / "report.html").read_text()
    for args in (("report", str(run), "--figures", str(tmp_path / "figs")),
                 ("export", str(run), "--format", "figures")):
        result = rpbench_without("matplotlib", *args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            "error: static figures need matplotlib, which is not importable here (No module named 'matplotlib'); "
            "pip install matplotlib"]
    assert not (tmp_path / "figs").exists() and not (run / "figures").exists()


def test_maps_without_matplotlib_is_one_line_before_any_work(tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(b"not read: matplotlib is checked first")
    result = rpbench_without("matplotlib", "maps", "--attention", "rpattention", "--image", str(image),
                                         "--out", str(tmp_path / "maps"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[0].startswith("error: routing maps need matplotlib")
    assert not (tmp_path / "maps").exists()
