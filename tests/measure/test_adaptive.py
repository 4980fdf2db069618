"""Adaptive rounds, the round of the sweep every pass records, the reference kernel around the rounds, and a resume
in the middle of extra rounds: with a fake machine whose pass medians are set per case, so the plan is known."""
from __future__ import annotations

import gc
from dataclasses import replace

import pytest

from rpbench.core.case import Case, Timing
from rpbench.core.drift import Drift, ReferenceTiming
from rpbench.core.measurement import Load, Measurement, Round
from rpbench.measure import rounds as rounds_module
from rpbench.measure.adaptive import ExtraRounds
from rpbench.measure.rounds import measure_in_rounds
from rpbench.results.rows import round_rows, row_of

QUIET = Load(others_busy_cores=0.0, cores=2, own_threads=2, window_s=0.2)
# Pass medians per case label, in the order taken (cycled): "tight" agrees with itself, "wide" does not.
MEDIANS = {"tight": (1.0, 1.01, 0.99), "wide": (1.0, 1.12, 0.9, 1.05, 0.95, 1.08, 0.93, 1.02)}


def _case(label: str) -> Case:
    return Case("layer", "dense", label, (), 1, 8, 8 + len(label), 32, 4, "float32", "fwd", "cpu")


class FakeMachine:
    def __init__(self):
        self.passes: list[str] = []

    def _round(self, case: Case) -> Round:
        medians = MEDIANS[case.label]
        median = medians[sum(label == case.label for label in self.passes) % len(medians)]
        self.passes.append(case.label)
        return Round(samples=(median * 0.999, median, median * 1.001), load=QUIET)

    def run_case(self, case, timing, suite=""):
        first = self._round(case)
        return Measurement(case=case, suite=suite, status="ok", samples=first.samples, rounds=(first,), timing=timing)

    def measure_again(self, case, timing, like, retry=False):
        return self._round(case)


class FakeClock:
    """Stands in for machine.reference.ReferenceClock: a timing at every round start, none between chunks."""

    def __init__(self):
        self.timings: list[ReferenceTiming] = []
        self.latest_ms = None

    def round_started(self, index):
        self.latest_ms = 1.0 + 0.01 * index
        self.timings.append(ReferenceTiming(median_ms=self.latest_ms, n_samples=10, sweep_round=index))

    def checkpoint(self):
        pass

    def drift(self):
        return Drift.of(self.timings)


@pytest.fixture
def machine(monkeypatch):
    fake = FakeMachine()
    monkeypatch.setattr(rounds_module, "run_case", fake.run_case)
    monkeypatch.setattr(rounds_module, "measure_again", fake.measure_again)
    return fake


def _measure(cases, clock=None, earlier=None, journal=None, **timing):
    finals: list[Measurement] = []
    on_pass = None if journal is None else (lambda case, index, taken: journal.append((case.case_id, index, taken)))
    measure_in_rounds(cases, Timing(**timing), "t", finals.append, clock=clock, earlier=earlier, on_pass=on_pass)
    return {m.case.label: m for m in finals}, finals


@pytest.fixture
def unlimited(monkeypatch):
    """A time budget that never runs out (the fake passes take microseconds: a scheduler hiccup would spend it)."""
    monkeypatch.setattr(ExtraRounds, "spent", property(lambda self: False))


def test_a_wide_case_gets_extra_rounds_until_its_plan_and_a_tight_one_does_not(machine, unlimited):
    """`wide` moves ±10 % between passes: its first three plan more passes for ±5 %, taken in extra rounds after
    every case's regular ones (round 3 on), up to max_rounds; `tight` is final after its third pass, before any
    extra round, and meets the target."""
    by_label, order = _measure([_case("tight"), _case("wide")], rounds=3, target_ci_pct=5.0, max_rounds=6,
                               extra_time_pct=1000)
    tight, wide = by_label["tight"], by_label["wide"]
    assert machine.passes.count("tight") == 3 and machine.passes.count("wide") == 6
    assert machine.passes[:6].count("wide") == 3  # the regular rounds first, interleaved
    assert [m.case.label for m in order] == ["tight", "wide"]
    assert [r.sweep_round for r in wide.rounds] == [0, 1, 2, 3, 4, 5]
    row = row_of(wide)
    assert row["rounds"] == 6 and row["latency_ci_method"] == "pass-t"
    assert row["target_met"] is False and "max_rounds = 6 reached" in row["notes"]
    assert row_of(tight)["target_met"] is True and row_of(tight)["rounds"] == 3


def test_extra_rounds_stop_when_their_time_budget_is_spent(machine):
    by_label, _ = _measure([_case("wide")], rounds=3, target_ci_pct=5.0, max_rounds=8, extra_time_pct=0.001)
    wide = by_label["wide"]
    assert len(wide.rounds) <= 4 and wide.target_met is False
    assert "the time budget of the extra rounds was spent" in wide.note


def test_no_extra_rounds_when_they_are_off_or_there_is_nothing_to_plan_from(machine):
    assert len(_measure([_case("wide")], rounds=3, max_rounds=3)[0]["wide"].rounds) == 3
    assert len(_measure([_case("wide")], rounds=3, extra_time_pct=0)[0]["wide"].rounds) == 3
    assert len(_measure([_case("wide")], rounds=2)[0]["wide"].rounds) == 2  # 2 passes: t with 1 df plans nothing
    one = _measure([_case("wide")], rounds=1)[0]["wide"]
    assert len(one.rounds) == 1 and one.target_met is None  # one pass: no interval with the drift in it


