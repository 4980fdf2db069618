"""Every shipped command's output piped into a file or a CI log (not a terminal): no table cell is broken across
lines, long cells stay whole on one line, grids fold at 120 columns; `--width N` forces a width; in a terminal
the report fits the terminal's width."""
from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys

import pytest

from rpbench.core.diagnostics import Check, DoctorReport

from cli_helpers import invoke, tiny_suite
from fake_runs import make_row, scaling_rows, write_run

IMPLAUSIBLE = "implausible: N=196 took 88 ms but N=784 (more tokens and FLOPs) 0.6 ms"
app_module = importlib.import_module("rpbench.cli.app")  # the module (rpbench.cli.app is also the Typer app's name)
LONG = "a long detail that would wrap at eighty columns and names everything: " + "word " * 30


def broken_rows(text: str) -> list[str]:
    """Table rows that continue a cell of the row above (their first cell is empty): in a boxed table a body
    line `│   │ …`, in a rule-headed table (the grids) a row line that starts with two spaces."""
    broken = []
    lines = text.splitlines()
    rule_width = None
    for line in lines:
        if line.startswith("│"):
            cells = line.split("│")[1:-1]
            if cells and not cells[0].strip():
                broken.append(line)
        if re.fullmatch(r"─+ ?", line):
            rule_width = len(line)
            continue
        if rule_width is not None and len(line) == rule_width:
            if line.startswith("  "):
                broken.append(line)
        else:
            rule_width = None
    return broken


def one_line(text: str, *parts: str) -> None:
    """Each part appears whole on one line of `text`."""
    for part in parts:
        assert any(part in line for line in text.splitlines()), part


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rows = scaling_rows(dense_oom_at=12544)
    rows += [make_row(attention="cbsa", tokens=n, latency_ms_median=ms, flops_analytic=f)
             for n, ms, f in ((196, 88.0, 1_000), (784, 0.6, 4_000), (3136, 1.8, 16_000))]
    return write_run(tmp_path_factory.mktemp("piped") / "run", rows)


def test_report_piped_keeps_every_cell_whole(run_dir):
    result = invoke("report", str(run_dir), "--cases")
    assert result.exit_code == 0
    assert broken_rows(result.output) == []
    one_line(result.output, f"cbsa N=196: {IMPLAUSIBLE}", "faster from N ≈ 500 [467–538] (≈ 358 px)",
             "oom: CUDA out of memory")
    grid = result.output.split("marks:")[0]
    lines = grid.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("Median latency"))
    assert lines[0].startswith("machine drift unknown")  # the run's drift heads the report (this run has none)
    assert max(len(line) for line in lines[title + 1:]) <= app_module.PIPE_WIDTH


