"""Model-level costs: parameters, counted MACs, and the measured share of time spent in attention."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

import attentions

from ..measure import quiet_native_stderr

ATTENTION_EVENT = "backbone.attention"
FORWARD_EVENT = "backbone.forward"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, images: Tensor) -> int:
    """Forward multiply-accumulates: FlopCounterMode FLOPs (matmuls, convs, SDPA) / 2.

    Works on the meta device too (model built under `torch.device("meta")`, meta images): the
    count is the same and nothing is computed, which makes large resolutions free to count.
    """
    with torch.no_grad():
        return attentions.count_flops(lambda: model(images)) // 2


def _annotate(modules: list[nn.Module]) -> list:
    """Wrap each module's forward in a profiler range via hooks, so the model itself is unchanged."""
    open_ranges = []

    def enter(module, args):
        open_ranges.append(record_function(ATTENTION_EVENT))
        open_ranges[-1].__enter__()

    def leave(module, args, output):
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    return handles


def attention_share(model: nn.Module, images: Tensor, device: str | torch.device) -> float:
    """Fraction of one forward's time spent inside the model's attention modules, measured.

    Runs one warm-up forward, then one forward under torch.profiler with every attention module in
    a `backbone.attention` range. On CUDA the times are kernel (device) time; on CPU they are the
    ranges' wall time. `model` must be a backbone from `build` (it lists its attention modules),
    on `device` with `images`. Run it in its own pass: the profiler slows whatever it records.
    """
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    handles = _annotate(model.attention_modules())
    try:
        with torch.no_grad():
            model(images)
            if cuda:
                torch.cuda.synchronize()
            with quiet_native_stderr(), profile(activities=activities) as prof:
                with record_function(FORWARD_EVENT):
                    model(images)
                if cuda:
                    torch.cuda.synchronize()
    finally:
        for handle in handles:
            handle.remove()

    def duration(event) -> float:
        return event.device_time_total if cuda else event.cpu_time_total

    # CPU-side ranges only: on CUDA their device_time_total sums the kernels they launched, while
    # the matching GPU-side annotation events would count the same work again.
    events = [
        e for e in prof.events() if e.name in (ATTENTION_EVENT, FORWARD_EVENT) and e.device_type == DeviceType.CPU
    ]
    total = sum(duration(e) for e in events if e.name == FORWARD_EVENT)
    inside = sum(duration(e) for e in events if e.name == ATTENTION_EVENT)
    if total <= 0:
        raise RuntimeError("the profiler recorded no forward time; cannot compute the attention share")
    return min(max(inside / total, 0.0), 1.0)
