"""Mechanisms from outside the repo: a reference to a module or a file, the decorator, installed entry points; the
FLOP note; one line for a plugin that cannot be imported or built, while the others still run."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import attentions
import rpbench
from attentions import _plugins, _registry
from rpbench.measure.runner import run_case
from rpbench.core.case import CaseFlags, Timing
from rpbench.suites import case_from_flags

from cli_helpers import invoke, tiny_suite

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "rpbench-example-plugin"
FILE_PLUGIN = f"{REPO / 'examples' / 'my_attention.py'}:ReluAttention"
QUICK = Timing(warmup_ms=1, repeat=3, rounds=1)


@pytest.fixture(autouse=True)
def registry_as_it_was():
    """Plugins registered by a test are gone after it (the registry is one per process), with the modules that
    registered them, and entry points are read again at the next lookup."""
    before, modules = dict(_registry._REGISTRY), set(sys.modules)
    yield
    _registry._REGISTRY.clear()
    _registry._REGISTRY.update(before)
    for name in set(sys.modules) - modules:
        if name.startswith(("mine_", "rpbench_plugin_", "rpbench_example_plugin")):
            del sys.modules[name]
    _plugins.reset_entry_points()


def layer_case(name: str, tokens: int = 64, knobs: tuple[str, ...] = ()):
    return case_from_flags(CaseFlags(attention=name, tokens=tokens, dim=32, heads=4, device="cpu",
                                     knobs=list(knobs)))


def write_module(tmp_path: Path, monkeypatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


# ---------------------------------------------------------------- the three ways in

def test_a_file_reference_builds_a_plain_factory_and_counts_its_flops():
    spec = attentions.spec(FILE_PLUGIN)
    assert spec.open_knobs and spec.flops_fn is None and spec.origin.endswith("my_attention.py")
    assert FILE_PLUGIN in attentions.available() and FILE_PLUGIN not in attentions.builtin()
    measured = run_case(layer_case(FILE_PLUGIN, knobs=("eps=0.001",)), QUICK)
    assert measured.status == "ok", measured.note
    assert measured.flops_analytic is None and measured.flops_counted > 0
    assert f"no FLOP formula for {FILE_PLUGIN}" in measured.note
    assert measured.case.knob_dict == {"eps": 0.001}


def test_work_the_flop_counter_cannot_see_is_an_unknown_count_not_zero(tmp_path, monkeypatch):
    """A mechanism whose work FlopCounterMode does not count (no matmul, no convolution it knows) and that has no
    formula: no FLOP figure and no TFLOP/s, with a note, never 0 FLOPs at some rate."""
    write_module(tmp_path, monkeypatch, "mine_uncounted", """
        from torch import nn

        class Scale(nn.Module):
            def __init__(self, dim, num_heads, grid):
                super().__init__()
            def forward(self, x):
                return x * 0.5 + 1.0
    """)
    measured = run_case(layer_case("mine_uncounted:Scale"), QUICK)
    assert measured.status == "ok", measured.note
    assert measured.flops_counted is None and measured.tflops_s is None
    assert "FlopCounterMode counted no FLOPs" in measured.note and "no FLOP figure, no TFLOP/s" in measured.note


def test_a_decorated_module_keeps_its_knobs_check_and_origin(tmp_path, monkeypatch):
    write_module(tmp_path, monkeypatch, "mine_decorated", '''
        import attentions
        from attentions import Knob
        from torch import nn

        def flops(batch, grid, dim, num_heads, scale):
            return 2 * batch * grid[0] * grid[1] * dim * dim

        @attentions.register("mine-linear", knobs={"scale": Knob(1.0, "output scale", low=0.0)}, flops=flops,
                             check=lambda grid, dim, num_heads, scale: "no odd grids" if grid[0] % 2 else None)
        class Mine(nn.Module):
            """One linear layer, scaled."""
            def __init__(self, dim, num_heads, grid, scale=1.0):
                super().__init__()
                self.fc, self.scale = nn.Linear(dim, dim, bias=False), scale
            def forward(self, x):
                return self.fc(x) * self.scale
    ''')
    spec = attentions.spec("mine_decorated:Mine")  # the reference finds the spec the decorator registered
    assert spec.name == "mine-linear" and spec.origin == "mine_decorated" and spec.summary == "One linear layer, scaled."
    assert attentions.spec("mine-linear") is spec and "mine-linear" in attentions.available()
    with pytest.raises(attentions.UnsupportedConfig, match="knob scale must be in"):
        spec.resolve({"scale": -1.0})
    assert spec.check((3, 4), 32, 4) == "no odd grids"
    measured = run_case(layer_case("mine-linear"), QUICK)
    assert measured.status == "ok" and measured.flops_analytic == measured.flops_counted
    assert "FLOP" not in (measured.note or "")


def test_a_formula_that_disagrees_with_the_count_gets_a_note_on_every_row(tmp_path, monkeypatch):
    """The case that started this: a formula returning 0 while 44 M FLOPs were counted was accepted silently."""
    write_module(tmp_path, monkeypatch, "mine_zero", '''
        import attentions
        from torch import nn

        @attentions.register("mine-zero", flops=lambda batch, grid, dim, num_heads: 0)
        class Zero(nn.Module):
            def __init__(self, dim, num_heads, grid):
                super().__init__()
                self.fc = nn.Linear(dim, dim)
            def forward(self, x):
                return self.fc(x)
    ''')
    attentions.spec("mine_zero:Zero")
    suite = tiny_suite(tmp_path, names=("mine-zero",), tokens="16, 64")
    out = tmp_path / "run"
    import rpbench.suites as suites

    loaded = suites.load_suite(suite)
    from rpbench.measure.sweep import run_sweep
    from rpbench.results.resume import RunRecord

    run_sweep(loaded, loaded.cases, out, RunRecord(suite=loaded.name, suite_text=loaded.text,
                                                   timing=loaded.timing.to_json()))
    frame = rpbench.load(out)
    assert len(frame) == 2 and (frame["status"] == "ok").all()
    assert frame["notes"].str.contains("FLOP formula gives 0 but").all()
    assert frame["notes"].str.contains("(100 % apart): check the formula", regex=False).all()


# ---------------------------------------------------------------- failures: one line, the others still run

@pytest.mark.parametrize("reference,words", [
    ("no_such_module_xyz:Thing", "cannot import no_such_module_xyz: ModuleNotFoundError"),
    ("./missing_dir/x.py:Thing", "no file ./missing_dir/x.py"),
    ("json:nothing_here", "json has no nothing_here"),
    ("json:__name__", "str object is not a factory"),
    ("not a module:Thing", "neither a module path"),
])
def test_a_plugin_that_cannot_be_loaded_is_one_line_naming_it(reference, words, tmp_path):
    result = invoke("run", "--attention", reference, "--tokens", "64", "--device", "cpu")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: plugin {reference}") and words in lines[0], lines


@pytest.mark.parametrize("module,body,words", [
    ("mine_raises", "raise RuntimeError('no such kernel here')", "RuntimeError: no such kernel here"),
    ("mine_no_module", "return 'not a module'", "the factory returned str, not a torch.nn.Module"),
    ("mine_wrong_shape", "return nn.Linear(dim, dim + 1)", "must return (B, N, C)"),
])
def test_a_plugin_that_fails_to_build_or_run_is_an_error_row(tmp_path, monkeypatch, module, body, words):
    write_module(tmp_path, monkeypatch, module, f'''
        from torch import nn

        def make(dim, num_heads, grid):
            {body}
    ''')
    measured = run_case(layer_case(f"{module}:make"), QUICK)
    assert measured.status == "error" and words in measured.note


@pytest.mark.slow
def test_a_suite_runs_its_other_mechanisms_when_a_plugin_cannot_be_loaded(tmp_path):
    suite = tiny_suite(tmp_path, names=("dense", "no_such_module_xyz:Thing", FILE_PLUGIN), tokens="64")
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "rpbench", "sweep", str(suite), "--out", str(out), "--no-report"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "no_such_module_xyz" in line]
    assert warnings == ["warning: plugin no_such_module_xyz:Thing: cannot import no_such_module_xyz: "
                        "ModuleNotFoundError: No module named 'no_such_module_xyz'; its cases are left out"]
    frame = rpbench.load(out)
    assert sorted(frame["attention"]) == sorted(["dense", FILE_PLUGIN]) and (frame["status"] == "ok").all()


# ---------------------------------------------------------------- installed plugins (entry points)

def fake_install(site: Path, name: str, entry_points: str, source: Path | None = None) -> None:
    """What pip leaves behind for a package: a dist-info with METADATA and entry_points.txt (and the code on
    the path): importlib.metadata finds it exactly as it finds an installed one."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{attentions.ENTRY_POINT_GROUP}]\n{entry_points}\n")


