"""Property-style: junk values of every type, fed to every suite key and every CLI option, each give exit 2, one
`error:` line on stderr, no traceback, within a bounded time, and leave an existing run dir byte-identical.

Every junk value here is invalid for the key or option it is given to (values a rule accepts are left out per key);
everything else about the invocation is valid, so the junk is what is refused.
"""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rpbench.cli import app

from cli_helpers import invoke, tiny_suite

pytestmark = pytest.mark.slow  # the fast lane leaves these out: hundreds of generated suites, each through the CLI

TIME_LIMIT_S = 20

BASE_SUITE = """
name = "junk"
description = "a valid suite; one key at a time is replaced by junk"
scope = "layer"
[axes]
tokens = [16]
m = [4]
batch = [1]
dim = [32]
heads = [4]
dtype = ["float32"]
mode = ["fwd"]
device = "cpu"
[measure]
warmup_ms = 1
repeat_ms = 1
min_samples = 2
max_samples = 10
cooldown_s = 0
flush_l2 = true
threads = 1
energy_s = 0
rounds = 1
[[attention]]
name = "rpattention"
label = "rp"
tau = 1.0
em_iters = 1
route_over = "reps"
normalize = true
"""

BACKBONE_SUITE = """
scope = "backbone"
[axes]
backbone = ["deit-t"]
resolution = [32]
device = "cpu"
[[layout]]
label = "agent"
attention = "agent"
pattern = "A"
m = 4
"""

# TOML literals of every type: numbers out of every range, non-numbers, strings with markup, control characters and
# no content, arrays, tables, dates, and a very long string.
JUNK = {
    "nan": "nan", "inf": "inf", "-inf": "-inf", "neg": "-1", "zero": "0", "frac": "1.5", "huge_float": "1e300",
    "huge_int": "9223372036854775807", "neg_huge": "-9223372036854775808", "bool": "true", "word": '"abc"',
    "empty": '""', "markup": '"[/]"', "nul": '"\\u0000"', "newline": '"x\\ny"', "escape": '"\\u001b[31m"',
    "empty_list": "[]", "nested_list": "[[]]", "mixed_list": '[1, "a"]', "table": "{ a = 1 }",
    "date": "1979-05-27T07:32:00Z", "long": '"' + "x" * 5000 + '"', "float_list": "[1.5]",
}

# Junk a rule accepts for that key (so it is not junk there).
VALID_FOR = {
    "name": {"word", "markup"},
    "description": {"word", "empty", "markup"},
    "measure.warmup_ms": {"zero", "frac"},
    "measure.repeat_ms": {"zero", "frac"},
    "measure.cooldown_s": {"zero", "frac"},
    "measure.energy_s": {"zero", "frac"},
    "measure.flush_l2": {"bool"},
    "measure.retries": {"zero"},
    "attention.label": {"word", "markup"},
    "attention.tau": {"frac"},
    "attention.normalize": {"bool"},
    "attention.dwc": {"zero"},
    "axes.tokens": set(),
    "layout.label": {"word", "markup"},
}

LAYER_KEYS = [
    "name", "description", "scope", "axes.tokens", "axes.m", "axes.batch", "axes.dim", "axes.heads", "axes.dtype",
    "axes.mode", "axes.device", "measure.warmup_ms", "measure.repeat_ms", "measure.repeat", "measure.min_samples",
    "measure.max_samples", "measure.cooldown_s", "measure.flush_l2", "measure.threads", "measure.energy_s",
    "measure.rounds", "measure.retries", "measure.timer", "axes.compile", "axes.precision", "axes.channels_last",
    "attention.name", "attention.label", "attention.tau", "attention.em_iters", "attention.route_over",
    "attention.normalize", "attention.dwc", "axes.resolution", "axes.patch", "unknown_key",
]
BACKBONE_KEYS = ["axes.backbone", "axes.resolution", "layout.label", "layout.attention", "layout.pattern",
                 "layout.m", "axes.batch"]


