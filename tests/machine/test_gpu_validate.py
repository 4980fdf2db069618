"""scripts/gpu-validate (the one call of a GPU loan) and scripts/gpu-wheels, checked without a GPU: the dry run's
plan and budget, the sweeps' shape (rows final one case at a time, cool-down budgeted, sizes dropped before
stages), every command under a timeout and on the installed copy, and the carried wheels."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rpbench.suites import load_suite

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import gpu_validate_plan as plan  # noqa: E402

SLOW_GPU = {"bf16_tflops": 20.0, "copy_gbps": 200.0}  # a small card: the 65536 dense case takes seconds a call


@pytest.fixture(scope="module")
def dry_run():
    done = subprocess.run([sys.executable, str(SCRIPTS / "gpu-validate"), "--dry-run"], capture_output=True,
                          text=True, timeout=300)
    return done


@pytest.mark.slow
def test_the_dry_run_prints_the_budget_and_every_command(dry_run):
    assert dry_run.returncode == 0, dry_run.stderr
    text = dry_run.stdout
    total = re.search(r"^total\s+(\d+)\s+(\d+)", text, re.M)
    assert total and int(total.group(2)) <= int(total.group(1)) == plan.TOTAL_S
    for stage in ("setup", "checks", "product", "product-extra", "backbones"):
        assert re.search(rf"^{stage}\s+\d+\s+\d+", text, re.M), stage
    commands = [line for line in text.splitlines() if line.startswith("$ ")]
    assert len(commands) >= 9
    repo = str(SCRIPTS.parent)
    for line in commands:  # each under a timeout, on the installed copy, never from the checkout
        assert re.search(r"timeout \d+ ", line) and "PYTHONPATH=/tmp/rpbench-site" in line, line
        assert not line.startswith(f"$ (cd {repo}"), line
    assert any("doctor --json --device cuda" in line for line in commands)
    pytest_runs = [line for line in commands if "-m pytest" in line]
    assert ["'cuda and alone'" in line for line in pytest_runs] == [False, True]
    files = re.search(r"OUT files \(at most 8, no folders\): (.*)", text).group(1).split(", ")
    assert len(files) <= 8 and not any("/" in name for name in files)


def test_the_sweeps_make_rows_final_one_case_at_a_time_with_the_cool_down_budgeted():
    for text in (plan.product_suite("p", [1024, 2048]), plan.backbone_suite([224])):
        suite = load_suite(_written(text), device_override="cpu")
        assert suite.timing.rounds == 1 and suite.timing.retries == 0 and suite.timing.cooldown_s > 0
    assert plan.case_seconds(1.0, plan.PRODUCT_MEASURE) > plan.case_seconds(1.0, {**plan.PRODUCT_MEASURE,
                                                                                  "cooldown_s": 0})


def _written(text: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "suite.toml"
    path.write_text(text)
    return path


def test_the_product_sweep_answers_the_question_within_its_cap():
    sweeps = plan.plan_sweeps(plan.NOMINAL)
    product = sweeps["product"]
    assert product.sizes == [1024, 4096, 16384, 65536] and product.seconds <= plan.STAGE_CAPS["product"]
    assert {case.label for case in product.cases} == {"dense", "rpattention", "agent", "linear", "focused", "window"}
    suite = load_suite(_written(plan.product_suite("p", product.sizes)), device_override="cpu")
    assert sorted({c.height * c.width for c in suite.cases}) == product.sizes
    assert {c.dtype for c in suite.cases} == {"bfloat16"} and {c.mode for c in suite.cases} == {"fwd"}
    assert dict(next(c for c in suite.cases if c.attention == "dense").knobs)["backend"] == "flash"
    assert sweeps["product"].seconds + sweeps["product-extra"].seconds <= plan.STAGE_CAPS["product"]
    assert sweeps["backbones"].sizes == [224, 1024] and sweeps["backbones"].seconds <= plan.STAGE_CAPS["backbones"]


def test_over_budget_drops_sizes_never_stages():
    sweeps = plan.plan_sweeps(SLOW_GPU, caps={"product": 40.0, "backbones": 20.0})
    product = sweeps["product"]
    assert product.dropped and 1024 in product.sizes and 65536 in product.sizes  # the ends of the curve first
    assert sweeps["product-extra"].cases == [] and sweeps["product-extra"].dropped == list(plan.EXTRA_SIZES)
    assert sweeps["backbones"].sizes == [224] and sweeps["backbones"].dropped == [1024]
    assert set(sweeps) == {"product", "product-extra", "backbones"}


@pytest.mark.slow
def test_the_carried_wheels_give_plotly_what_it_needs(tmp_path):
    """plotly >= 6 needs narwhals; a --no-deps plotly alone left report.html without figures on the GPU image.
    The script checks the carried set in an empty --target itself; skipped where no package index answers."""
    done = subprocess.run(["bash", str(SCRIPTS / "gpu-wheels"), str(tmp_path / "whl")], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})
    if done.returncode and ("No matching distribution" in done.stderr or "connection" in done.stderr.lower()):
        pytest.skip(f"no package index here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-2000:]
    names = {path.name.split("-")[0] for path in (tmp_path / "whl").glob("*.whl")}
    assert names == {"rpbench", "plotly", "narwhals"}
    assert "carried set checked in an empty --target" in done.stdout
