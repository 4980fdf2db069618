"""Adaptive rounds: a case whose 95 % interval is wider than ±`[measure] target_ci_pct` gets more passes, in extra
rounds that still interleave every case that wants one, until it has the passes its plan asks for, `max_rounds`,
or the extra rounds have used their time budget (`extra_time_pct` % of the time the regular rounds took).

The plan is Stein's two-stage procedure (see `core.intervals`): the passes a case needs are computed once, from the
medians of its first `rounds` pooled passes, and its interval keeps their standard deviation, so stopping early
or late never makes an interval look surer than it is. A case disturbed by other processes in every pass gets no
extra rounds (it is flagged `disturbed`; more passes on a busy machine would only lengthen the sweep). A sweep
with a single round has no between-pass variance to plan from and gets no extra rounds, nor does one with 2
(`Timing.adaptive`: from two passes t has one degree of freedom and plans almost every case to `max_rounds`).
"""
from __future__ import annotations

import time
from typing import Sequence

from ..core.case import Timing
from ..core.timing import MIN_PLAN_ROUNDS
from ..core.intervals import planned_passes
from ..core.measurement import Measurement, Round, pooled_rounds


class ExtraRounds:
    """Which cases want more passes, and whether the time budget allows them."""

    def __init__(self, timing: Timing):
        self.timing = timing
        self.began = time.perf_counter()
        self._extra_began: float | None = None
        self._budget_s = 0.0

    @property
    def enabled(self) -> bool:
        return self.timing.adaptive

    def goal(self, rounds: Sequence[Round]) -> int:
        """The pooled passes a case's plan asks for (at least those it has when it has no plan). A case disturbed
        in every pass has none: it is flagged `disturbed` whatever more rounds on a busy machine would say."""
        pooled = pooled_rounds(rounds)
        first = pooled[:self.timing.rounds]
        if not self.enabled or len(first) < MIN_PLAN_ROUNDS or all(r.disturbed for r in pooled):
            return len(pooled)
        planned = planned_passes([r.median for r in first], self.timing.target_ci_pct, self.timing.most_rounds)
        return max(len(pooled), planned)

    def wants_more(self, rounds: Sequence[Round]) -> bool:
        return self.enabled and not self.spent and len(pooled_rounds(rounds)) < self.goal(rounds)

    def start(self) -> None:
        """The regular rounds (and their retries) are over: the budget is a share of the time they took."""
        if self._extra_began is None:
            now = time.perf_counter()
            self._budget_s = self.timing.extra_time_pct / 100 * (now - self.began)
            self._extra_began = now

    @property
    def spent(self) -> bool:
        return self._extra_began is not None and time.perf_counter() - self._extra_began >= self._budget_s

    def note(self, measured: Measurement) -> str | None:
        """Why a timed case's interval stayed wider than the target, or None when it met it."""
        if measured.target_met is not False:
            return None
        passes, target = len(measured.pooled), self.timing.target_ci_pct
        if not self.enabled:
            why = "extra rounds are off"
        elif passes >= self.timing.most_rounds:
            why = f"max_rounds = {self.timing.most_rounds} reached"
        elif passes < self.goal(measured.rounds):
            why = "the time budget of the extra rounds was spent"
        else:
            why = "its first passes planned fewer: the later ones moved more"
        return f"interval ±{measured.ci_pct:.0f} % after {passes} passes, wider than the ±{target:g} % target ({why})"
