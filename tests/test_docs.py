"""Every command in README.md and docs/*.md is checked against the real CLI, so none rots.

A fenced `bash` block is checked according to the directive on the line before it (an HTML comment, invisible
once rendered), `<!-- doc-test: MODE [slow][; FROM => TO]... -->`:

- `parse` (the default): every `rpbench` command is parsed by the real CLI (the command exists, every option
  exists, every choice is valid, every value has its type); `pip install` names extras the project has and paths
  that exist; `python -m pytest -m EXPR` names registered markers; `scripts/…` exist, are executable and pass
  `bash -n`. For what needs a GPU, a cluster or an input of yours.
- `run`: as `parse`, then every `rpbench` command is run for real, in order, in a scratch dir where each
  `results/NAME` a report, export or compare reads is a small run written by the real store; it must exit 0.
- `script`: the whole block runs in bash in a scratch dir (a tutorial that writes files and runs commands).

`FROM => TO` substitutions are applied to the block first (tiny sizes, `--device cpu`): they are written in the
directive, so the docs say what the test changed. `slow` marks blocks that measure (run with the slow lane).
`toml` blocks must parse (a whole suite must load); `python` blocks must compile.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from rpbench.cli import app

from fake_runs import DEFAULT_ENV, scaling_rows, write_run

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(?P<body>.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")
READS_A_RUN = ("report", "export", "compare", "history", "status", "collect")
FIRST_SCREEN = 60


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    text: str
    mode: str = "parse"
    slow: bool = False
    substitutions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def substituted(self) -> str:
        text = self.text
        for old, new in self.substitutions:
            assert old in text, f"{self.name}: the substitution {old!r} matches nothing"
            text = text.replace(old, new)
        return text


def _directive(block: Block, body: str) -> None:
    head, *subs = [part.strip() for part in body.split(";")]
    words = head.split()
    assert words and words[0] in ("parse", "run", "script") and set(words[1:]) <= {"slow"}, body
    block.mode, block.slow = words[0], "slow" in words[1:]
    for sub in subs:
        old, sep, new = sub.partition("=>")
        assert sep, f"a substitution is FROM => TO: {sub!r}"
        block.substitutions.append((old.strip(), new.strip()))


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file, with the directive on the line before it."""
    found, lines = [], path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        if not opened:
            index += 1
            continue
        indent = len(opened["indent"])
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        block = Block(path, index + 1, opened["lang"], "\n".join(line[indent:] for line in lines[index + 1:end]))
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        directive = DIRECTIVE.search(before)
        if directive:
            _directive(block, directive["body"])
        found.append(block)
        index = end + 1
    return found


