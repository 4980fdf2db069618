"""Rounds: every case timed in several passes interleaved across the suite, disturbed passes retried and left out
of the pool, and what a row says about its passes."""
from __future__ import annotations

import json

import pandas as pd
import pytest

import rpbench
from rpbench.measure import rounds as rounds_module
from rpbench.measure.rounds import measure_in_rounds, round_order
from rpbench.core.case import Case, Timing
from rpbench.core.drift import LEGACY_UNSTABLE_PCT
from rpbench.core.measurement import Load, Measurement, Round
from rpbench.results.rows import round_rows, row_of, sample_rows
from rpbench.results.store import ROUNDS, load_samples

from cli_helpers import invoke, kill_sweep_when, tiny_suite

QUIET = Load(others_busy_cores=0.0, cores=2, own_threads=2, window_s=0.2)
BUSY = Load(others_busy_cores=1.9, cores=2, own_threads=2, window_s=0.2)


def _case(index: int) -> Case:
    return Case("layer", "dense", f"c{index}", (), 1, 8, 8 + index, 32, 4, "float32", "fwd", "cpu")


class FakeMachine:
    """Stands in for run_case / measure_again: latency 1 ms, disturbed while `busy` says so for the case."""

    def __init__(self, busy=lambda case, n: False, fail_first=(), fail_later=()):
        self.busy, self.fail_first, self.fail_later = busy, set(fail_first), set(fail_later)
        self.passes: list[tuple[str, bool]] = []

    def _round(self, case: Case, retry: bool) -> Round:
        n = sum(label == case.label for label, _ in self.passes)
        self.passes.append((case.label, retry))
        return Round(samples=(1.0, 1.0, 1.0), load=BUSY if self.busy(case, n) else QUIET, retry=retry)

    def run_case(self, case, timing, suite=""):
        if case.label in self.fail_first:
            self.passes.append((case.label, False))
            return Measurement(case=case, suite=suite, status="oom", notes=("out of memory",))
        first = self._round(case, False)
        return Measurement(case=case, suite=suite, status="ok", samples=first.samples, rounds=(first,))

    def measure_again(self, case, timing, like, retry=False):
        if case.label in self.fail_later:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self._round(case, retry)


@pytest.fixture
def machine(monkeypatch):
    def install(**kwargs):
        fake = FakeMachine(**kwargs)
        monkeypatch.setattr(rounds_module, "run_case", fake.run_case)
        monkeypatch.setattr(rounds_module, "measure_again", fake.measure_again)
        return fake
    return install


def _measure(cases, **timing):
    finals: list[Measurement] = []
    measure_in_rounds(cases, Timing(**timing), "t", finals.append)
    return finals


def test_round_order_is_a_seeded_shuffle_per_round():
    cases = [_case(i) for i in range(12)]
    first, second = round_order(cases, 0), round_order(cases, 1)
    assert sorted(c.label for c in first) == sorted(c.label for c in cases)
    assert first != second and first == round_order(cases, 0)  # different per round, the same every sweep


def test_every_case_gets_its_rounds_interleaved_across_the_suite(machine):
    fake = machine()
    cases = [_case(i) for i in range(4)]
    finals = _measure(cases, rounds=3)
    assert len(fake.passes) == 12
    for number in range(3):  # pass k of every case comes before pass k+1 of any
        assert {label for label, _ in fake.passes[4 * number: 4 * number + 4]} == {c.label for c in cases}
    assert [m.case.label for m in finals] == [label for label, _ in fake.passes[8:]]  # final in the last round
    for measured in finals:
        assert len(measured.rounds) == 3 and len(measured.samples) == 9 and measured.retries == 0
        assert row_of(measured)["rounds"] == 3 and row_of(measured)["disturbed"] is False