def test_a_real_pipe_is_not_a_terminal(run_dir):
    """Through an OS pipe, not the test runner: the same whole cells (rich would fold them at 80 columns)."""
    done = subprocess.run([sys.executable, "-m", "rpbench", "report", str(run_dir), "--cases"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "COLUMNS": "80"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert broken_rows(done.stdout) == [] and "\x1b[" not in done.stdout  # no colour codes in a file either
    one_line(done.stdout, f"cbsa N=196: {IMPLAUSIBLE}")


def test_width_forces_a_width_and_the_grid_folds_to_it(run_dir):
    result = invoke("report", str(run_dir), "--width", "40")
    assert result.exit_code == 0
    grid = result.output.split("marks:")[0]
    assert max(len(line) for line in grid.splitlines()) <= 40  # the title wraps at words, the grid folds
    assert sum(line.startswith(" mechanism ") for line in grid.splitlines()) >= 2 and broken_rows(grid) == []
    assert invoke("report", str(run_dir), "--width", "20").exit_code == 2  # fewer than 40 columns: refused


def test_in_a_terminal_the_report_fits_its_width(run_dir, monkeypatch):
    from rich.color import ColorSystem

    monkeypatch.setattr(app_module.console, "_force_terminal", True)
    monkeypatch.setattr(app_module.console, "_color_system", ColorSystem.STANDARD)
    result = invoke_in_terminal(monkeypatch, 80, "report", str(run_dir))
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    assert max(len(line) for line in text.splitlines()) <= 80 and broken_rows(text) == []
    assert "0.0768 ±5% ◆" in text and "\x1b[1;32m0.0768 ±5%" in result.output  # best: a mark and bold green


def invoke_in_terminal(monkeypatch, columns: int, *args: str):
    monkeypatch.setenv("COLUMNS", str(columns))
    return invoke(*args)


def test_compare_and_export_piped(run_dir, tmp_path):
    other = write_run(tmp_path / "b", scaling_rows(slow_factor=1.5))
    compared = invoke("compare", str(run_dir), str(other))
    assert broken_rows(compared.output) == [] and "regression" in compared.output
    exported = invoke("export", str(run_dir), "--format", "md", "--out", str(tmp_path / "table.md"))
    assert exported.exit_code == 0 and len(exported.output.strip().splitlines()) == 1


def test_the_catalog_and_the_environment_piped():
    listed = invoke("list")
    assert listed.exit_code == 0 and broken_rows(listed.output) == []
    import attentions

    one_line(listed.output, *(attentions.spec(name).paper for name in attentions.available()))
    one_line(listed.output, *(attentions.spec(name).state_dict_compat for name in ("agent", "biformer")))
    for command in ("suites", "env"):
        result = invoke(command)
        assert result.exit_code == 0 and broken_rows(result.output) == [], command


def test_doctor_piped(monkeypatch):
    from rpbench.machine import ceilings, doctor

    report = DoctorReport(device="cpu", device_name="Some CPU", ceilings={},
                          checks=[Check("cpu load", "fail", LONG, "wait until " + LONG), Check("timer", "pass", "ok")])
    monkeypatch.setattr(doctor, "run", lambda device: report)
    monkeypatch.setattr(ceilings, "save", lambda found: None)
    result = invoke("doctor")
    assert result.exit_code == 1 and broken_rows(result.output) == []
    one_line(result.output, LONG.strip(), "wait until " + LONG.strip())


def test_status_of_a_launched_run_piped(tmp_path):
    run = tmp_path / "launched"
    (run / "tasks" / "1").mkdir(parents=True)
    (run / "suite.toml").write_text('name = "x"\n')
    (run / "tasks" / "1" / "run.json").write_text("{}")
    (run / "slurm").mkdir()
    (run / "slurm" / "1.err").write_text("srun: error: " + LONG + "\n")
    launch = {"launcher": "slurm", "tasks": [["a"], ["b", "c"]],
              "jobs": [{"task": 1, "job_id": "4242_1", "stderr": "slurm/1.err"}]}
    (run / "launch.json").write_text(json.dumps(launch))
    result = invoke("status", str(run))
    assert result.exit_code == 0 and "stopped" in result.output and broken_rows(result.output) == []
    one_line(result.output, "srun: error: a long detail")


@pytest.mark.slow
def test_run_piped():
    measured = invoke("run", "--attention", "dense", "--tokens", "16", "--dim", "16", "--heads", "2", "--device",
                      "cpu", "--rounds", "1", "--warmup-ms", "0", "--repeat-ms", "1")
    assert measured.exit_code in (0, 1) and broken_rows(measured.output) == []
    one_line(measured.output, "latency_ms_median")


@pytest.mark.slow
def test_sweep_collect_and_profile_piped(tmp_path):
    """The sweep's progress lines and final grid, collect's lines, the profiler's tables."""
    swept = invoke("sweep", str(tiny_suite(tmp_path, tokens="16, 64")), "--out", str(tmp_path / "run"),
                   "--no-report")
    assert swept.exit_code == 0 and broken_rows(swept.output) == []
    one_line(swept.output, "rpattention 8x8 m=4 b1 float32 fwd cpu: ")  # a progress line, whole
    collected = invoke("collect", str(tmp_path / "run"))
    assert collected.exit_code == 0 and broken_rows(collected.output) == []
    profiled = invoke("profile", "--attention", "dense", "--tokens", "16", "--dim", "16", "--heads", "2",
                      "--device", "cpu", "--wait", "0", "--warmup", "1", "--active", "1", "--out",
                      str(tmp_path / "profile"))
    assert profiled.exit_code == 0 and broken_rows(profiled.output) == []
