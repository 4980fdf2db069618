"""Case ids are the join key of --resume and compare: a results dir written by any earlier rpbench must still match.

The ids below were computed before the restructure (commit 3d1f4cf) and must never change for the same case.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rpbench.suites import load_suite
from rpbench.core.case import CaseFlags
from rpbench.suites import case_from_flags

LAYER = """
name = "pinned-layer"
[axes]
tokens = [196, "32x64"]
m = [16, 49]
batch = [1, 4]
dim = [96]
heads = [3]
dtype = ["float32", "bfloat16"]
mode = ["fwd", "fwdbwd"]
device = "cpu"
[[attention]]
name = "dense"
[[attention]]
name = "rpattention"
label = "rp-em2"
em_iters = 2
[[attention]]
name = "window"
"""

RESOLUTION = """
name = "pinned-res"
[axes]
resolution = [224, 512]
patch = 16
dtype = ["float16"]
device = "cpu"
[[attention]]
name = "agent"
[[attention]]
name = "dense"
backend = "flash"
"""

BACKBONE = """
name = "pinned-backbone"
scope = "backbone"
[axes]
backbone = ["deit-s", "swin-t"]
resolution = [224, 512]
batch = [1]
dtype = ["bfloat16"]
mode = ["fwd"]
device = "cpu"
[[layout]]
label = "own"
[[layout]]
label = "rp"
attention = "rpattention"
pattern = "AAAB"
m = [9, 16, 49, 49]
[layout.deit-s]
pattern = "A"
m = 49
"""

# (suite text, number of cases, sha1 of all ids joined in suite order, {index: (describe, id)})
PINNED = {
    "layer": (LAYER, 64, "1928246be27eddec", {
        0: ("dense 14x14 b1 float32 fwd cpu", "03eeb0786961"),
        1: ("dense 14x14 b1 float32 fwdbwd cpu", "453696e68016"),
        32: ("rp-em2 32x64 m=16 b1 float32 fwd cpu", "8497352750ae"),
        63: ("window 32x64 b4 bfloat16 fwdbwd cpu", "d82a41857b12"),
    }),
    "resolution": (RESOLUTION, 4, "2ecce239065b000d", {
        0: ("agent 224px m=49 b1 float16 fwd cpu", "368745ffad3b"),
        1: ("agent 512px m=49 b1 float16 fwd cpu", "eab5e76f3ae6"),
        2: ("dense 224px b1 float16 fwd cpu", "ca8fde48219e"),
        3: ("dense 512px b1 float16 fwd cpu", "a00b659f08f6"),
    }),
    "backbone": (BACKBONE, 8, "413f0ca9b7e7529f", {
        0: ("deit-s/own 224px b1 bfloat16 fwd cpu", "78fcfe308997"),
        1: ("deit-s/own 512px b1 bfloat16 fwd cpu", "0324ae47e4f9"),
        4: ("deit-s/rp 224px m=49 b1 bfloat16 fwd cpu", "9ff5b15fce48"),
        7: ("swin-t/rp 512px m=9 b1 bfloat16 fwd cpu", "aa66e0d925ab"),
    }),
}


@pytest.mark.parametrize("kind", sorted(PINNED))
def test_suite_case_ids_never_change(tmp_path: Path, kind: str):
    text, count, digest, picks = PINNED[kind]
    path = tmp_path / f"{kind}.toml"
    path.write_text(text, encoding="utf-8")
    cases = load_suite(path).cases
    assert len(cases) == count
    for index, (described, case_id) in picks.items():
        assert (cases[index].describe(), cases[index].case_id) == (described, case_id)
    assert hashlib.sha1(",".join(c.case_id for c in cases).encode()).hexdigest()[:16] == digest


@pytest.mark.parametrize("flags, described, case_id", [
    (dict(attention="rpattention", tokens=4096, m=64, knobs=["em_iters=2"]),
     "rpattention 64x64 m=64 b1 float32 fwd cpu", "868134644105"),
    (dict(attention="dense", grid="32x64", dtype="bfloat16", mode="fwdbwd"),
     "dense 32x64 b1 bfloat16 fwdbwd cpu", "a8e40edd1b2c"),
    (dict(attention=None, backbone="swin-t", resolution=512), "swin-t/own 512px b1 float32 fwd cpu", "4880e6ea226b"),
    (dict(attention="agent", backbone="pvt-t", layout="AABB", m=49, resolution=224),
     "pvt-t/agent 224px m=49 b1 float32 fwd cpu", "75a9b8ae9520"),
])
def test_cli_case_ids_never_change(flags, described, case_id):
    case = case_from_flags(CaseFlags(device="cpu", **flags))
    assert (case.describe(), case.case_id) == (described, case_id)
