"""Is a low-precision result right? The case's output against the same module and inputs in higher precision.

Run once per case, outside every timed region: the output of the step that is timed (compiled or not) against
the module copied with its parameters and the (already rounded) inputs cast up to the reference dtype, run in
the mode the timed module is in (a BatchNorm in train mode normalises with the batch's statistics, in eval mode with
its running ones: comparing the two would compare two functions). `rel_err` = ‖y − y_ref‖ / ‖y_ref‖ over the whole output. float16 and bfloat16 are checked against
float32, float32 against float64.
"""
from __future__ import annotations

import copy

import torch

from ..core.case import Case
from .workload import Workload

REFERENCE_DTYPES = {"float16": torch.float32, "bfloat16": torch.float32, "float32": torch.float64}


def relative_error(case: Case, work: Workload) -> float:
    """‖y − y_ref‖ / ‖y_ref‖ of the case's forward output (inf when the output is not finite)."""
    reference = copy.deepcopy(work.module).to(dtype=REFERENCE_DTYPES[case.dtype]).train(work.module.training)
    if hasattr(reference, "sdpa_backend"):
        reference.sdpa_backend = "auto"  # a forced fused kernel may not take float64; the math path does
    try:
        work.reset()
        out = work.step()  # exactly what is timed (fwdbwd: the forward's output; the backward runs too)
        with torch.no_grad():  # not inference_mode: a train-mode BatchNorm updates its (copied) running stats
            expected = reference(work.inputs.to(REFERENCE_DTYPES[case.dtype]))
    finally:
        del reference
    out = out.detach()
    diff = (out.double() - expected.double()).norm()
    norm = expected.double().norm()
    if not torch.isfinite(diff) or not torch.isfinite(norm):
        return float("inf")
    return float(diff / norm) if norm > 0 else float(diff)