def test_a_disturbed_pass_is_taken_again_after_the_last_round_and_left_out(machine):
    fake = machine(busy=lambda case, n: case.label == "c1" and n == 0)
    finals = {m.case.label: m for m in _measure([_case(i) for i in range(3)], rounds=2, retries=2)}
    assert fake.passes[-1] == ("c1", True)  # the retry comes after both rounds of every case
    c1 = finals["c1"]
    assert len(c1.rounds) == 3 and len(c1.pooled) == 2 and c1.retries == 1 and not c1.disturbance
    assert "1 disturbed pass(es) left out of the pool (2 pooled)" in c1.note
    row = row_of(c1)
    assert row["rounds"] == 2 and row["retries"] == 1 and row["disturbed"] is False
    assert row["others_busy_cores"] == 0.0  # only pooled passes count
    lines = round_rows(c1)
    assert [(line["pooled"], line["disturbed"], line["retry"]) for line in lines] == [
        (False, True, False), (True, False, False), (True, False, True)]
    assert "1.90 of 2 cores" in lines[0]["why"]
    assert [line["round"] for line in sample_rows(c1)] == [1, 1, 1, 2, 2, 2]


def test_a_case_disturbed_in_every_pass_keeps_its_flag_after_bounded_retries(machine):
    fake = machine(busy=lambda case, n: True)
    (measured,) = _measure([_case(0)], rounds=2, retries=3)
    assert len(fake.passes) == 5  # 2 rounds + 3 retries, then it stops
    assert measured.disturbance and len(measured.pooled) == 5
    row = row_of(measured)
    assert row["disturbed"] is True and row["others_busy_cores"] == 1.9 and row["retries"] == 3
    assert "disturbed in all 5 pass(es): other processes kept 1.90 of 2 cores busy" in measured.note


def test_a_failed_case_is_final_at_once_and_a_failing_later_pass_keeps_the_earlier_ones(machine):
    fake = machine(fail_first={"c0"}, fail_later={"c1"})
    finals = {m.case.label: m for m in _measure([_case(0), _case(1)], rounds=3)}
    assert [label for label, _ in fake.passes].count("c0") == 1 and finals["c0"].status == "oom"
    c1 = finals["c1"]
    assert c1.ok and len(c1.rounds) == 1 and "pass 2 failed: RuntimeError: CUDA error: an illegal memory access" in c1.note


def test_round_spread_flags_passes_that_disagree():
    case = _case(0)
    agree = Measurement(case=case, suite="t", status="ok", samples=(1.0,) * 6,
                        rounds=(Round((1.0, 1.0)), Round((1.1, 1.1)), Round((1.05, 1.05))))
    apart = Measurement(case=case, suite="t", status="ok", samples=(1.0,) * 6,
                        rounds=(Round((1.0, 1.0)), Round((1.6, 1.6)), Round((1.05, 1.05))))
    assert row_of(agree)["unstable"] is False and row_of(agree)["round_spread_pct"] == pytest.approx(100 * 0.1 / 1.05)
    assert apart.spread_pct > LEGACY_UNSTABLE_PCT and row_of(apart)["unstable"] is True  # no drift: the old rule


@pytest.mark.parametrize("load, reasons", [
    (Load(0.2, 2, 2, 0.2), ()),                                  # under a quarter of a core: not meaningful
    (Load(0.6, 2, 2, 0.2), ("other processes kept 0.60 of 2 cores busy (2 threads of ours)",)),
    (Load(3.0, 16, 4, 0.2), ()),                                 # enough idle cores for them and us
    (Load(13.0, 16, 4, 0.2), ("other processes kept 13.00 of 16 cores busy (4 threads of ours)",)),
    (Load(None, 2, 2, 0.2, gpu_others=0), ()),                   # unknown CPU load is not "disturbed"
    (Load(0.0, 2, 1, 0.2, gpu_others=2), ("2 other processes on the GPU",)),
])
def test_when_a_window_counts_as_disturbed(load, reasons):
    assert load.reasons() == reasons and load.disturbed == bool(reasons)


def test_a_real_sweep_pools_its_rounds_and_records_every_pass(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="64, 256")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report").exit_code == 0
    frame = rpbench.load(out)
    assert frame["rounds"].eq(2).all() and frame["n_samples"].eq(10).all() and frame["round_spread_pct"].notna().all()
    assert frame["others_busy_cores"].notna().all() and json.loads(frame["timing"][0])["rounds"] == 2
    samples = load_samples(out)
    assert set(samples["round"]) == {0, 1} and samples.groupby("case_id").size().eq(10).all()
    passes = pd.read_csv(out / ROUNDS)
    assert len(passes) == 4 and passes["pooled"].all() and (passes["window_s"] >= 0.1).all()


