"""CUDA-only paths of the runner checked on a CPU with stand-ins (issue 33): a failed graph capture, the timer of a
compiled mode with its own CUDA graphs, the compiled module kept across a failed accuracy reference, FLOPs a counter
cannot count, the SDPA backend read without a profiler (energy over what the timer timed: test_passes.py). The
real thing runs in tests/cuda/ on a GPU."""
from __future__ import annotations

import contextlib
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import attentions
from attentions import neighborhood
from rpbench.core.case import CaseFlags, Timing
from rpbench.measure import passes, probes, runner, timing, torch_compat
from rpbench.measure.workload import make_workload
from rpbench.suites import case_from_flags

CAPTURE_END = "CUDA error: operation failed due to a previous error during capture"


class FakeStream:
    def __init__(self, name: str = "side"):
        self.name = name

    def wait_stream(self, _other) -> None:
        pass


@pytest.fixture
def fake_graphs(monkeypatch):
    """torch.cuda's streams and graphs as a CPU build lacks them, behind torch's own `torch.cuda.graph` class (whose
    __exit__ is what is under test): a current stream, stream contexts that restore it, and a CUDAGraph whose
    capture_end raises as CUDA does once an op failed during the capture."""
    world = SimpleNamespace(current=FakeStream("default"), capturing=False, failed=False, replays=0)

    @contextlib.contextmanager
    def stream(target):
        before, world.current = world.current, target
        try:
            yield
        finally:
            world.current = before

    class Graph:
        def capture_begin(self, *pool, **kwargs):
            world.capturing = True

        def capture_end(self):
            world.capturing = False
            if world.failed:
                raise RuntimeError(CAPTURE_END)

        def replay(self):
            world.replays += 1

    def set_stream(target):
        world.current = target

    for name, value in {"current_stream": lambda *a: world.current, "set_stream": set_stream, "Stream": FakeStream,
                        "stream": stream, "synchronize": lambda *a: None, "empty_cache": lambda: None,
                        "CUDAGraph": Graph}.items():
        monkeypatch.setattr(torch.cuda, name, value)
    monkeypatch.setattr(torch._C, "_host_emptyCache", lambda: None, raising=False)
    monkeypatch.setattr(torch.cuda.graph, "default_capture_stream", None)
    return world


def test_a_failed_capture_names_the_ops_error_and_restores_the_stream(fake_graphs):
    def step():
        if fake_graphs.capturing:
            fake_graphs.failed = True
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing (a .item() sync)")

    default = fake_graphs.current
    with pytest.raises(timing.GraphCaptureFailed, match="operation not permitted when stream is capturing") as err:
        timing.time_graph(step, lambda: None, "cuda", Timing(warmup_ms=0, repeat=2))
    assert "previous error during capture" not in str(err.value)
    assert fake_graphs.current is default  # everything after runs on the stream it ran on before


def test_a_capture_that_works_is_replayed(fake_graphs):
    graph = timing.capture_step(lambda: None, lambda: None)
    graph.replay()
    assert fake_graphs.replays == 1 and not fake_graphs.capturing


def cuda_case(compile_mode: str, timer: str = "auto"):
    case = case_from_flags(CaseFlags(attention="dense", grid="4x4", dim=16, heads=2, device="cpu"))
    return replace(case, device="cuda", compile=compile_mode), Timing(timer=timer)


@pytest.mark.parametrize("mode, timer, expected", [
    ("reduce-overhead", "auto", "eager"), ("max-autotune", "cudagraph", "eager"),
    ("max-autotune-no-cudagraphs", "auto", "auto"), ("default", "auto", "auto"), ("none", "cudagraph", "cudagraph"),
])
def test_a_compiled_mode_with_its_own_cuda_graphs_is_never_captured_again(mode, timer, expected):
    case, settings = cuda_case(mode, timer)
    chosen, note = passes.timer_for(case, settings)
    assert chosen.timer == expected
    assert (note is not None) == (expected != timer) and (note is None or mode in note)


