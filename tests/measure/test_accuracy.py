"""The error column: every case's output against the same module and inputs in higher precision, `inaccurate`
above the dtype's tolerance, and linear attention accurate in float16 at 16k tokens."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import attentions
import rpbench
from attentions import linear as linear_module
from rpbench.analysis import analyse_run, compare_runs, get_metric
from rpbench.measure.accuracy import relative_error
from rpbench.measure.runner import run_case
from rpbench.measure.workload import make_workload
from rpbench.core.case import CaseFlags, Timing
from rpbench.core.schema import ERROR_TOLERANCE
from rpbench.suites import case_from_flags

from cli_helpers import invoke, tiny_suite

QUICK = Timing(warmup_ms=0, repeat=3, rounds=1)


def _case(name: str, tokens: int, dtype: str, **flags):
    return case_from_flags(CaseFlags(attention=name, tokens=tokens, dim=32, heads=2, dtype=dtype, device="cpu",
                                     **flags))


def _unscaled(q, k, v, order="linear", eps=linear_module.EPS):
    """linear attention as it was: sums over all N tokens, which float16 cannot hold from a few thousand on."""
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    state = torch.cat([phi_k.transpose(-1, -2) @ v, phi_k.sum(dim=-2).unsqueeze(-1)], dim=-1)
    read = phi_q @ state
    return read[..., :-1] / (read[..., -1:] + eps)


# Headroom below the tolerance at this size: 10x, except where low precision changes a discrete choice or sums
# long: biformer's top-k region routing can pick other regions in bfloat16 (0.034 measured), DaViT's channel
# attention sums N products into each d×d score (0.006 in bfloat16).
HEADROOM = {"biformer": 1.25, "channel": 5}


@pytest.mark.parametrize("name", attentions.builtin())
def test_every_mechanism_is_within_tolerance_in_every_dtype(name):
    m = {"m": 16} if "m" in attentions.spec(name).knobs else {}
    for dtype in ("float32", "float16", "bfloat16"):
        case = _case(name, 256, dtype, **m)
        error = relative_error(case, make_workload(case))
        assert 0 <= error <= ERROR_TOLERANCE[dtype] / HEADROOM.get(name, 10), (name, dtype, error)


def test_linear_is_accurate_in_float16_at_16k_tokens_and_unchanged_in_float32():
    case = _case("linear", 16384, "float16")
    assert relative_error(case, make_workload(case)) < 1e-3
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4096, 16, generator=gen) for _ in range(3))
    assert torch.equal(linear_module.linear_attention(q, k, v), _unscaled(q, k, v))  # float32: bit for bit
    half = [t.half() for t in (q, k, v)]
    assert not torch.isfinite(_unscaled(*half)).all() or (_unscaled(*half).float() - _unscaled(q, k, v)).norm() > 0.1
    assert (linear_module.linear_attention(*half).float() - _unscaled(q, k, v)).norm() / _unscaled(q, k, v).norm() < 1e-3


@pytest.mark.slow
def test_an_overflowing_mechanism_is_inaccurate_kept_and_left_out_of_speedups(tmp_path, monkeypatch):
    monkeypatch.setattr(linear_module, "linear_attention", _unscaled)  # the float16 overflow, on purpose
    measured = run_case(_case("linear", 4096, "float16"), QUICK, suite="t")
    assert measured.status == "inaccurate" and measured.samples and measured.rel_err > ERROR_TOLERANCE["float16"]
    assert f"inaccurate: rel_err {measured.rel_err:.3g} against float32 exceeds 0.01" in measured.note
    suite = tiny_suite(tmp_path, names=("dense", "linear"), tokens="4096")
    text = suite.read_text().replace('dtype = ["float32"]', 'dtype = ["float16"]').replace("dim = [32]", "dim = [64]")
    suite.write_text(text.replace("heads = [4]", "heads = [2]"))  # head_dim 32: the unscaled normaliser overflows
    out = tmp_path / "run"
    result = invoke("sweep", str(suite), "--out", str(out), "--no-report")
    assert result.exit_code == 0 and "inaccurate" in result.output
    frame = rpbench.load(out)
    row = frame[frame["attention"] == "linear"].iloc[0]
    assert row["status"] == "inaccurate" and row["latency_ms_median"] > 0 and row["rel_err"] > 0.01
    summary = analyse_run(frame, {}).summary
    linear = summary[summary["mechanism"] == "linear"].iloc[0]
    assert linear["flagged"] and pd.isna(linear["speedup"]) and "inaccurate: rel_err" in linear["flags"]
    assert (frame.loc[frame["attention"] == "dense", "rel_err"] < ERROR_TOLERANCE["float16"]).all()


def test_a_case_that_turns_inaccurate_is_a_regression_in_compare():
    from fake_runs import make_row

    before = pd.DataFrame([make_row(attention="linear", tokens=4096, rel_err=3e-4)])
    after = pd.DataFrame([make_row(attention="linear", tokens=4096, status="inaccurate", rel_err=0.47,
                                   latency_ms_median=1.0, notes="inaccurate")])
    after["latency_ms_median"] = 1.0
    from rpbench.core.schema import COLUMNS

    comparison = compare_runs(before.reindex(columns=list(COLUMNS)), after.reindex(columns=list(COLUMNS)),
                              get_metric("latency"), 5.0)
    assert comparison.cases.iloc[0]["verdict"] == "regression"
    assert comparison.cases.iloc[0]["reason"] == "status ok → inaccurate"