def _set(text: str, key: str, literal: str) -> str:
    """The suite text with `key` (section.name, or a top-level name) set to `literal`, added when absent."""
    section, _, name = key.rpartition(".")
    header = {"": None, "axes": "[axes]", "measure": "[measure]", "attention": "[[attention]]",
              "layout": "[[layout]]"}[section]
    lines = text.splitlines()
    start = 0 if header is None else lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    if header is None:
        end = next(i for i, line in enumerate(lines) if line.startswith("["))
    for index in range(start, end):
        if lines[index].split("=")[0].strip() == name:
            lines[index] = f"{name} = {literal}"
            break
    else:
        lines.insert(end, f"{name} = {literal}")
    if key in ("axes.resolution", "axes.patch") and "tokens = [16]" in lines:  # resolution replaces tokens
        lines.remove("tokens = [16]")
        if key == "axes.resolution":
            lines.insert(lines.index("[axes]") + 1, "patch = 4")
        else:
            lines.insert(lines.index("[axes]") + 1, "resolution = [16]")
    return "\n".join(lines) + "\n"


def _cases(keys: list[str]) -> list[tuple[str, str]]:
    return [(key, junk) for key in keys for junk in JUNK if junk not in VALID_FOR.get(key, set())]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} | {
        str(p.relative_to(root)) + "/": b"" for p in root.rglob("*") if p.is_dir()}


class _Hang(Exception):
    pass


def _bounded(args: list[str]):
    """Invoke in-process; a call running past TIME_LIMIT_S is a hang and fails the test."""
    def alarm(signum, frame):
        raise _Hang(f"no answer within {TIME_LIMIT_S} s: rpbench {' '.join(args)}")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(TIME_LIMIT_S)
    began = time.perf_counter()
    try:
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if isinstance(result.exception, _Hang):
        pytest.fail(str(result.exception))
    return result, time.perf_counter() - began