def rpbench_with(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE / "src")]), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "rpbench", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=site)


@pytest.mark.slow
def test_an_installed_plugin_is_listed_and_swept_by_name(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "rpbench-example-plugin", "pooled-kv = rpbench_example_plugin")
    listed = rpbench_with(site, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "│ pooled-kv" in line)
    assert "│ pooled-kv (plugin: rpbench_example_plugin)" in lines[at] and "O(N²·C/r²) (quadratic)" in lines[at]
    swept = rpbench_with(site, "sweep", str(EXAMPLE / "suite.toml"), "--out", str(tmp_path / "run"), "--device",
                         "cpu", "--no-report")
    assert swept.returncode == 0, swept.stderr
    frame = rpbench.load(tmp_path / "run")
    assert set(frame["label"]) == {"dense", "pooled-kv", "pooled-kv (r=4)"} and (frame["status"] == "ok").all()
    pooled = frame[frame["attention"] == "pooled-kv"]
    assert (pooled["flops_analytic"] == pooled["flops_counted"]).all()  # the example's formula is exact
    assert not pooled["notes"].fillna("").str.contains("FLOP").any()


@pytest.mark.slow
def test_an_installed_plugin_that_fails_to_load_is_one_line_and_the_rest_is_listed(tmp_path):
    site = tmp_path / "site"
    fake_install(site, "broken-plugin", "broken = broken_plugin_module_xyz")
    listed = rpbench_with(site, "list")
    assert listed.returncode == 0 and "rpattention" in listed.stdout
    assert listed.stderr.strip().splitlines() == [
        "warning: plugin broken (broken_plugin_module_xyz) failed to load: ModuleNotFoundError: No module named "
        "'broken_plugin_module_xyz'"]
    ran = rpbench_with(site, "run", "--attention", "broken", "--tokens", "64", "--device", "cpu")
    assert ran.returncode == 2 and ran.stderr.strip().startswith("error: plugin broken (broken_plugin_module_xyz) "
                                                                  "failed to load")


