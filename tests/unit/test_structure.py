"""The runtime's shape, checked from the source: one writer of attempt outcomes, and no module
reading another module's private state."""

import ast
from pathlib import Path

import fastapi_equeue

PACKAGE = Path(fastapi_equeue.__file__).parent
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields"}


def modules() -> dict[Path, ast.Module]:
    return {
        path.relative_to(PACKAGE): ast.parse(path.read_text())
        for path in sorted(PACKAGE.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def calls_of(tree: ast.Module, name: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
    ]


def test_only_the_completer_writes_attempt_outcomes() -> None:
    writers = {
        str(path): lines
        for path, tree in modules().items()
        for name in ("complete", "job_complete_many")
        if (lines := calls_of(tree, name))
    }

    # The completer hands batches to the store, which is the only caller of the backend's
    # write (and emits the events of what it wrote).
    assert writers.keys() == {"runtime/completer.py", "store.py"}, writers


def test_no_module_reads_another_modules_private_state() -> None:
    found = []
    for path, tree in modules().items():
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        } | {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") or node.attr in NAMEDTUPLE_API:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if node.attr not in defined:
                found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")

    assert found == []
