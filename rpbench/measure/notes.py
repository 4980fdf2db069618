"""What a row says about how its case ran: knobs fitted to the grid, a sampling budget that cut the samples, and
its FLOPs (no formula, or a formula the count disagrees with)."""
from __future__ import annotations

import attentions

from ..core.case import Case, Timing
from .timing import MAX_TIMED_S


FLOP_AGREEMENT = 0.01  # a FLOP formula further than this from the counted FLOPs gets a note on every row


def flop_note(case: Case, analytic: int | None, counted: int | None) -> str | None:
    """What a row should say about its FLOPs: no formula (the counted FLOPs stand alone), or a formula the count
    disagrees with by more than 1 % (forward only: fwd+bwd analytic is the 3 x forward convention), or no count
    (`counted` None: FlopCounterMode saw none of the work, which is an unknown count, not 0 FLOPs)."""
    if counted is None:
        return ("FlopCounterMode counted no FLOPs (the work runs in ops it does not know): flops_counted is left "
                "empty" + ("" if analytic is not None or case.scope != "layer" else
                           f"; {case.attention} has no FLOP formula either: no FLOP figure, no TFLOP/s"))
    if case.scope != "layer":
        return None
    if analytic is None:
        return f"no FLOP formula for {case.attention}: flops_counted (FlopCounterMode) is the FLOP figure"
    if case.mode != "fwd" or not counted:
        return None
    apart = abs(analytic - counted) / counted
    if apart > FLOP_AGREEMENT:
        return (f"FLOP formula gives {analytic:,} but {counted:,} were counted ({100 * apart:.0f} % apart): "
                "check the formula")
    return None


def knobs_as_run(case: Case) -> str | None:
    """A note when the mechanism runs other knob values than the case asks for (a window clamped to the grid)."""
    if case.scope != "layer":
        return None
    asked = case.knob_dict
    ran = attentions.spec(case.attention).effective((case.height, case.width), **asked)
    changed = [key for key in sorted(ran) if ran[key] != asked.get(key)]
    if not changed:
        return None
    return ("ran " + ", ".join(f"{key}={ran[key]!r}" for key in changed) + " (asked "
            + ", ".join(f"{key}={asked.get(key)!r}" for key in changed) + f"; fitted to the {case.height}x"
            f"{case.width} grid)")


def capped(timing: Timing, taken: int) -> str | None:
    """A note when the sampling budget cut the samples below what the settings asked for."""
    wanted = timing.repeat if timing.repeat is not None else timing.min_samples
    if taken >= wanted:
        return None
    return f"{taken} samples instead of {wanted}: sampling stops after {MAX_TIMED_S:g} s per case"