def commands(text: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, heredoc bodies skipped, comments dropped, `&&`
    chains split."""
    found: list[list[str]] = []
    lines = iter(text.replace("\\\n", " ").splitlines())
    for line in lines:
        heredoc = re.search(r"<<'?(\w+)'?", line)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
            line = line[:heredoc.start()]
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            found.append(words[:cut])
            words = words[cut + 1:]
    return [command for command in found if command]


def rpbench_args(command: list[str]) -> list[str] | None:
    if command[0] == "rpbench":
        return command[1:]
    if command[0] in ("python", "python3") and command[1:3] == ["-m", "rpbench"]:
        return command[3:]
    return None


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def check_parses(args: list[str]) -> None:
    """The real CLI parses `args`: the command, its options, their choices and types (nothing runs)."""
    group = typer.main.get_command(app)
    if not args or args[0] in ("--help", "--version"):
        return
    assert args[0] in group.commands, f"no command {args[0]!r}"
    command = group.commands[args[0]]
    with command.make_context(args[0], list(args[1:])):
        pass


def check_other(command: list[str]) -> None:
    """What is ours in a command that is not rpbench: pip extras and paths, pytest markers, our scripts."""
    if command[:2] in (["pip", "install"], ["python", "-m"]) and "pip" in command[:4]:
        extras = set(_pyproject()["project"]["optional-dependencies"])
        for arg in command[command.index("install") + 1:]:
            named = re.fullmatch(r"(?:\.|rpbench)\[([\w,-]+)\]", arg)
            if named:
                assert set(named.group(1).split(",")) <= extras, arg
            elif arg.startswith("./"):
                assert (ROOT / arg).exists(), arg
    elif command[:3] in (["python", "-m", "pytest"], ["python3", "-m", "pytest"]):
        if "-m" in command[3:]:
            expression = command[command.index("-m", 3) + 1]
            registered = {m.split(":")[0] for m in _pyproject()["tool"]["pytest"]["ini_options"]["markers"]}
            assert set(expression.replace("(", " ").replace(")", " ").split()) - {"and", "or", "not"} <= registered
    elif command[0].startswith("scripts/"):
        script = ROOT / command[0]
        assert script.is_file() and os.access(script, os.X_OK), command[0]
        if script.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash"):
            subprocess.run(["bash", "-n", str(script)], check=True)


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


def _params(langs: tuple[str, ...]):
    return [pytest.param(b, id=b.name, marks=[pytest.mark.slow] if b.slow else [])
            for b in all_blocks() if b.lang in langs]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    """A small run written by the real store, as a sweep inside a git checkout records it (dates, commit)."""
    env = {**DEFAULT_ENV, "collected_at": "2026-12-01T10:00:00+00:00", "git_commit_time": "2026-11-30T09:00:00+00:00"}
    return write_run(tmp_path_factory.mktemp("docs") / "run", scaling_rows(), env)


def run_for_real(block: Block, cwd: Path, fake_run: Path) -> None:
    (cwd / "examples").symlink_to(ROOT / "examples")  # the docs' commands run from the repository root
    for command in commands(block.substituted()):
        args = rpbench_args(command)
        if args is None:
            continue
        out = None
        if ">" in args:  # a redirect of stdout into a file
            at = args.index(">")
            args, out = args[:at], args[at + 1]
        if args and args[0] in READS_A_RUN:
            for arg in args[1:]:
                if re.fullmatch(r"results/[\w.-]+", arg) and not (cwd / arg).exists():
                    shutil.copytree(fake_run, cwd / arg)
        previous = Path.cwd()
        os.chdir(cwd)
        try:
            result = CliRunner().invoke(app, args)
        finally:
            os.chdir(previous)
        assert result.exit_code == 0, f"{block.name}: rpbench {shlex.join(args)}\n{result.output[-2000:]}"
        if out is not None:
            (cwd / out).write_text(result.stdout)


@pytest.mark.parametrize("block", _params(("bash", "sh")))
def test_shell_blocks(block: Block, tmp_path, fake_run):
    text = block.substituted()
    for command in commands(text):
        args = rpbench_args(command)
        if args is not None:
            check_parses(args[:args.index(">")] if ">" in args else args)
        else:
            check_other(command)
    if block.mode == "run":
        run_for_real(block, tmp_path, fake_run)
    elif block.mode == "script":
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(["bash", "-e", "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{block.name}\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"


@pytest.mark.parametrize("block", _params(("toml",)))
def test_toml_blocks(block: Block, tmp_path):
    table = tomllib.loads(block.substituted())
    if "name" in table and ("attention" in table or "layout" in table):  # a whole suite: it must load
        from rpbench.suites import load_suite

        suite = tmp_path / "suite.toml"
        suite.write_text(block.substituted())
        assert load_suite(suite, device_override="cpu").cases


@pytest.mark.parametrize("block", _params(("python",)))
def test_python_blocks_compile(block: Block):
    compile(block.substituted(), block.name, "exec")


def test_the_first_screen_says_what_and_how():
    """A newcomer's first screen: what rpbench is, the set-up, the two main commands, the pictures, the links."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = "\n".join(text.splitlines()[:FIRST_SCREEN])
    for needed in ("pip install torch==2.13.0", "rpbench sweep", "python -m pytest -q", "rpbench report",
                   "docs/img/report-grid.svg", "docs/img/latency-vs-tokens.png", "docs/commands.md"):
        assert needed in first, needed


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_and_picture_resolves():
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            assert linked.exists(), f"{path.name}: {target}"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                assert anchor in {_slug(h) for h in headings}, f"{path.name}: {target}"


def test_every_command_is_documented_in_docs():
    """Each command of the CLI appears in docs/commands.md's table."""
    text = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    for name in typer.main.get_command(app).commands:
        assert f"`rpbench {name}" in text, name
