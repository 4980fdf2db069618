"""Rounds: every case is timed in `timing.rounds` passes over the suite, each pass in its own seeded shuffle, so
drift and other processes hit every mechanism alike. A pass disturbed by other processes is taken again after the
last round (at most `timing.retries` times per case); then a case whose interval is wider than its target gets
extra rounds (`adaptive`). A case is final, and handed on, at the end of the round in which nothing more is left to
measure for it (so the effect of that round on every case, `core.drift.RoundEffects`, is known when its row is
judged `unstable`); its row pools the samples of its undisturbed passes. Every pass records the round of the sweep it was taken in
(`sweep_round`: regular rounds, then each batch of retries or extra passes is a round of its own), which pairs the
passes of two cases for speedups, and the reference kernel's timing before it (`clock`, see
`rpbench.machine.reference`: timed at the start of every round and between chunks of a long one).

The first pass of a case is the full measurement (`run_case`: FLOPs, kernels, timing, memory, energy); later
passes rebuild the case from its seed and time it again (`measure_again`). Every pass is handed to `on_pass` as it
ends (the sweep journals it), and a resumed sweep hands back the passes of unfinished cases as `earlier`: every one
of them is kept and counts as taken (none is taken again), and such a case gets one full measurement before its
row is written: as its next regular pass when it lacks one, else (all its regular passes were journalled) in the
last regular round only for what the journal does not keep (FLOPs, memory, kernels), its timing not added.

Over 300 lines on purpose: `measure_in_rounds` is one set of closures over the sweep's bookkeeping (progress per
case, the round being taken, the plan's count, the clock, the extra rounds' budget); split into modules, each part
would take all of that state as arguments.
"""
from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from ..core.case import Case, Timing
from ..core.drift import Drift, RoundEffects
from ..core.errors import one_line
from ..core.measurement import Measurement, Round, pooled_rounds
from .adaptive import ExtraRounds
from .runner import NOTE_LIMIT, ContextLost, freeze_heap, measure_again, run_case

ROUND_SEED = "rpbench-round"  # each round's order is random.Random(f"{ROUND_SEED}-{index}"): the same every sweep


def round_order(cases: list[Case], index: int) -> list[Case]:
    """The order of round `index`: a shuffle seeded by the round alone, so a sweep always runs in the same order."""
    order = list(cases)
    random.Random(f"{ROUND_SEED}-{index}").shuffle(order)
    return order


@dataclass
class _Progress:
    case: Case
    first: Measurement | None = None
    rounds: list[Round] = field(default_factory=list)
    retries_left: int = 0
    notes: list[str] = field(default_factory=list)
    spent_s: float = 0.0
    final: bool = False
    lost: str | None = None  # why the device was lost while measuring this case
    regular: int = 0  # passes of the rounds taken (earlier ones included), retries not counted
    slot: int | None = None  # with several workers: the one (the GPU) that took its first pass here, and takes the rest

    def clean(self) -> int:
        return sum(not r.disturbed for r in self.rounds)

    def wants_retry(self, rounds: int) -> bool:
        return not self.final and self.retries_left > 0 and self.clean() < rounds


def _pooled_notes(progress: _Progress, measured: Measurement) -> list[str]:
    notes = list(progress.notes)
    left_out = [r for r in measured.rounds if r not in measured.pooled]
    if left_out:
        notes.append(f"{len(left_out)} disturbed pass(es) left out of the pool ({len(measured.pooled)} pooled)")
    if measured.disturbance:
        tries = len(measured.rounds)
        notes.append(f"disturbed in all {tries} pass(es): " + "; ".join(measured.disturbance))
    return notes


def _final(progress: _Progress, extra: ExtraRounds, drift: Drift | None) -> Measurement:
    """The case's row: the first pass's measurement with every pass attached, the clean ones' samples pooled and
    the machine's drift as it stands."""
    first = progress.first
    assert first is not None
    if not first.timed:
        return first
    measured = replace(first, rounds=tuple(progress.rounds), drift=drift)
    samples = tuple(s for r in measured.pooled for s in r.samples)
    measured = replace(measured, samples=samples, elapsed_s=progress.spent_s)
    notes = (*first.notes, *_pooled_notes(progress, measured), extra.note(measured))
    return replace(measured, notes=tuple(n for n in notes if n))