def _assert_refused(result, args: list[str]) -> None:
    shown = f"rpbench {' '.join(a[:80] for a in args)}\nstdout: {result.stdout[-800:]}\nstderr: {result.stderr[-800:]}"
    assert result.exit_code == 2, shown
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert "Traceback" not in result.output, shown
    assert result.exception is None or isinstance(result.exception, SystemExit), shown


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A results root holding one finished run dir (`old`) that no junk may change."""
    root = tmp_path_factory.mktemp("junk")
    suite = tiny_suite(root, names=("dense",), tokens="16")
    assert invoke("sweep", str(suite), "--out", str(root / "old")).exit_code == 0
    (root / "afile").write_text("not a dir\n")
    return root


@pytest.mark.parametrize(("key", "junk"), _cases(LAYER_KEYS) + [(f"backbone:{k}", j) for k, j in
                                                                _cases(BACKBONE_KEYS)])
def test_junk_in_any_suite_key_is_refused_with_one_line(root, tmp_path, key, junk):
    base = BASE_SUITE
    if key.startswith("backbone:"):
        key, base = key.split(":", 1)[1], BACKBONE_SUITE
    path = tmp_path / "junk.toml"
    path.write_text(_set(base, key, JUNK[junk]), encoding="utf-8")
    before = _snapshot(root)
    args = ["sweep", str(path), "--out", str(root / "new"), "--no-report"]
    result, _ = _bounded(args)
    _assert_refused(result, args)
    assert _snapshot(root) == before


def test_the_base_suites_are_valid(tmp_path):
    """The junk is what is refused: the suites it is put into sweep fine as they are."""
    for name, text in (("base.toml", BASE_SUITE),):
        path = tmp_path / name
        path.write_text(text)
        result = invoke("sweep", str(path), "--out", str(tmp_path / "run"), "--no-report")
        assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- every CLI option

INT_JUNK = ["abc", "1.5", "", "nan", "1e3", "-1", "99999999999999999999999"]
FLOAT_JUNK = ["abc", "", "nan", "inf", "-inf", "-1", "1e309"]
CHOICE_JUNK = ["abc", "", "[/]", "FLOAT32", "\x1b[31m"]
# Options by kind (declared here, not read from Typer's types, which differ between Typer versions).
CHOICES = {"dtype", "mode", "device", "metric", "format_", "table", "compile_", "precision", "timer", "launcher", "by",
           "shift"}
INTS = {"tokens", "resolution", "patch", "dim", "heads", "m", "batch", "batch_limit", "wait", "warmup", "active", "workers",
        "rounds", "retries", "time_min", "tasks", "max_running", "seed", "width"}
FLOATS = {"warmup_ms", "repeat_ms", "threshold", "case_timeout"}
STRING_JUNK = {
    "attention": ["nosuch", "", "[/]", "\x1b[31m", "x" * 5000],
    "grid": ["abc", "0x4", "4x", "99999999x1", "1x1x1", "", "nan", "-4x-4", "٣x٣"],
    "knobs": ["abc", "=1", "nosuch=1", "tau=nan", "tau=abc", "tau=1e999", "em_iters=10**9", "m=0", "tau=" + "(" * 500],
    "backbone": ["nosuch", "", "[/]"],
    "layout": ["Z", "", "AB"],
    "filter_": ["nosuch", "", ",", "tokens=999999", "bogus=1", "[/]"],
    "baseline": ["nosuch", "", "[/]"],
    "labels": ["", "=x", "x=", "nosuch=NAME", "[/]"],
    "commit_of": ["", "nosuch", "[/]"],
    "gpus": ["nosuch", "", "0,0", "99", "[/]", "-1"],
    "partition": ["", "a b", "[/]", "x" * 500],
    "account": ["", "a;b", "\x1b[31m"],
    "sbatch": ["", "=x", "array=1", "a\nb=1", "x" * 500],
    "points": ["abc", "", "1", "1,2,3", "32,0", "-1,0", "0,32", "1,1;", "nan,1", "1.5,2", "[/]", "9" * 30 + ",1"],
}


def _commands(root: Path):
    """(command, base args that succeed, {option name: (flag, junk values)}) for every command with options."""
    command = typer.main.get_command(app)
    run_base = ["--attention", "rpattention", "--m", "4", "--tokens", "16", "--dim", "32", "--heads", "4", "--device",
                "cpu", "--warmup-ms", "0", "--repeat-ms", "1"]
    bases = {
        "sweep": [str(root / "suite.toml"), "--out", str(root / "new"), "--no-report"],
        "run": run_base,
        "profile": run_base[:-4] + ["--out", str(root / "prof")],
        "report": [str(root / "old")],
        "export": [str(root / "old"), "--out", str(root / "export.csv")],
        "compare": [str(root / "old"), str(root / "old")],
        "history": [str(root / "old")],
        "doctor": ["--device", "cpu"],
        "env": [],
        "status": [str(root / "old")],
        "collect": [str(root / "old")],
        "maps": ["--attention", "rpattention", "--image", str(root / "img.png"), "--resolution", "32", "--patch", "8",
                 "--knob", "m=4", "--dim", "16", "--heads", "2", "--out", str(root / "maps")],
    }
    long = str(root / ("x" * 300))
    paths = {
        "suite": [str(root / "missing.toml"), str(root), str(root / "afile"), str(root / "binary.toml"), long],
        "out": [str(root / "afile"), str(root / "afile" / "below"), long],
        "resume": [str(root / "missing"), str(root / "afile"), str(root / "emptydir"), str(root / "garbage"), long],
        "run_dir": [str(root / "missing"), str(root / "afile"), str(root / "emptydir"), str(root / "garbage"), long,
                    str(root / "nomatch-*")],
        "runs": [str(root / "missing"), str(root / "garbage"), str(root / "afile"), str(root / "emptydir"),
                 str(root / "nomatch-*")],
        "html": [str(root), str(root / "afile" / "below.html"), long],
        "save": [str(root), str(root / "afile" / "below.json")],
        "figures": [str(root / "afile"), str(root / "afile" / "below"), long],
        "image": [str(root / "missing.png"), str(root), str(root / "afile"), str(root / "binary.toml"), long],
        "checkpoint": [str(root / "missing.pt"), str(root), str(root / "afile"), str(root / "binary.toml"), long],
    }
    for name, base in bases.items():
        options = {}
        for param in command.commands[name].params:
            if param.name in ("help",):
                continue
            flag = param.opts[0] if param.opts and param.opts[0].startswith("-") else None
            if getattr(param, "is_flag", False):
                values = ["abc"]  # a flag takes no value: `--flag=abc`
            elif param.name in paths:
                values = paths[param.name]
                if name == "export" and param.name == "out":
                    values = [str(root), str(root / "afile" / "below.csv"), str(root / "nodir" / "x.csv")]
            elif param.name in STRING_JUNK:
                values = STRING_JUNK[param.name]
            elif param.name in CHOICES:
                values = CHOICE_JUNK
            elif param.name in INTS:
                values = INT_JUNK
            elif param.name in FLOATS:
                values = FLOAT_JUNK
            else:
                raise AssertionError(f"no junk for {name} {param.name}: add it to this test")
            options[param.name] = (flag, getattr(param, "is_flag", False), values)
        yield name, base, options


def _with(base: list[str], option: str, flag: str | None, is_flag: bool, value: str, position: int) -> list[str]:
    """The base args with one option (or the position-th positional argument) set to `value`."""
    args = list(base)
    if option == "resume":  # --resume replaces --out
        index = args.index("--out")
        del args[index:index + 2]
    if flag is None:
        args[position] = value
    elif is_flag:
        args.append(f"{flag}={value}")
    elif flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


def _option_cases():
    cases = []
    for name, _, options in _commands(Path("/ROOT")):
        position = 0
        for option, (flag, _, values) in options.items():
            cases += [(name, option, index, position) for index in range(len(values))]
            position += flag is None
    return cases


@pytest.fixture(scope="module")
def option_root(root: Path) -> Path:
    (root / "suite.toml").write_text(BASE_SUITE)
    (root / "binary.toml").write_bytes(b"\xff\xfe\x00junk\x80")
    (root / "emptydir").mkdir(exist_ok=True)
    (root / "garbage").mkdir(exist_ok=True)
    (root / "garbage" / "results.csv").write_text("case_id,status\n\x00\x01,,,,\n")
    (root / "garbage" / "suite.toml").write_text(BASE_SUITE)
    from PIL import Image

    Image.new("RGB", (40, 32), (200, 30, 30)).save(root / "img.png")  # `maps`' image
    return root


@pytest.mark.parametrize(("command", "option", "index", "position"), _option_cases())
def test_junk_in_any_cli_option_is_refused_with_one_line(option_root, command, option, index, position):
    root = option_root
    name, base, options = next(c for c in _commands(root) if c[0] == command)
    flag, is_flag, values = options[option]
    args = [command, *_with(base, option, flag, is_flag, values[index], position)]
    before = _snapshot(root)
    result, _ = _bounded(args)
    _assert_refused(result, args)
    assert _snapshot(root) == before


def test_the_base_invocations_are_valid(option_root, tmp_path):
    """The junk is what is refused: each base invocation succeeds as it is (then its outputs are removed)."""
    for name, base, _ in _commands(option_root):
        if name in ("doctor", "profile", "sweep"):
            continue  # doctor takes seconds; profile and sweep are run by their own tests
        args = [a.replace(str(option_root / "export.csv"), str(tmp_path / "e.csv")) for a in base]
        result, _ = _bounded([name, *args])
        assert result.exit_code == 0, (name, result.output)
