"""Backbone scope end to end: suites, rows with params/MACs/attention share, `run --backbone`, --max-batch."""
from __future__ import annotations

import json

import pytest

import rpbench
from rpbench.core.errors import SuiteError
from rpbench.suites import load_suite, shipped_suites
from rpbench.measure.max_batch import search_max_batch
from rpbench.core.measurement import Measurement

from cli_helpers import invoke

pytestmark = pytest.mark.slow  # the fast lane leaves these out: backbone sweeps end to end

SUITE = """
name = "bb"
scope = "backbone"
[axes]
backbone = ["deit-t"]
resolution = [32, 40, 64]
device = "cpu"
[measure]
warmup_ms = 1
repeat = 3
rounds = 1
[[layout]]
label = "own"
[[layout]]
label = "rp"
attention = "rpattention"
m = 4
"""


def write(tmp_path, text):
    path = tmp_path / "bb.toml"
    path.write_text(text)
    return path


def test_tiny_backbone_sweep(tmp_path):
    out = tmp_path / "run"
    result = invoke("sweep", str(write(tmp_path, SUITE)), "--out", str(out), "--no-report")
    assert result.exit_code == 0, result.output
    frame = rpbench.load(out).set_index(["label", "resolution"])
    assert len(frame) == 6
    # 40 px is not a multiple of DeiT's stride 16: unsupported with the reason, nothing else lost
    assert (frame.xs(40, level="resolution")["status"] == "unsupported").all()
    assert "not divisible by the total stride 16" in frame.loc[("own", 40), "notes"]
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 4
    assert (ok["backbone"] == "deit-t").all() and (ok["params"] > 5e6).all()
    assert ((ok["gflops"] - 2 * ok["gmacs"]).abs() < 1e-9).all()
    assert ok["attention_share"].between(0, 1).all()
    assert frame.loc[("rp", 64), "layout"] == "rpattention:A m=4" and frame.loc[("own", 64), "layout"] == "own"
    assert frame.loc[("own", 64), "attention"] == "dense"
    assert frame.loc[("own", 64), "tokens"] == 16  # the first stage's grid: (64 / 16)²
    lines = result.output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.strip() and set(line.strip()) == {"─"})
    rows = [line.split()[0] for line in lines[rule + 1:rule + 3]]
    assert rows == ["own", "rp"] and lines[rule + 3].startswith("marks:")  # the end-of-sweep grid: a row per layout


def test_shipped_backbone_suite_expands_paper_layouts():
    suite = load_suite(shipped_suites()["backbones"], device_override="cpu")
    layouts = {(c.backbone, c.label): str(c.layout) for c in suite.cases}
    assert layouts[("swin-t", "agent")] == "agent:AAAB m=9,16,49,49"
    assert layouts[("deit-s", "rpattention")] == "rpattention:A m=49"
    assert layouts[("swin-t", "focused")] == "focused:AABB"
    assert {c.resolution for c in suite.cases} == {224, 384, 512, 768, 1024, 1536}


@pytest.mark.parametrize(
    "old, new, words",
    [
        ('backbone = ["deit-t"]', 'backbone = ["deit-x"]', "not allowed"),
        ('attention = "rpattention"', 'attention = "rpattention"\npattern = "AB"', "expected 1 letter or 12"),
        ('label = "own"', 'label = "own"\n[layout.swin-q]\nm = 3', "unknown backbone"),
        ("resolution = [32, 40, 64]", "tokens = [64]", "unknown axis"),
    ],
)
def test_bad_backbone_suites(tmp_path, old, new, words):
    assert old in SUITE
    with pytest.raises(SuiteError, match=words):
        load_suite(write(tmp_path, SUITE.replace(old, new)))


def test_run_backbone_json():
    result = invoke("run", "--backbone", "deit-t", "--attention", "agent", "--m", "4", "--resolution", "32",
                    "--device", "cpu", "--repeat-ms", "10", "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["status"] == "ok" and row["layout"] == "agent:A m=4" and row["gmacs"] > 0


@pytest.mark.parametrize(
    "args, words",
    [
        (("--backbone", "deit-t", "--tokens", "64"), "needs --resolution"),
        (("--backbone", "vit-x", "--resolution", "224"), "unknown backbone"),
        (("--backbone", "swin-t", "--attention", "agent", "--layout", "AAXB", "--resolution", "224"), "letter"),
        (("--backbone", "deit-t", "--resolution", "224", "--max-batch", "--device", "cpu"), "CUDA"),
        (("--backbone", "deit-t", "--resolution", "100"), "not divisible by the total stride 16"),
    ],
)
def test_run_backbone_bad_input(args, words):
    result = invoke("run", *args)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def _fake_rows(oom_from: int | None = None, error_at: int | None = None):
    def run_one(case):
        if oom_from is not None and case.batch >= oom_from:
            return Measurement(case=case, suite="run", status="oom", notes=("CUDA out of memory",))
        if case.batch == error_at:
            return Measurement(case=case, suite="run", status="error", notes=("boom",))
        # throughput saturates at batch 16
        throughput = float(min(case.batch, 16) * 100) - case.batch * 0.1
        return Measurement(case=case, suite="run", status="ok", samples=(1e3 * case.batch / throughput,))
    return run_one


def _case():
    return load_suite(shipped_suites()["quick"], device_override="cpu").cases[0]


def test_max_batch_stops_at_the_oom_boundary():
    search = search_max_batch(_case(), _fake_rows(oom_from=64))
    assert [m.case.batch for m in search.measurements] == [1, 2, 4, 8, 16, 32, 64]
    assert search.max_batch == 32 and search.oom_at == 64 and search.stopped is None
    assert search.best.case.batch == 16


def test_max_batch_other_failures_and_limit():
    failed = search_max_batch(_case(), _fake_rows(error_at=4))
    assert failed.max_batch == 2 and failed.oom_at is None and "batch 4: error (boom)" in failed.stopped
    capped = search_max_batch(_case(), _fake_rows(), limit=8)
    assert capped.max_batch == 8 and "limit of batch 8" in capped.stopped
