"""Persistent isolated workers: one process per slot takes pass after pass, case after case, and is replaced only
after a case that needs a fresh process, or when it dies. One worker slot is shared by the whole module (each test
counts the processes it started)."""
from __future__ import annotations

import dataclasses
import os
import signal
import textwrap

import pytest

from rpbench.core.case import CaseFlags, Timing
from rpbench.core.measurement import Measurement
from rpbench.measure import isolated
from rpbench.measure.worker import fresh_process_reason
from rpbench.suites import case_from_flags

LOGGED = '''
    import os
    import torch
    from torch import nn

    class Logged(nn.Module):
        def __init__(self, dim, num_heads, grid):
            super().__init__()
            with open({log!r}, "a") as out:
                out.write(f"{{os.getpid()}}\\n")
            {action}
            self.fc = nn.Linear(dim, dim)

        def forward(self, x):
            return self.fc(x)
'''
TIMING = Timing(warmup_ms=1, repeat=3, rounds=1)


@pytest.fixture(scope="module")
def slots():
    with isolated.Slots([{}], timeout_s=120, threads=1) as shared:
        yield shared


def logged(tmp_path, action: str = "pass"):
    """A case of a planted mechanism that logs the pid of every process that builds it; and that log."""
    log = tmp_path / "pids.log"
    (tmp_path / "logged.py").write_text(textwrap.dedent(LOGGED.format(log=str(log), action=action)))
    case = case_from_flags(CaseFlags(attention=f"{tmp_path / 'logged.py'}:Logged", tokens="16", dim=32, heads=4,
                                     device="cpu"))
    return case, log


def dense(tokens: str = "16"):
    return case_from_flags(CaseFlags(attention="dense", tokens=tokens, dim=32, heads=4, device="cpu"))


@pytest.mark.slow
def test_one_worker_takes_every_pass_of_every_case(slots, tmp_path):
    case, log = logged(tmp_path)
    before = slots.started
    first = slots.first(case, TIMING, "s")
    other = slots.first(dense(), TIMING, "s")
    again = [slots.later(case, TIMING, first), slots.later(dense(), TIMING, other), slots.later(case, TIMING, first)]
    assert first.status == "ok" and other.status == "ok" and all(r.samples for r in again)
    assert slots.started - before <= 1  # the one worker (started here unless an earlier test left it running)
    pids = set(log.read_text().split())
    assert len(pids) == 1 and pids != {str(os.getpid())}  # built three times, in one worker, never in the sweep


@pytest.mark.slow
@pytest.mark.parametrize("action, status", [
    ("torch.use_deterministic_algorithms(True)", "ok"),  # a process-wide setting the next case would inherit
    ("raise ValueError('planted')", "error"),  # a failed case
])
def test_a_case_that_leaves_state_behind_gets_a_fresh_process_after_it(slots, tmp_path, action, status):
    case, log = logged(tmp_path, action)
    assert slots.first(dense(), TIMING, "s").status == "ok"
    before = slots.started
    assert slots.first(case, TIMING, "s").status == status
    assert slots.started == before  # it ran in the worker that was there
    assert slots.first(dense("64"), TIMING, "s").status == "ok"
    assert slots.started == before + 1  # the next case got a fresh one


@pytest.mark.slow
def test_a_worker_killed_while_idle_is_replaced_without_blaming_the_next_pass(slots):
    first = slots.first(dense(), TIMING, "s")
    os.kill(slots.workers[0].pid, signal.SIGKILL)
    before = slots.started
    assert slots.later(dense(), TIMING, first).samples  # a Round, not WorkerDied
    assert slots.started == before + 1


def test_which_cases_get_a_fresh_process():
    plain = dense()
    compiled = dataclasses.replace(plain, compile="default")
    state = {"default dtype": "torch.float32", "cudnn_benchmark": False}

    def job(case):
        return isolated.Job("first", case, TIMING, "s", 1)

    def row(status, **extra):
        return Measurement(case=plain, suite="s", status=status, **extra)

    assert fresh_process_reason(job(plain), row("ok"), state, state) is None
    assert fresh_process_reason(job(plain), row("unsupported"), state, state) is None  # refused before building
    assert fresh_process_reason(job(plain), row("inaccurate"), state, state) is None
    assert "compiled case" in fresh_process_reason(job(compiled), row("ok"), state, state)
    for failed in ("error", "oom", "nonfinite"):
        assert f"first pass failed ({failed})" == fresh_process_reason(job(plain), row(failed), state, state)
    assert "CUDA context lost" == fresh_process_reason(job(plain), row("error", context_lost=True), state, state)
    assert "later pass failed" == fresh_process_reason(job(plain), RuntimeError("x"), state, state)
    changed = fresh_process_reason(job(plain), row("ok"), state, {**state, "cudnn_benchmark": True})
    assert changed == "the case changed cudnn_benchmark (False -> True)"