def measure_in_rounds(
    cases: list[Case],
    timing: Timing,
    suite: str,
    on_final: Callable[[Measurement], None],
    on_start: Callable[[Case, int, int], None] | None = None,
    pause: Callable[[Case], None] | None = None,
    on_pass: Callable[[Case, int, Round], None] | None = None,
    earlier: Mapping[str, Sequence[Round]] | None = None,
    first_pass: Callable[[Case, Timing, str], Measurement] | None = None,
    later_pass: Callable[..., Round] | None = None,
    workers: int = 1,
    cancel: Callable[[], None] | None = None,
    clock: Any = None,
) -> None:
    """Measure `cases` in rounds; `on_final` gets each case's pooled Measurement the moment it is final.

    `on_start(case, pass number, passes planned)` precedes every pass (the plan grows when a retry is added);
    `pause(case)` runs between passes (the cool-down); `on_pass(case, index, round)` follows every pass;
    `earlier` holds passes a killed sweep took of these cases. `first_pass(case, timing, suite, slot)` and
    `later_pass(case, timing, like, retry=, slot=)` measure (default: in this process, `run_case` / `measure_again`;
    `rpbench.measure.isolated` runs each in a worker process). With `workers` > 1, the passes of a round run on
    `workers` slots at a time (they must run out of process: `isolated`), without pauses between them: a case's
    first pass takes the first free slot, and its later passes wait for that same slot (one GPU per case, see
    `run_parallel`); `cancel()` kills the passes still running when the sweep stops early. `clock` (a
    `machine.reference.ReferenceClock`, or None) times the reference kernel at the start of every round and, one
    pass after another, between chunks of a long round; each pass records its latest timing, each row its drift.
    """
    freeze_heap()
    first_pass = first_pass or (lambda case, timing, suite, slot=0: run_case(case, timing, suite=suite))
    later_pass = later_pass or (lambda case, timing, like, retry=False, slot=0:
                                measure_again(case, timing, like, retry=retry))
    progress = {case.case_id: _Progress(case, retries_left=timing.retries) for case in cases}
    for case_id, passes in (earlier or {}).items():
        if case_id in progress:  # every one kept; the full measurement still to come is a pass of its own
            state = progress[case_id]
            state.rounds = list(passes)
            state.regular = min(timing.rounds, sum(not r.retry and (r.sweep_round or 0) < timing.rounds
                                                   for r in passes))
            state.retries_left = max(0, timing.retries - sum(r.retry for r in passes))
    planned = sum(max(1, timing.rounds - state.regular) for state in progress.values())
    taken = 0
    extra = ExtraRounds(timing)
    # the round the passes being taken belong to; rounds after the regular ones continue past any a killed run took
    current = 0
    later = max([timing.rounds - 1, *(r.sweep_round for rs in (earlier or {}).values() for r in rs
                                      if r.sweep_round is not None)]) + 1

    def starting(state: _Progress) -> None:
        nonlocal taken
        taken += 1
        if on_start is not None:
            on_start(state.case, taken, planned)

    def execute(state: _Progress, retry: bool, slot: int = 0) -> tuple[object, float]:
        """One pass of a case on `slot`, no bookkeeping (so passes of different cases may run side by side): the
        first pass's Measurement, a later pass's Round, or the exception a later pass raised; and its seconds."""
        began = time.perf_counter()
        if state.first is None:
            found: object = first_pass(state.case, timing, suite, slot)
        else:
            try:
                found = later_pass(state.case, timing, state.first, retry=retry, slot=slot)
            except Exception as err:
                found = err
        return found, time.perf_counter() - began

    def record(state: _Progress, found: object, elapsed: float, retry: bool) -> None:
        before = len(state.rounds)
        stamp = {"sweep_round": current, "reference_ms": None if clock is None else clock.latest_ms}
        complete = state.first is None and state.regular >= timing.rounds  # resumed with all its regular passes
        if isinstance(found, Measurement):
            state.first = found
            if not complete:  # else it was measured only for what the journal does not keep (FLOPs, memory, ...)
                state.rounds.extend(replace(r, retry=retry, **stamp) for r in found.rounds)
            if found.context_lost:
                state.lost, state.final = found.note or "CUDA context lost", True
        elif isinstance(found, ContextLost):
            state.notes.append(str(found))
            state.lost, state.final = str(found), True
        elif isinstance(found, Exception):  # a later pass failing keeps the passes already taken
            state.notes.append(f"pass {len(state.rounds) + 1} failed: {one_line(found)[:NOTE_LIMIT]}")
            state.retries_left = 0
            state.final = True
        else:
            state.rounds.append(replace(found, **stamp))
        state.spent_s += elapsed
        if retry:
            state.retries_left -= 1
        elif not complete:
            state.regular += 1
        if on_pass is not None:
            for index in range(before, len(state.rounds)):
                on_pass(state.case, index, state.rounds[index])

    def take(state: _Progress, retry: bool) -> None:
        if taken and pause is not None:
            pause(state.case)
        if clock is not None:
            clock.checkpoint()  # a long round is cut into chunks, each after a reference timing
        starting(state)
        record(state, *execute(state, retry), retry)

    fitted_at = -1  # the passes taken when the cases' round effects were last fitted

    def drift() -> Drift | None:
        """The reference kernel's drift with the cases' round effects as they stand (refitted only when a pass was
        added since the last fit)."""
        nonlocal fitted_at
        if clock is None:
            return None
        passes = sum(len(state.rounds) for state in progress.values())
        if passes != fitted_at:
            clock.rounds = RoundEffects.of([pooled_rounds(state.rounds) for state in progress.values()
                                            if state.first is not None and state.first.timed])
            fitted_at = passes
        return clock.drift()

    def finish(state: _Progress) -> None:
        state.final = True
        on_final(_final(state, extra, drift()))
        if state.lost:  # the row that says so is written; nothing after it could be measured
            raise ContextLost(state.lost)

    def finish_all(ending: list[_Progress]) -> None:
        for state in ending:
            finish(state)

    def wants_more(state: _Progress) -> bool:  # bounded: disturbed extra passes do not add to the pool
        return (not state.final and state.first is not None and state.first.timed
                and len(state.rounds) < timing.most_rounds + timing.retries and extra.wants_more(state.rounds))

    def done(state: _Progress, last_round: bool) -> bool:
        """A failed first pass (or a failed later one) ends a case; so does its last pass when none is retried
        and its plan asks for no extra one."""
        if state.final or not state.first.timed:
            return True
        return last_round and not state.wants_retry(timing.rounds) and not wants_more(state)

    def run_batch(states: list[_Progress], retry: bool, last_round: bool, index: int) -> None:
        """Passes of different cases, round `index` of the sweep: one after another, or on `workers` slots at once
        (each pass then runs in a process of its own, see isolated); the bookkeeping stays here, in one thread, in
        the order passes end. Extra passes stop where their time budget ends."""
        nonlocal current
        current = index
        if clock is not None and states:
            clock.round_started(index)
        if workers > 1:
            return run_parallel(states, retry, last_round)
        ending = []  # finished at the end of the round, when its effect on every case is known
        for state in states:
            if not retry and index >= timing.rounds and extra.spent:
                break
            take(state, retry)
            if done(state, last_round):
                if state.lost:
                    finish(state)  # raises: nothing after a lost context can be measured
                ending.append(state)
        finish_all(ending)

    def run_parallel(states: list[_Progress], retry: bool, last_round: bool) -> None:
        """One thread per slot pulls passes from one queue (the round's order): a pass of a case that has a slot
        waits for it, one without takes the first free slot. Nothing on a slot runs beside its own pass."""
        pending, lock, ended, stop = list(states), threading.Lock(), queue.Queue(), threading.Event()

        def serve(slot: int) -> None:
            while not stop.is_set():
                with lock:
                    state = next((s for s in pending if s.slot in (None, slot)), None)
                    if state is None:
                        return
                    pending.remove(state)
                    state.slot = slot
                try:
                    ended.put((state, *execute(state, retry, slot)))
                except BaseException as err:  # a bug in a pass function: the sweep stops with it
                    ended.put((state, err, None))
                    return

        for state in states:
            starting(state)
        threads = [threading.Thread(target=serve, args=(slot,), name=f"rpbench-slot-{slot}", daemon=True)
                   for slot in range(workers)]
        for thread in threads:
            thread.start()
        ending = []
        try:
            for _ in states:
                state, found, elapsed = ended.get()
                if elapsed is None:
                    raise found
                record(state, found, elapsed, retry)
                if done(state, last_round):
                    if state.lost:
                        finish(state)
                    ending.append(state)
        except BaseException:
            stop.set()
            if cancel is not None:
                cancel()  # the worker processes of passes still running: nothing waits for them
            raise
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        finish_all(ending)

    for index in range(timing.rounds):
        last_round = index == timing.rounds - 1
        # a pass taken before a resume counts; the last round still gives such a case its full measurement
        batch = [progress[case.case_id] for case in round_order(cases, index)]
        run_batch([state for state in batch
                   if not (state.final or (state.regular > index and not (state.first is None and last_round)))],
                  retry=False, last_round=last_round, index=index)
    while True:
        retrying = [state for state in progress.values() if state.wants_retry(timing.rounds)]
        if not retrying:
            break
        planned += len(retrying)
        run_batch(retrying, retry=True, last_round=True, index=later)
        later += 1
    extra.start()
    while True:  # extra rounds: every case whose plan asks for more passes, interleaved, within the budget
        wanting = [progress[case.case_id] for case in round_order(cases, later) if wants_more(progress[case.case_id])]
        if not wanting:
            break
        planned += len(wanting)
        run_batch(wanting, retry=False, last_round=True, index=later)
        later += 1
    for state in progress.values():
        if not state.final:
            finish(state)
