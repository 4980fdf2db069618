"""A run dir under attack: two writers, bad --out/--resume paths, damaged files, a full disk, resumes that would mix
two sweeps or build on lost data, a dir left by a failed start. Each gives one line and loses nothing."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rpbench
from rpbench.cli import app
from rpbench.results import csvfile
from rpbench.results.lock import LOCK, RunLock
from rpbench.results.store import load_samples

from cli_helpers import tiny_suite


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture()
def suite(tmp_path) -> Path:
    return tiny_suite(tmp_path, names=("dense", "rpattention"), tokens="16, 64")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """One finished run dir of the tiny suite (4 cases), swept once for the whole module: never changed."""
    where = tmp_path_factory.mktemp("finished")
    out = where / "done"
    assert run("sweep", tiny_suite(where, names=("dense", "rpattention"), tokens="16, 64"), "--out", out,
               "--no-report").exit_code == 0
    return out


@pytest.fixture()
def done(tmp_path, finished) -> Path:
    """A finished run dir of the tiny suite (4 cases), this test's own copy (a run dir holds no absolute path of
    itself: a copy resumes like the original)."""
    out = tmp_path / "done"
    shutil.copytree(finished, out)
    return out


# ---------------------------------------------------------------- 1. one writer at a time

def test_a_held_lock_refuses_a_resume_and_names_the_holder(done):
    (done / "results.csv").write_bytes(b"".join((done / "results.csv").read_bytes().splitlines(True)[:2]))
    lock = RunLock(done)
    lock.acquire("rpbench sweep tiny --out done")
    try:
        before = files(done)
        line = one_line_error(run("sweep", "--resume", done, "--no-report"))
        assert f"is being written by another rpbench (pid {os.getpid()}" in line
        assert "rpbench sweep tiny --out done" in line
        assert files(done) == before
    finally:
        lock.release()
    assert run("sweep", "--resume", done, "--no-report").exit_code == 0
    assert len(rpbench.load(done)) == 4


def test_a_held_lock_refuses_a_new_sweep_into_an_empty_dir(tmp_path, suite):
    target = tmp_path / "target"
    target.mkdir()
    lock = RunLock(target)
    lock.acquire("another")
    try:
        assert "being written by another rpbench" in one_line_error(run("sweep", suite, "--out", target))
    finally:
        lock.release()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rpbench.results.lock import RunLock; "
         f"lock = RunLock({str(target)!r}); lock.acquire('doomed'); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(rpbench.core.errors.ResultsError, match="doomed"):
        RunLock(target).acquire("second")
    holder.kill()
    holder.wait()
    lock = RunLock(target)
    lock.acquire("third")  # the kernel dropped the dead process's lock
    lock.release()
    assert (target / LOCK).read_text() == ""


@pytest.mark.slow
def test_two_sweeps_into_one_dir_leave_one_row_per_case(tmp_path, suite):
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "rpbench", "sweep", str(suite), "--out", str(out), "--no-report"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    outcomes = sorted([(first.wait(timeout=300), first.stderr.read()), (second.wait(timeout=300), second.stderr.read())])
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    refusal = outcomes[1][1].strip()
    assert refusal.count("\n") == 0 and ("being written by another rpbench" in refusal or "already holds" in refusal)
    frame = rpbench.load(out)
    assert len(frame) == 4 and frame["case_id"].is_unique
    assert load_samples(out).groupby("case_id").size().eq(5).all()


# ---------------------------------------------------------------- 3. paths and damaged files: one line, not a traceback

@pytest.mark.parametrize("where", ["file", "under_file", "unwritable", "too_long"])
def test_out_that_cannot_be_a_run_dir(tmp_path, suite, where):
    afile = tmp_path / "afile"
    afile.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    target = {"file": afile, "under_file": afile / "run", "unwritable": locked / "run",
              "too_long": tmp_path / ("x" * 300)}[where]
    if where == "unwritable" and os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    line = one_line_error(run("sweep", suite, "--out", target))
    assert str(target)[:40] in line
    assert afile.read_text() == "x"


def test_on_a_busy_machine_a_refused_out_is_still_one_line_and_the_warning_follows_an_accepted_one(
        tmp_path, suite, monkeypatch):
    """The busy-machine warning is said once the run dir is accepted, so a refusal stays the only line on stderr."""
    from rpbench.machine import interference

    monkeypatch.setattr(interference, "others_busy_cores", lambda interval: 2.0)
    monkeypatch.setattr(interference, "logical_cores", lambda: 2)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "afile" in one_line_error(run("sweep", suite, "--out", afile))
    accepted = run("sweep", suite, "--out", tmp_path / "run", "--no-report")
    assert accepted.exit_code == 0 and "warning: other processes keep 2.00 of 2 cores busy" in accepted.stderr


def test_out_into_a_dir_that_is_not_a_run_dir_is_refused(tmp_path, suite):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("precious")
    assert "not empty and not an rpbench run dir (it holds thesis.tex)" in one_line_error(
        run("sweep", suite, "--out", home))
    assert sorted(p.name for p in home.iterdir()) == ["thesis.tex"]


@pytest.mark.parametrize(("damage", "words"), [
    (lambda t: t + "garbage line without enough fields\n", "fields, the header"),
    (lambda t: t.replace(",64,", ",sixty-four,", 1), "column tokens holds 'sixty-four', not a number"),
    (lambda t: t + '"unterminated quote,,,\n', "partial"),
])
def test_resume_or_report_of_a_damaged_results_csv_names_the_line(done, damage, words):
    path = done / "results.csv"
    path.write_text(damage(path.read_text()))
    before = files(done)
    if words == "partial":  # an open quote at the end is a half-written record: dropped, nothing else lost
        assert run("sweep", "--resume", done, "--no-report").exit_code == 0
        assert len(rpbench.load(done)) == 4
        return
    for args in (("sweep", "--resume", done), ("report", done), ("export", done), ("compare", done, done)):
        line = one_line_error(run(*args))
        assert "results.csv: line " in line and words in line and "damaged" in line
    assert files(done) == before


@pytest.mark.parametrize("content", ["[1, 2]", '"a string"', "42", "{not json"])
def test_an_env_json_that_is_not_an_object_is_kept_aside_on_resume(done, content):
    (done / "env.json").write_text(content)
    frame = rpbench.load(done)
    (done / "results.csv").write_bytes(b"".join((done / "results.csv").read_bytes().splitlines(True)[:-1]))
    assert run("sweep", "--resume", done, "--no-report").exit_code == 0
    kept = [p for p in done.iterdir() if p.name.startswith("env.invalid-")]
    assert len(kept) == 1 and kept[0].read_text() == content
    env = json.loads((done / "env.json").read_text())
    assert kept[0].name in env["previous_env"] and len(rpbench.load(done)) == len(frame)
    assert run("report", done).exit_code == 0


def test_binary_and_non_utf8_suite_files(tmp_path):
    for name, data in (("bin.toml", bytes(range(256))), ("latin.toml", 'name = "caf\xe9"\n'.encode("latin-1")),
                       ("big.toml", b"#" * 2_000_000)):
        path = tmp_path / name
        path.write_bytes(data)
        assert name in one_line_error(run("sweep", path, "--out", tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_a_full_disk_stops_with_one_line_and_resume_finishes(tmp_path, suite, monkeypatch):
    out = tmp_path / "full"
    real = csvfile.AppendOnlyCsv._write_lines
    calls = {"n": 0}

    def failing(self, records):
        if self.path.name == "results.csv":
            calls["n"] += 1
            if calls["n"] > 3:  # the header and two rows went through
                self.path.open("a").write("half a row,")  # the disk filled mid-record
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, records)

    monkeypatch.setattr(csvfile.AppendOnlyCsv, "_write_lines", failing)
    line = one_line_error(run("sweep", suite, "--out", out, "--no-report"), code=1)
    assert "No space left on device" in line and f"rpbench sweep --resume {out}" in line
    written = len(rpbench.load(out))
    assert 0 < written < 4
    monkeypatch.setattr(csvfile.AppendOnlyCsv, "_write_lines", real)
    assert run("sweep", "--resume", out, "--no-report").exit_code == 0
    frame = rpbench.load(out)
    assert len(frame) == 4 and frame["case_id"].is_unique
    assert load_samples(out).groupby("case_id").size().eq(5).all()


# ---------------------------------------------------------------- 4. a failed start leaves a usable dir

def test_cuda_on_a_machine_without_a_gpu_is_refused_before_any_dir_exists(tmp_path, suite):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tmp_path / "cuda.toml"
    path.write_text(suite.read_text().replace('device = "cpu"', 'device = "cuda"'))
    line = one_line_error(run("sweep", path, "--out", tmp_path / "never"))
    assert "axes.device: cuda, but torch sees no CUDA GPU here" in line
    assert not (tmp_path / "never").exists()


@pytest.mark.slow
def test_a_dir_left_without_rows_takes_a_new_sweep_and_a_resume(tmp_path, suite, monkeypatch):
    from rpbench.machine import environment

    out = tmp_path / "half"
    monkeypatch.setattr(environment, "collect", lambda command: (_ for _ in ()).throw(RuntimeError("boom")))
    assert run("sweep", suite, "--out", out, "--no-report").exit_code != 0
    monkeypatch.undo()
    assert (out / "suite.toml").exists() and not rpbench.results.resume._has_rows(out)
    assert run("sweep", "--resume", out, "--no-report").exit_code == 0
    assert len(rpbench.load(out)) == 4
    again = tmp_path / "half2"
    monkeypatch.setattr(environment, "collect", lambda command: (_ for _ in ()).throw(RuntimeError("boom")))
    run("sweep", suite, "--out", again, "--no-report")
    monkeypatch.undo()
    assert run("sweep", suite, "--out", again, "--no-report").exit_code == 0


# ---------------------------------------------------------------- 5. a resume is the same sweep, or nothing

def _drop_last_row(run_dir: Path) -> None:
    path = run_dir / "results.csv"
    path.write_bytes(b"".join(path.read_bytes().splitlines(True)[:-1]))


def test_resume_refuses_an_edited_suite_toml(done):
    _drop_last_row(done)
    kept = done / "suite.toml"
    kept.write_text(kept.read_text().replace("repeat = 5", "repeat = 7"))
    before = files(done)
    assert "suite.toml was edited after the run started" in one_line_error(run("sweep", "--resume", done))
    assert files(done) == before


def test_resume_refuses_another_suite(tmp_path, done):
    _drop_last_row(done)
    other = tiny_suite(tmp_path, names=("linear",), tokens="16", filename="other.toml")
    before = files(done)
    line = one_line_error(run("sweep", other, "--resume", done))
    assert "holds a run of another suite" in line and "start a new dir with --out" in line
    assert files(done) == before
    same = tmp_path / "copy.toml"
    same.write_text((done / "suite.toml").read_text())
    assert run("sweep", same, "--resume", done, "--no-report").exit_code == 0  # the same text is the same suite


def test_resume_refuses_rows_timed_otherwise(done):
    """A dir without run.json (written before rpbench kept one) is still guarded by the per-row timing column."""
    _drop_last_row(done)
    (done / "run.json").unlink()
    kept = done / "suite.toml"
    kept.write_text(kept.read_text().replace("warmup_ms = 1", "warmup_ms = 2"))
    line = one_line_error(run("sweep", "--resume", done))
    assert 'its rows were timed with {"cooldown_s"' in line and '"warmup_ms":1.0' in line and "would mix" in line


def test_every_row_records_its_timing(done):
    timing = json.loads(rpbench.load(done)["timing"].unique().item())
    assert timing["warmup_ms"] == 1 and timing["repeat"] == 5 and timing["flush_l2"] is True


@pytest.mark.parametrize("loss", ["deleted", "truncated"])
def test_resume_notices_lost_samples(done, loss):
    _drop_last_row(done)
    path = done / "samples.csv"
    if loss == "deleted":
        path.unlink()
        words = "samples.csv is missing: the samples of 3 finished case(s) are gone"
    else:
        lines = path.read_bytes().splitlines(True)
        path.write_bytes(b"".join(lines[:1] + lines[3:]))  # two samples of the first case gone
        words = "of its 5 samples; the file lost data"
    before = files(done)
    assert words in one_line_error(run("sweep", "--resume", done))
    assert files(done) == before


def test_resume_keeps_the_filter_and_device_it_started_with(tmp_path, suite):
    out = tmp_path / "filtered"
    assert run("sweep", suite, "--out", out, "--filter", "dense", "--no-report").exit_code == 0
    assert set(rpbench.load(out)["label"]) == {"dense"}
    _drop_last_row(out)
    assert run("sweep", "--resume", out, "--no-report").exit_code == 0
    frame = rpbench.load(out)
    assert set(frame["label"]) == {"dense"} and len(frame) == 2  # not the whole suite
    assert "was started with --filter 'dense'" in one_line_error(run("sweep", "--resume", out, "--filter", "rp*"))
    assert "was started with no --device" in one_line_error(run("sweep", "--resume", out, "--device", "cpu"))


def test_labels_with_newlines_are_refused_and_the_repair_follows_quotes(tmp_path, suite):
    path = tmp_path / "nl.toml"
    path.write_text(suite.read_text().replace('name = "dense"', 'name = "dense"\nlabel = "two\\nlines"'))
    assert "control character '\\n'" in one_line_error(run("sweep", path, "--out", tmp_path / "x"))
    # a quoted field holding a newline, cut mid-record: the repair drops the whole partial record
    text = 'a,b\n1,"one\nline"\n2,"half\nof a'
    assert csvfile.complete_length(text.encode()) == len('a,b\n1,"one\nline"\n')
    target = tmp_path / "t.csv"
    target.write_text(text)
    csvfile.repair(target)
    assert target.read_text() == 'a,b\n1,"one\nline"\n'


def test_resume_of_a_run_whose_header_predates_a_column_migrates_once(old_run):
    run_dir = old_run
    _drop_last_row(run_dir)
    started = time.time()
    assert run("sweep", "--resume", run_dir, "--no-report").exit_code == 0
    frame = rpbench.load(run_dir)
    # the migration happens once, not per row: seconds on any machine; 600 s would be a hang, not a busy machine
    assert len(frame) == 4 and frame["timing"].notna().sum() == 1 and time.time() - started < 600
    assert csvfile.header(run_dir / "results.csv")[-1] == "timing"


def test_resume_refuses_rows_measured_on_another_model(done, monkeypatch):
    """A resume on a machine with another CPU (or GPU) model would put two models into one run's curves."""
    _drop_last_row(done)
    monkeypatch.setattr("rpbench.machine.environment.cpu_model", lambda: "Another CPU 9000")
    before = files(done)
    line = one_line_error(run("sweep", "--resume", done))
    assert "cpu rows were measured on" in line and "this machine runs Another CPU 9000" in line
    assert files(done) == before
