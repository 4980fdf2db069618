"""A lost CUDA context (after an illegal address every CUDA call raises again) must not kill a sweep unrecorded:
the case becomes an `error` naming the CUDA error, the sweep stops with one line, and a resume skips that case.
Simulated on the CPU by a cleanup that raises what torch raises then."""
from __future__ import annotations

import pytest
import rpbench
from rpbench.measure import runner
from rpbench.results.store import PASSES

from cli_helpers import invoke, tiny_suite

pytestmark = pytest.mark.slow  # the fast lane leaves these out: sweeps that lose a (stand-in) device mid-case

ILLEGAL = "CUDA error: an illegal memory access was encountered"


def _lose_context_on(monkeypatch, victim: str, at_release: int = 1):
    """Make the `at_release`-th release after measuring a case of `victim` (tokens) raise like a lost context."""
    real = runner.release
    seen = {"n": 0, "armed": False}
    original_make = runner.make_workload

    def make(case, describe=True):
        seen["armed"] = str(case.tokens) == victim
        return original_make(case, describe)

    def release(device):
        if seen["armed"]:
            seen["n"] += 1
            if seen["n"] == at_release:
                raise RuntimeError(ILLEGAL)
        return real(device)

    monkeypatch.setattr(runner, "make_workload", make)
    monkeypatch.setattr(runner, "release", release)


def test_a_lost_context_is_written_as_an_error_and_stops_the_sweep_with_one_line(tmp_path, monkeypatch):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16, 64, 256")
    out = tmp_path / "run"
    _lose_context_on(monkeypatch, "64")
    result = invoke("sweep", str(suite), "--out", str(out), "--no-report")
    assert result.exit_code == 1
    text = " ".join(result.output.split())  # the terminal wraps long lines
    assert text.count("continue in a new process") == 1 and "Traceback" not in text
    assert f"error: CUDA context lost: RuntimeError: {ILLEGAL}" in text and f"rpbench sweep --resume {out}" in text
    frame = rpbench.load(out)
    lost = frame[frame["tokens"] == 64].iloc[0]
    assert lost["status"] == "error" and ILLEGAL in lost["notes"]
    monkeypatch.undo()
    resumed = invoke("sweep", "--resume", str(out), "--no-report")
    assert resumed.exit_code == 0, resumed.output
    frame = rpbench.load(out)
    assert len(frame) == 3 and frame["case_id"].is_unique
    assert frame.set_index("tokens").loc[64, "status"] == "error"  # skipped on resume: never run first again


def test_a_context_lost_in_a_later_pass_keeps_the_earlier_passes(tmp_path, monkeypatch):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="16, 64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    out = tmp_path / "run"
    _lose_context_on(monkeypatch, "64", at_release=2)  # the first pass is fine, the second loses the device
    result = invoke("sweep", str(suite), "--out", str(out), "--no-report")
    assert result.exit_code == 1 and "CUDA context lost" in result.output
    row = rpbench.load(out).set_index("tokens").loc[64]
    assert row["status"] == "ok" and row["rounds"] == 1 and ILLEGAL in row["notes"]
    monkeypatch.undo()
    assert invoke("sweep", "--resume", str(out), "--no-report").exit_code == 0
    assert len(rpbench.load(out)) == 2 and not (out / PASSES).exists()
