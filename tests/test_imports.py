"""The package's import structure: what ``import rnnkit`` loads, and no import cycles between files.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` anywhere in a file, function-level ones included, since a deferred import is
still a dependency. ``from a.b import c`` counts as an import of the module ``a.b.c`` when that
is a file, else of ``a.b``. Importing ``a.b.c`` first runs the packages ``a`` and ``a.b`` (their
``__init__``), so it also counts as an import of each package above the target that does not
already contain the importing module. Imports under ``if TYPE_CHECKING:`` never run and are skipped.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "rnnkit"

def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports, anywhere in its source."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for child in node.body for n in ast.walk(child)}
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in known else prefix for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # `import a.b.c` of a non-module attribute: its module
                name = name.rpartition(".")[0]
            if name.startswith(PACKAGE) and name != module:
                targets.add(name)
    return targets | _packages_run(targets, module)


def _packages_run(targets: set[str], module: str) -> set[str]:
    """The packages whose ``__init__`` an import of ``targets`` runs: every package above a target,
    except those that contain ``module`` (they are already running when it imports)."""
    ancestors = {".".join(t.split(".")[:k]) for t in targets for k in range(1, t.count(".") + 1)}
    return {a for a in ancestors if not (module == a or module.startswith(a + "."))}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(ast.parse(path.read_text(encoding="utf-8")), name, path.name == "__init__.py", known)
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_cycle_finder_finds_a_cycle_and_no_false_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_deferred_relative_and_submodule_imports(tmp_path: Path) -> None:
    source = ("import rnnkit.cells.base\nfrom . import gru\nfrom .lstm import LSTMCell\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rnnkit.training import Trainer\n"
              "def later():\n    from rnnkit.checkpoint import save\n")
    known = {"rnnkit", "rnnkit.cells", "rnnkit.cells.base", "rnnkit.cells.gru", "rnnkit.cells.lstm",
             "rnnkit.checkpoint", "rnnkit.training"}
    assert _imports(ast.parse(source), "rnnkit.cells.elman", False, known) == {
        "rnnkit.cells.base", "rnnkit.cells.gru", "rnnkit.cells.lstm", "rnnkit.checkpoint"}
    # an import of a submodule runs its packages' __init__ first (not those the importer is in)
    known |= {"rnnkit.generation", "rnnkit.generation.decoder", "rnnkit.models", "rnnkit.models.lm"}
    assert _imports(ast.parse("from rnnkit.generation.decoder import Generator\n"), "rnnkit.models.lm", False,
                    known) == {"rnnkit.generation.decoder", "rnnkit.generation"}


def test_the_package_has_no_import_cycle() -> None:
    """Every import counts, deferred ones included; no edge is excused."""
    assert [sorted(c) for c in cycles(import_graph())] == []


def _outside(graph: dict[str, set[str]], package: str, allowed: set[str]) -> dict[str, list[str]]:
    """The imports of ``package``'s modules that fall outside ``package`` and ``allowed`` packages."""
    def within(name: str, roots: set[str]) -> bool:
        return any(name == root or name.startswith(root + ".") for root in roots)
    return {m: sorted(t for t in ts if not within(t, allowed | {package}))
            for m, ts in graph.items() if within(m, {package}) and not all(within(t, allowed | {package}) for t in ts)}


def test_steps_are_pure_math_and_the_engine_imports_only_the_steps() -> None:
    """Issue 9 item 6: the cells' math (rnnkit.steps) imports no engine; the engine imports the
    steps and no cell you call, layer or model; the cells you call (rnnkit.cells) sit below both."""
    graph = import_graph()
    assert _outside(graph, "rnnkit.steps", {"rnnkit.errors", "rnnkit.init"}) == {}
    assert _outside(graph, "rnnkit.engine", {"rnnkit.steps", "rnnkit.errors", "rnnkit.init"}) == {}
    assert "rnnkit.engine" in graph["rnnkit.cells.base"]  # the cells you call run on the engine


def test_the_layer_check_sees_an_upward_import() -> None:
    graph = {"rnnkit.steps.lstm": {"rnnkit.errors", "rnnkit.engine"}, "rnnkit.steps": {"rnnkit.steps.lstm"}}
    assert _outside(graph, "rnnkit.steps", {"rnnkit.errors"}) == {"rnnkit.steps.lstm": ["rnnkit.engine"]}

def test_persistence_sits_below_the_models() -> None:
    """rnnkit.checkpoint imports only itself, errors and the version: no layer, model, training or generation."""
    graph = import_graph()
    allowed = {"rnnkit.errors", "rnnkit._version"}
    for module, targets in graph.items():
        if module == "rnnkit.checkpoint" or module.startswith("rnnkit.checkpoint."):
            outside = {t for t in targets if not t.startswith("rnnkit.checkpoint") and t not in allowed}
            assert not outside, f"{module} imports {sorted(outside)}"
    generation = {t for m, ts in graph.items() if m.startswith("rnnkit.generation") for t in ts}
    assert not {t for t in generation if t.startswith("rnnkit.training")}, "generation imports training"


@pytest.mark.parametrize("statement", ["import rnnkit", "import rnnkit.checkpoint",
                                       "import rnnkit; rnnkit.load"])
def test_import_rnnkit_loads_no_training_or_generation(statement: str) -> None:
    code = (f"import sys, json; {statement}\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('rnnkit'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    loaded = json.loads(out.stdout)
    assert "rnnkit.checkpoint" in loaded and "rnnkit.models" in loaded
    heavy = [m for m in loaded if m.split(".")[:2] in (["rnnkit", "training"], ["rnnkit", "generation"])]
    assert heavy == []
