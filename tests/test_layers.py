"""The package's layers: data flows one way, store -> history -> write | read -> plot/capacity ->
report/cli. Write and read share a rank: both sit on the history layer and neither imports
the other.

Every module is parsed (not imported) and its imports of qanalytics modules checked:
a module may import from a lower layer or from its own package, never from a higher
layer; no import of a qanalytics module hides inside a function (that is how cycles
were held together); and the module-level imports form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "qanalytics"

#: Rank of each top-level part of the package; a module imports only lower ranks or its
#: own part.
LAYERS = {
    "errors": 0,
    "_version": 0,
    "_lazy": 0,
    "_time": 1,
    "_text": 1,
    "_docstrings": 1,
    "_compat": 1,
    "_progress": 1,
    "_suggest": 4,
    "state": 2,
    "store": 3,
    "history": 4,  # the model, marks and liveness rule both sides share
    "write": 5,
    "read": 5,
    "upkeep": 6,
    "capacity": 6,
    "plot": 6,
    "export": 6,
    "monitoring": 6,
    "simulation": 7,
    "record": 7,
    "report": 7,
    "cli": 8,
    "__main__": 9,
    "_api": 9,  # the public names, loaded by qanalytics/__init__.py on first use
    "": 10,  # qanalytics/__init__.py: the public API, above everything
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The qanalytics modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "qanalytics"]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != "qanalytics":
            return []
    else:
        package = module.split(".") if _is_package(path) else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    # `from . import classic` and `from .. import report` load submodules by name.
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return subs if len(subs) == len(node.names) else [base, *subs]


#: Helpers of qanalytics/_lazy.py that import the module named by their first argument.
LAZY_HELPERS = {"lazy_module", "lazy_function"}


def _lazy_import(node: ast.AST) -> ast.Import | None:
    """``lazy_module("qanalytics.x")`` (or lazy_function) as the import it defers."""
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    arg = node.args[0]
    if name not in LAZY_HELPERS or not isinstance(arg, ast.Constant):
        return None
    if not isinstance(arg.value, str):
        return None
    return ast.Import(names=[ast.alias(name=arg.value)], lineno=node.lineno, col_offset=0)


def _imports(module: str, path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module (deferred ones too), and whether it sits inside
    a function."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            lazy = _lazy_import(child)
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            elif lazy is not None:
                found.append((lazy, in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def test_every_part_has_a_layer() -> None:
    assert {_part(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module: str) -> None:
    path = MODULES[module]
    rank = LAYERS[_part(module)]
    wrong = []
    for node, in_function in _imports(module, path):
        for target in _targets(module, path, node):
            where = f"{path.name}:{node.lineno} imports {target}"
            if in_function:
                wrong.append(f"{where} inside a function")
            elif _part(target) != _part(module) and LAYERS[_part(target)] >= rank:
                wrong.append(f"{where}, a layer at or above {_part(module) or 'qanalytics'}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {
        module: {
            target
            for node, in_function in _imports(module, path)
            if not in_function
            for target in _targets(module, path, node)
            if target in MODULES and target != module
        }
        for module, path in MODULES.items()
    }
    # A package's __init__ importing its own submodules is how packages work; an edge
    # from a submodule back to its package __init__ is what would make a cycle.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*stack[stack.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_check_catches_violations(tmp_path: Path) -> None:
    """The checker itself: a read module importing the CLI, and a hidden import."""
    bad = "from ..cli import main\n\n\ndef f():\n    from ..write import workers\n"
    path = PACKAGE / "read" / "frames.py"
    tree = ast.parse(bad)
    nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    targets = [t for n in nodes for t in _targets("qanalytics.read.frames", path, n)]
    assert "qanalytics.cli" in targets and "qanalytics.write.workers" in targets
    assert LAYERS[_part("qanalytics.cli")] > LAYERS["read"]
    scratch = tmp_path / "mod.py"
    scratch.write_text(bad)
    flags = [in_function for _node, in_function in _imports("qanalytics.read.frames", scratch)]
    assert flags == [False, True]


def test_the_check_sees_deferred_imports(tmp_path: Path) -> None:
    """A lazy_module() naming a higher layer, or one inside a function, is caught too."""
    scratch = tmp_path / "mod.py"
    scratch.write_text(
        'cli = lazy_module("qanalytics.cli")\n\n\ndef f():\n'
        '    return lazy_function("qanalytics.write.tasks", "claim")\n'
    )
    found = _imports("qanalytics.read.frames", scratch)
    assert [flag for _node, flag in found] == [False, True]
    targets = [t for node, _ in found for t in _targets("qanalytics.read.frames", scratch, node)]
    assert targets == ["qanalytics.cli", "qanalytics.write.tasks"]


def test_read_and_write_share_only_history() -> None:
    """The read side takes its vocabulary from history, never from the write side."""
    for module, path in MODULES.items():
        if _part(module) not in ("read", "write"):
            continue
        other = "write" if _part(module) == "read" else "read"
        for node, _ in _imports(module, path):
            for target in _targets(module, path, node):
                assert _part(target) != other, f"{path.name}:{node.lineno} imports {target}"


def test_history_holds_the_model() -> None:
    """The shared vocabulary lives in history: one definition of each name."""
    defined: dict[str, list[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                defined.setdefault(name, []).append(module)
    for name in ("Worker", "check_worker_id", "TaskStatus", "Outcome", "WorkerState",
                 "meta_get", "hour_of", "META_HEARTBEATS_SUMMARIZED_UNTIL",
                 "expected_intervals"):
        assert len(defined.get(name, [])) == 1, (name, defined.get(name))
        assert _part(defined[name][0]) == "history", (name, defined[name])
