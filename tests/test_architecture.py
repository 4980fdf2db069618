"""The layout is the data flow: every import of rpbench and attentions, read with ast, must run one way.

suite file -> cases (suites) -> runner (measure) -> Measurement -> store (results) -> analysis -> views, with core
under everything and cli on top. The checker reads source files (nothing is imported), so it also runs on a copy
of the tree with a planted violation, which it must catch.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rpbench", "attentions")

# What each room may import besides itself. `attentions` counts as a room; rpbench's root package and cli may
# import anything. machine may use measure's timers, probes and torch_compat only (doctor times its ceilings with the
# sweep's own timer; every torch-version guard is in torch_compat); those modules import nothing from machine, which
# the cycle check enforces.
ALLOWED = {
    "core": set(),
    "results": {"core"},
    "analysis": {"core", "results"},
    "views": {"core", "results", "analysis"},
    "backbones": {"core", "attentions"},
    "suites": {"core", "backbones", "attentions"},
    "machine": {"core", "attentions", "measure.timing", "measure.probes", "measure.torch_compat"},
    "measure": {"core", "backbones", "suites", "machine", "results", "attentions"},
    "api": {"core", "suites", "measure", "results"},  # Python's way in, beside cli: suite -> sweep -> the table
}
TORCH_FREE = ("core", "results", "analysis", "views")
MAX_LINES = 300


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of both packages under `root`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports anywhere in its body (function-local imports too), resolved to dotted names.

    `from pkg import x` counts as importing `pkg.x` when that is one of our modules, else `pkg`.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                targets.add(candidate if candidate in known else source)
    return targets


def graph(root: Path) -> dict[str, set[str]]:
    found = modules(root)
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in edges:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def room(module: str) -> str | None:
    """`rpbench.views.html` -> `views`; the attentions package is one room; the root package and cli none."""
    parts = module.split(".")
    if parts[0] == "attentions":
        return "attentions"
    if parts[0] != "rpbench" or len(parts) < 2 or parts[1] in ("cli", "__main__"):
        return None
    return parts[1]


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that break the one-way rule, torch where it must not be, rpbench inside attentions."""
    problems = []
    for module, targets in sorted(edges.items()):
        mine = room(module)
        for target in sorted(targets):
            top = target.split(".")[0]
            if mine == "attentions" and top == "rpbench":
                problems.append(f"{module} imports {target}: attentions must not know the harness")
            if mine in TORCH_FREE and top == "torch":
                problems.append(f"{module} imports {target}: {mine}/ must not import torch")
            theirs = room(target) if top in PACKAGES else None
            if mine in ALLOWED and theirs not in (None, mine):
                sub = ".".join(target.split(".")[1:3])
                if theirs not in ALLOWED[mine] and sub not in ALLOWED[mine]:
                    problems.append(f"{module} imports {target}: {mine}/ may import only "
                                    f"{', '.join(sorted(ALLOWED[mine])) or 'nothing else of rpbench'}")
            if mine in ALLOWED and target == "rpbench":
                problems.append(f"{module} imports the rpbench root package; import the room instead")
    return problems


def test_imports_run_one_way():
    edges = graph(ROOT)
    assert len(edges) > 60  # the walk found the packages
    assert cycles(edges) == []
    assert violations(edges) == []


def _planted(tmp_path: Path, relative: str, line: str) -> dict[str, set[str]]:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / relative
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return graph(tmp_path)


def test_a_planted_cycle_is_caught(tmp_path):
    edges = _planted(tmp_path, "rpbench/core/case.py", "from ..results import store")
    assert any({"rpbench.core.case", "rpbench.results.store"} <= set(c) for c in cycles(edges))


def test_a_function_local_cycle_is_caught(tmp_path):
    edges = _planted(tmp_path, "rpbench/analysis/metrics.py", "def late():\n    from ..views import format")
    assert any({"rpbench.analysis.metrics", "rpbench.views.format"} <= set(c) for c in cycles(edges))


@pytest.mark.parametrize("relative, line, words", [
    ("rpbench/views/format.py", "import torch", "views/ must not import torch"),
    ("rpbench/core/case.py", "from torch import nn", "core/ must not import torch"),
    ("rpbench/views/html.py", "from ..measure import runner", "views/ may import only"),
    ("rpbench/analysis/table.py", "import attentions", "analysis/ may import only"),
    ("attentions/dense.py", "import rpbench", "attentions must not know the harness"),
    ("rpbench/suites/layer.py", "from ..measure.runner import run_case", "suites/ may import only"),
])
def test_a_planted_violation_is_caught(tmp_path, relative, line, words):
    problems = violations(_planted(tmp_path, relative, line))
    assert any(words in problem for problem in problems), problems


def test_no_module_is_long_without_saying_why():
    """A module over ~300 lines must say in its docstring why it is one module."""
    for name, path in modules(ROOT).items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "on purpose" in docstring, f"{name}: {len(text.splitlines())} lines and no reason in its docstring"


def test_every_room_is_a_folder_named_for_its_stage():
    rooms = {path.name for path in (ROOT / "rpbench").iterdir() if (path / "__init__.py").is_file()}
    assert rooms == {*ALLOWED, "cli"}
