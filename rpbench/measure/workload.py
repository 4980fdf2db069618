"""A Case becomes a Workload: the module on its device and dtype, seeded random inputs, and the exact step to time.

Layer cases build one registry mechanism; backbone cases build the whole model. Both go through `build_workload`,
so seeding, dtype handling and the fwd / fwdbwd steps are the same for every case.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.attention import sdpa_kernel

import attentions
from attentions.dense import SDPA_BACKENDS

from .. import backbones
from ..core.case import Case
from ..core.measurement import ModelCosts
from .probes import SDPA_CANDIDATES, attention_share
from .timing import quick_median_ms, synchronize

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class Workload:
    """A built module with its inputs: `step` is exactly what gets timed, `reset` runs before it, untimed.

    With `case.compile` set, `step` runs the torch.compile'd module and `eager_step` the module itself: probing,
    FLOP counting, kernel detection and memory use `probe_step`, which is always eager."""

    module: nn.Module
    step: Callable[[], object]
    reset: Callable[[], None]
    forward: Callable[[], torch.Tensor]
    batch: int
    tokens: int
    flops_analytic: int | None
    inputs: torch.Tensor | None = None  # what `forward` feeds the module (the accuracy check reuses it)
    model: ModelCosts | None = None
    eager_step: Callable[[], object] | None = None  # set when `step` is compiled

    @property
    def probe_step(self) -> Callable[[], object]:
        return self.eager_step or self.step


def make_steps(module: nn.Module, forward: Callable[[], torch.Tensor], mode: str, grad_out: torch.Tensor | None):
    """fwd runs under inference_mode in eval; fwdbwd backpropagates a fixed random output gradient."""
    params = [p for p in module.parameters() if p.requires_grad]

    if mode == "fwd":
        module.eval()

        def step() -> object:
            with torch.inference_mode():
                return forward()

        def reset() -> None:
            return None

        return step, reset

    module.train()

    def step() -> object:
        out = forward()
        out.backward(grad_out)
        return out

    def reset() -> None:
        for param in params:
            param.grad = None

    return step, reset


def build_workload(
    case: Case,
    build: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    flops_analytic: int | None = None,
    describe: Callable[[nn.Module, torch.Tensor], ModelCosts] | None = None,
) -> Workload:
    """The module of `case` on its device and dtype with seeded random inputs (never zeros) and output gradient.

    `describe(module, inputs)`, when given, measures model-level facts (MACs, attention share) on the eval-mode
    module before any timing.
    """
    dtype = TORCH_DTYPES[case.dtype]
    amp = case.precision == "amp"
    if amp and dtype == torch.float32:
        raise attentions.UnsupportedConfig("precision amp runs float32 parameters under autocast to float16 or "
                                           "bfloat16; with float32 it is the same as cast")
    stored = torch.float32 if amp else dtype  # parameters and inputs
    torch.manual_seed(case.seed)
    module = build()
    if not isinstance(module, nn.Module):
        raise TypeError(f"{case.attention}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    module = module.to(device=case.device, dtype=stored)
    gen = torch.Generator(device="cpu").manual_seed(case.seed + 1)
    inputs = torch.randn(input_shape, generator=gen).to(device=case.device, dtype=stored)
    grad_out = torch.randn(output_shape, generator=gen).to(device=case.device, dtype=dtype)
    if case.channels_last:
        module = module.to(memory_format=torch.channels_last)
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    model = describe(module.eval(), inputs) if describe else None

    def calling(target: nn.Module) -> Callable[[], torch.Tensor]:
        if not amp:
            return lambda: target(inputs)

        def under_autocast() -> torch.Tensor:
            with torch.autocast(device_type=case.device, dtype=dtype):
                return target(inputs)
        return under_autocast

    forward = calling(module)
    step, reset = make_steps(module, forward, case.mode, grad_out)
    eager_step = None
    if case.compile != "none":
        eager_step = step
        compiled = compile_module(module, case.compile)
        step, _ = make_steps(compiled, calling(compiled), case.mode, grad_out)
    return Workload(module=module, step=step, reset=reset, forward=forward, batch=case.batch, tokens=case.tokens,
                    flops_analytic=flops_analytic, inputs=inputs, model=model, eager_step=eager_step)


def compile_module(module: nn.Module, mode: str) -> nn.Module:
    """torch.compile in `mode`, after forgetting every earlier compilation (each case compiles from scratch, and
    the counters read afterwards are this case's alone)."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    return torch.compile(module, mode=None if mode == "default" else mode)


def make_layer_workload(case: Case) -> Workload:
    """The attention layer of `case`, with its analytic FLOPs."""
    spec = attentions.spec(case.attention)
    grid = (case.height, case.width)
    parts = spec.flops(batch=case.batch, grid=grid, dim=case.dim, num_heads=case.heads, **case.knob_dict)
    flops = None if parts is None else parts["total"]  # a plugin without a formula: the counted FLOPs stand alone
    # Backward of a matmul costs two forward matmuls (input and weight gradients): fwd+bwd ≈ 3 × forward.
    shape = (case.batch, case.tokens, case.dim)
    return build_workload(
        case,
        lambda: spec.build(dim=case.dim, num_heads=case.heads, grid=grid, **case.knob_dict),
        shape,
        shape,
        flops_analytic=None if flops is None else flops if case.mode == "fwd" else 3 * flops,
    )


def make_backbone_workload(case: Case, describe_model: bool = True) -> Workload:
    """The whole model on seeded random images, with its MACs and the measured attention share (unless
    `describe_model` is False: a later round of a case needs neither)."""

    def describe(model: nn.Module, images: torch.Tensor) -> ModelCosts:
        countable = attentions.uncounted_flops(model, case.device) is None  # neighborhood on flex / natten is not
        share, note = attention_share(model, images, case.device)
        return ModelCosts(macs=backbones.count_macs(model, images[:1]) if countable else None,
                          attention_share=share, note=note)

    # No closed-form FLOPs for a whole model: flops_analytic stays empty, flops_counted is measured.
    return build_workload(
        case,
        lambda: backbones.build(case.backbone, case.resolution, case.layout),
        (case.batch, 3, case.resolution, case.resolution),
        (case.batch, 1000),
        describe=describe if describe_model else None,
    )


def make_workload(case: Case, describe: bool = True) -> Workload:
    return make_backbone_workload(case, describe) if case.scope == "backbone" else make_layer_workload(case)


def forces_fastest_sdpa(case: Case) -> bool:
    """`dense` with backend=auto is measured with the fastest SDPA backend that runs here, forced."""
    return case.scope == "layer" and case.attention == "dense" and case.knob_dict.get("backend") == "auto"


def apply_fastest_sdpa(case: Case, work: Workload) -> str | None:
    """Force the fastest SDPA backend where `forces_fastest_sdpa`; returns the note saying which."""
    return choose_fastest_sdpa(work, case.device) if forces_fastest_sdpa(case) else None


def choose_fastest_sdpa(work: Workload, device: str) -> str:
    """Probe every SDPA backend that can run on `device` and keep the fastest on the module."""
    timings: dict[str, float] = {}
    for backend in SDPA_CANDIDATES[device]:
        work.module.sdpa_backend = backend
        try:
            with warnings.catch_warnings():  # "kernel not used because ..." for every backend that cannot run
                warnings.simplefilter("ignore")
                timings[backend] = quick_median_ms(work.probe_step, work.reset, device)
        except RuntimeError:
            continue
        finally:
            synchronize(device)
    if not timings:
        work.module.sdpa_backend = "auto"
        return "no forced SDPA backend ran; PyTorch's default was used"
    best = min(timings, key=timings.get)
    work.module.sdpa_backend = best
    probes = ", ".join(f"{name} {ms:.3g} ms" for name, ms in sorted(timings.items(), key=lambda kv: kv[1]))
    return f"auto backend = fastest probed ({probes})"


@contextlib.contextmanager
def pinned_sdpa(case: Case, work: Workload) -> Iterator[None]:
    """Around a measured pass: a module that forces an SDPA backend gets it set once here (`sdpa_kernel`) instead
    of entering `sdpa_kernel` on every call inside the timed loop. Compiled modules keep their own (changing the
    attribute would make torch.compile recompile)."""
    backend = getattr(work.module, "sdpa_backend", "auto")
    if case.compile != "none" or backend not in SDPA_BACKENDS:
        yield
        return
    work.module.sdpa_backend = "auto"  # the module's own call is plain; the context below picks the kernel
    try:
        with sdpa_kernel([SDPA_BACKENDS[backend]]):
            yield
    finally:
        work.module.sdpa_backend = backend