def test_every_pass_records_its_round_and_the_reference_timing_before_it(machine):
    clock = FakeClock()
    by_label, _ = _measure([_case("tight"), _case("wide")], clock=clock, rounds=3, max_rounds=3)
    assert [t.sweep_round for t in clock.timings] == [0, 1, 2]  # one at the start of every round
    wide = by_label["wide"]
    assert [(r.sweep_round, r.reference_ms) for r in wide.rounds] == [(0, 1.0), (1, 1.01), (2, 1.02)]
    assert [line["reference_ms"] for line in round_rows(wide)] == [1.0, 1.01, 1.02]
    assert wide.drift == clock.drift() and row_of(wide)["drift_pct"] == pytest.approx(clock.drift().sd_pct)


def test_a_sweep_killed_in_its_extra_rounds_resumes_without_losing_or_repeating_a_pass(machine, unlimited):
    """The first session is killed after `wide`'s fifth pass (two extra rounds in); the resume gets its journalled
    passes back: every one is kept, none is taken again; the full measurement a resumed case needs adds no timing
    (its regular passes are all there), and the one pass its plan still asks for is taken."""
    journal: list[tuple[str, int, Round]] = []

    class Killed(BaseException):
        pass

    def kill_after_five(case, timing, like, retry=False):
        if machine.passes.count("wide") == 5:
            raise Killed
        return FakeMachine._round(machine, case)

    rounds_module.measure_again = kill_after_five
    settings = dict(rounds=3, target_ci_pct=5.0, max_rounds=6, extra_time_pct=1000)
    with pytest.raises(Killed):
        _measure([_case("tight"), _case("wide")], journal=journal, **settings)
    rounds_module.measure_again = machine.measure_again
    kept = [taken for case_id, _, taken in journal if case_id == _case("wide").case_id]
    assert len(kept) == 5 and [r.sweep_round for r in kept] == [0, 1, 2, 3, 4]
    before = len(machine.passes)
    by_label, _ = _measure([_case("wide")], earlier={_case("wide").case_id: kept}, **settings)
    wide = by_label["wide"]
    assert len(machine.passes) - before == 2  # the full measurement (its timing not added), then the sixth pass
    assert wide.rounds[:5] == tuple(kept) and len(wide.rounds) == 6 and wide.rounds[5].sweep_round >= 5


def test_the_garbage_collector_is_off_inside_a_cpu_timed_loop_and_back_on_after():
    from rpbench.measure.timing import time_step

    seen = []
    assert gc.isenabled()
    time_step(lambda: seen.append(gc.isenabled()), lambda: None, "cpu", Timing(warmup_ms=0, repeat=20))
    assert seen[-20:] == [False] * 20 and gc.isenabled()
    gc.disable()
    try:  # a caller that had it off keeps it off
        time_step(lambda: None, lambda: None, "cpu", Timing(warmup_ms=0, repeat=3))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_real_sweep_times_the_reference_kernel_and_reports_the_drift(tmp_path):
    """One small case in 3 rounds on the CPU: a reference timing at the start of every round (reference.csv), each
    pass's round and reference timing (rounds.csv), the drift in run.json and on every row, the row's interval,
    and the drift line at the end of the sweep and at the top of the report."""
    import json

    import pandas as pd

    import rpbench
    from cli_helpers import invoke, tiny_suite

    suite = tiny_suite(tmp_path, names=("dense",), tokens="64")
    suite.write_text(suite.read_text().replace("rounds = 1", "rounds = 3\nmax_rounds = 3"))
    out = tmp_path / "run"
    swept = invoke("sweep", str(suite), "--out", str(out), "--no-report")
    assert swept.exit_code == 0, swept.output
    timings = pd.read_csv(out / "reference.csv")
    assert len(timings) >= 3 and set(range(3)) <= set(timings["sweep_round"]) and (timings["median_ms"] > 0).all()
    drift = json.loads((out / "run.json").read_text())["drift"]
    assert drift["timings"] >= 3 and drift["workload"].startswith("cpu: matmul 256²")
    passes = pd.read_csv(out / "rounds.csv")
    assert list(passes["sweep_round"][:3]) == [0, 1, 2] and passes["reference_ms"].notna().all()
    row = rpbench.load(out).iloc[0]
    assert row["drift_pct"] == pytest.approx(drift["sd_pct"]) and row["latency_ci_method"] == "pass-t"
    assert row["latency_ms_ci_low"] <= row["latency_ms_median"] <= row["latency_ms_ci_high"]
    said = " ".join(swept.output.split())
    assert "this machine drifted ±" in said or "machine drift unknown" in said
    report = " ".join(invoke("report", str(out)).output.split())
    assert report.startswith("this machine drifted ±") or report.startswith("machine drift unknown")


def test_a_case_disturbed_in_every_pass_gets_no_extra_rounds(machine, unlimited, monkeypatch):
    """Other processes disturbed all three passes of `wide`: it is flagged `disturbed` and more rounds on a busy
    machine would only lengthen the sweep."""
    busy = Load(others_busy_cores=1.9, cores=2, own_threads=2, window_s=0.2)
    real = FakeMachine._round
    monkeypatch.setattr(FakeMachine, "_round", lambda self, case: replace(real(self, case), load=busy))
    by_label, _ = _measure([_case("wide")], rounds=3, retries=0, target_ci_pct=5.0, max_rounds=6,
                           extra_time_pct=1000)
    assert len(by_label["wide"].rounds) == 3 and by_label["wide"].busy_machine