def test_entry_points_are_read_once_and_again_after_a_reset(monkeypatch):
    calls = []
    monkeypatch.setattr(_plugins.metadata, "entry_points", lambda group: calls.append(group) or [])
    _plugins.reset_entry_points()
    attentions.available()
    attentions.available()
    assert calls == [attentions.ENTRY_POINT_GROUP]
    _plugins.reset_entry_points()
    attentions.spec("dense")
    assert len(calls) == 2


def test_the_example_plugin_installed_for_real_is_in_the_registry():
    """CI installs examples/rpbench-example-plugin with pip; then its mechanism is there by name in-process."""
    from importlib import metadata

    try:
        metadata.distribution("rpbench-example-plugin")
    except metadata.PackageNotFoundError:
        pytest.skip("the example plugin is not installed here (CI installs it; the test above fakes the install)")
    assert "pooled-kv" in attentions.available()
    assert attentions.spec("pooled-kv").origin == "rpbench_example_plugin"


def test_profile_takes_a_reference_too(tmp_path):
    result = invoke("profile", "--attention", FILE_PLUGIN, "--tokens", "64", "--dim", "32", "--heads", "4",
                    "--device", "cpu", "--wait", "0", "--warmup", "1", "--active", "1", "--out", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p" / "trace.json.gz").is_file()