def test_a_run_started_before_rounds_existed_resumes_with_one_round(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense",), tokens="64, 256")
    out = tmp_path / "run"
    assert invoke("sweep", str(suite), "--out", str(out), "--no-report", "--filter", "tokens=64").exit_code == 0
    results = out / "results.csv"
    frame = pd.read_csv(results, dtype=str, keep_default_na=False)
    legacy = json.loads(frame.loc[0, "timing"])
    del legacy["rounds"], legacy["retries"]  # what the rows of an older rpbench say
    frame.loc[0, "timing"] = json.dumps(legacy, sort_keys=True, separators=(",", ":"))
    frame.to_csv(results, index=False)
    assert Timing.same_json(frame.loc[0, "timing"]) == Timing.same_json(Timing(**legacy, rounds=1).to_json())
    resumed = invoke("sweep", "--resume", str(out), "--no-report")
    assert resumed.exit_code == 0, resumed.output


@pytest.mark.slow
def test_a_sweep_killed_between_rounds_keeps_every_pass_and_resume_takes_only_what_is_missing(tmp_path):
    from rpbench.results.store import PASSES

    suite = tiny_suite(tmp_path, names=("dense", "linear"), tokens="16, 64, 256")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 2"))
    out = tmp_path / "run"
    journal = out / PASSES  # all of round 1 journalled: rows come only in round 2
    kill_sweep_when(suite, out, lambda: journal.exists() and journal.read_text().count("\n") >= 7)
    before = pd.read_csv(out / "results.csv")  # maybe no row yet: the header alone
    kept = [line for line in (out / PASSES).read_text().splitlines() if line]
    assert len(kept) >= 6
    (out / PASSES).write_text((out / PASSES).read_text() + '{"case_id": "torn li')  # the kill tore a line
    resumed = invoke("sweep", "--resume", str(out), "--no-report")
    assert resumed.exit_code == 0, resumed.output
    frame = rpbench.load(out)
    assert len(frame) == 6 and frame["case_id"].is_unique and set(before["case_id"]) <= set(frame["case_id"])
    passes = pd.read_csv(out / ROUNDS)
    unfinished = frame[~frame["case_id"].isin(before["case_id"])]
    # a case interrupted after its first pass keeps it: 2 passes, never 3 (nothing measured twice)
    assert passes.groupby("case_id").size().loc[unfinished["case_id"]].eq(2).all()
    assert frame["rounds"].eq(2).all() and not (out / PASSES).exists()
    assert load_samples(out).groupby("case_id").size().eq(10).all()


@pytest.mark.parametrize("line", [
    "", "not json", "[]", '{"case_id": "a"}', '{"case_id": "a", "index": 0, "round": {"samples": []}}',
    '{"case_id": "a", "index": 0, "round": {"samples": [NaN]}}',
    '{"case_id": "a", "index": 0, "round": {"samples": [-1]}}',
    '{"case_id": "a", "index": "x", "round": {"samples": [1.0]}}',
    '{"case_id": "a", "index": 0, "round": {"samples": [1.0], "load": {"others_busy_cores": "lots", "cores": 2, '
    '"own_threads": 2, "window_s": 0.2}}}',
    '{"case_id": "a", "index": 0, "round": {"samples": [1.0], "load": {"bogus": 1}}}',
])
def test_a_damaged_journal_line_is_ignored_never_trusted(line):
    from rpbench.results.rows import pass_from_line

    assert pass_from_line(line) is None


def test_a_journal_line_round_trips():
    from rpbench.results.rows import pass_from_line, pass_line

    taken = Round(samples=(1.5, 2.0), load=BUSY, retry=True, started_at="2026-11-24T20:00:00+00:00")
    assert pass_from_line(pass_line("abc", 3, taken)) == ("abc", 3, taken)
