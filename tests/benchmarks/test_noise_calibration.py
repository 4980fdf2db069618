"""benchmarks/noise_calibration.py judges default runs against a reference run: checked on hand-made runs whose
answers are known (the script itself takes minutes of real sweeps; the lead runs it)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from fake_runs import scaling_rows, write_run

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "noise_calibration.py"


@pytest.fixture(scope="module")
def calibration():
    spec = importlib.util.spec_from_file_location("noise_calibration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _with_interval(rows, scale=1.0, half=0.1, miss=()):
    """Rows scaled by `scale`, each with a ±half interval around its median (or beside it, for `miss`)."""
    out = []
    for index, row in enumerate(rows):
        median = row["latency_ms_median"] * scale
        centre = median * (1.5 if index in miss else 1.0)
        out.append({**row, "latency_ms_median": median, "latency_ms_p20": median * 0.95,
                    "latency_ms_p80": median * 1.05, "latency_ms_ci_low": centre * (1 - half),
                    "latency_ms_ci_high": centre * (1 + half), "ci_pct": 100 * half, "rounds": 3,
                    "target_met": half <= 0.1})
    return out


def test_judge_counts_coverage_width_flags_and_speedup_order(calibration, tmp_path):
    reference = calibration.analysed(write_run(tmp_path / "ref", _with_interval(scaling_rows(), half=0.02)))
    run = calibration.analysed(write_run(tmp_path / "run", _with_interval(scaling_rows(), 1.05, miss=(0, 3))))
    judged = calibration.judge(reference, run)
    assert judged["rows"] == 8 and judged["with_interval"] == 8
    assert judged["coverage"] == pytest.approx(6 / 8)  # two intervals were put beside their medians
    assert judged["agreement"] == 1.0  # every median within both half-widths of the reference's (5 % apart)
    assert judged["median_ci_pct"] == pytest.approx(10.0) and judged["flagged"] == 0
    assert judged["speedup_order_agreement"] == 1.0  # one pair per size (dense, rp), ordered as in the reference
    assert judged["mean_rounds"] == 3 and judged["target_met"] == 1.0
    assert "| default |" not in calibration.table({"runs": [], "reference": {
        "wall_s": 1.0, "median_ci_pct": 2.0, "mean_rounds": 10, "flagged": 0.0,
        "machine": {"drift_pct": None, "others_busy_cores_median": 0.1}}})
