"""How numbers read in every view."""
from __future__ import annotations

import pandas as pd

from rpbench.views.format import fmt_flops, fmt_int, fmt_number


def test_number_formatting():
    assert fmt_number(0.076832) == "0.0768"
    assert fmt_number(104123.4) == "104,123"
    assert fmt_number(pd.NA) == "—"
    assert fmt_flops(7.55e9) == "7.55 G"
    assert fmt_int(12544) == "12,544"
