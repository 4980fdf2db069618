"""On a GPU: every mechanism captures into a CUDA graph in fwd and fwdbwd, a replay computes what the eager call
computes, and at N = 196 a graph replay of dense and rpattention (fwd and fwdbwd) is no slower than the eager call
(launch overhead gone). Skipped without CUDA."""
from __future__ import annotations

import pytest
import torch

import attentions
from rpbench.measure.timing import time_graph, time_step
from rpbench.measure.workload import make_workload
from rpbench.core.case import CaseFlags, Timing
from rpbench.suites import case_from_flags

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TIMING = Timing(warmup_ms=20, repeat=30, flush_l2=True)


def _work(name: str, mode: str, tokens: int = 196):
    m = {"m": 49} if "m" in attentions.spec(name).knobs else {}
    flags = CaseFlags(attention=name, tokens=tokens, dim=96, heads=3, dtype="float16", mode=mode, device="cuda", **m)
    return make_workload(case_from_flags(flags))


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("name", attentions.builtin())
def test_every_mechanism_captures_and_replays_what_eager_computes(name, mode):
    work = _work(name, mode)
    work.reset()
    eager = work.step().detach().clone()
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            work.reset()
            work.step()
    torch.cuda.current_stream().wait_stream(side)
    work.reset()
    with torch.cuda.graph(graph):
        captured = work.step()
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured, eager, rtol=0, atol=0)  # the same kernels on the same inputs
    assert len(time_graph(work.step, work.reset, "cuda", TIMING)) == 30


@pytest.mark.alone
@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
@pytest.mark.parametrize("name", ["dense", "rpattention"])
def test_a_graph_replay_is_no_slower_than_the_eager_call_at_196_tokens(name, mode):
    work = _work(name, mode)
    eager = sorted(time_step(work.step, work.reset, "cuda", TIMING))[15]
    graphed = sorted(time_graph(work.step, work.reset, "cuda", TIMING))[15]
    assert graphed <= eager * 1.05, (name, graphed, eager)