def test_the_timed_round_uses_that_timer(monkeypatch):
    case, settings = cuda_case("reduce-overhead")
    asked = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(runner, "timed_samples", lambda step, reset, device, timing: asked.append(timing.timer)
                        or ([1.0], "cuda_event", None))
    monkeypatch.setattr(runner.telemetry, "device_uuid", lambda index: None)
    monkeypatch.setattr(runner, "LoadMonitor", lambda *a: contextlib.nullcontext(SimpleNamespace(load=None)))
    monkeypatch.setattr(runner, "GpuWatch", lambda *a: contextlib.nullcontext(SimpleNamespace(window=None)))
    work = SimpleNamespace(step=lambda: None, reset=lambda: None, module=torch.nn.Identity())
    taken = runner.timed_round(case, settings, work)
    assert asked == ["eager"] and "replays its own CUDA graphs" in taken.note


def test_a_failed_accuracy_reference_keeps_the_compiled_module(monkeypatch):
    """release() after a failed reference must not reset torch.compile mid-case: the timed pass would recompile
    (max-autotune may then pick other kernels than compile_first counted)."""
    import torch._dynamo

    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(runner, "relative_error", lambda case, work: (_ for _ in ()).throw(MemoryError("float64")))
    case = case_from_flags(CaseFlags(attention="dense", grid="4x4", dim=16, heads=2, device="cpu"))
    error, note = runner._accuracy(case, SimpleNamespace())
    assert error is None and "rel_err not measured" in note
    assert resets == []
    runner.release("cpu")  # between cases it still forgets everything compiled
    assert resets == [1]


def neighborhood_case(backend: str):
    return case_from_flags(CaseFlags(attention="neighborhood", grid="8x8", dim=16, heads=2, device="cpu",
                                     mode="fwd", knobs=[f"backend={backend}", "kernel=3"]))


@pytest.mark.slow  # flex's eager path compiles on the CPU (seconds)
def test_a_neighborhood_row_on_flex_counts_its_flops_by_the_formula_and_says_so(monkeypatch):
    """FlopCounterMode raises on flex_attention (on CUDA, where `auto` picks flex without natten, every row was an
    error). torch's unfused flex stands in for the compiled one to keep the test fast."""
    monkeypatch.setattr(neighborhood, "compiled_flex", lambda: neighborhood.flex_attention)
    case = neighborhood_case("flex")
    measured = runner.run_case(case, Timing(warmup_ms=0, repeat=1, rounds=1))
    assert measured.status == "ok", measured.notes
    assert measured.flops_counted == measured.flops_analytic
    assert any("flops_counted is the FLOP formula's" in note and "flex" in note for note in measured.notes)
    work = make_workload(case)
    with pytest.raises(Exception):  # the defect: counting flex raises (and leaves Dynamo unusable for flex after)
        attentions.count_flops(lambda: work.probe_step())


def test_a_flop_count_that_fails_is_a_note_not_the_rows_error(monkeypatch):
    monkeypatch.setattr(attentions, "count_flops", lambda fn: (_ for _ in ()).throw(TypeError("no implementation")))
    work = make_workload(neighborhood_case("reference"))
    counted, note = passes.counted_flops(neighborhood_case("reference"), work)
    assert counted is None and note.startswith("FLOPs not counted: TypeError: no implementation")


def test_the_sdpa_backend_is_read_from_torchs_rule_without_a_profiler(monkeypatch):
    def no_profiler(*_args, **_kwargs):
        raise AssertionError("a profiler session started")

    monkeypatch.setattr(probes, "profile", no_profiler)
    monkeypatch.setattr(torch.profiler, "profile", no_profiler)
    q = torch.randn(1, 2, 16, 8)
    step = lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)  # noqa: E731
    assert probes.sdpa_kernels_that_ran(step, lambda: None) == ["flash"]
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):
        assert probes.sdpa_kernels_that_ran(step, lambda: None) == ["math"]
    assert probes.sdpa_kernels_that_ran(lambda: q @ q.mT, lambda: None) == []


def test_the_sdpa_rule_names_every_backend_the_harness_forces():
    from attentions.dense import SDPA_BACKENDS

    assert {SDPA_BACKENDS[name].name for name in SDPA_BACKENDS} <= set(torch_compat.SDPA_CHOICE_NAMES)
