"""No module of the package can turn data into code: no pickle and its kin, no unsafe YAML
loader, no ``eval`` or ``exec``. Payloads, results and settings travel as JSON only.

Checked from each module's syntax tree, so a use is found however it is spelled (``import
pickle as p``, ``from marshal import loads``, ``importlib.import_module("dill")``), and the
checker is itself tried on a probe module that does each of these things.
"""

import ast
from pathlib import Path

import pytest

import fastapi_equeue

PACKAGE = Path(fastapi_equeue.__file__).parent

UNSAFE_MODULES = frozenset(
    {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "jsonpickle", "marshal", "shelve"}
)
"""Modules whose loading runs code chosen by whoever wrote the data."""
UNSAFE_YAML = frozenset(
    {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
)
"""PyYAML's loaders that can build arbitrary objects (or do unless given a safe Loader):
``yaml.safe_load`` is the one to use."""
UNSAFE_BUILTINS = frozenset({"eval", "exec"})


def unsafe_uses(path: Path) -> list[str]:
    """Every unsafe import or call in the module at ``path``, as ``path:line: what``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    yaml_names = set()  # the names the module binds to the yaml module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.partition(".")[0]
                if top in UNSAFE_MODULES:
                    found.append((node.lineno, f"import {alias.name}"))
                elif top == "yaml":
                    yaml_names.add(alias.asname or "yaml")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            top = node.module.partition(".")[0]
            names = {alias.name for alias in node.names}
            if top in UNSAFE_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
            elif top == "yaml" and names & UNSAFE_YAML:
                found.append((node.lineno, f"from yaml import {', '.join(sorted(names))}"))
        elif isinstance(node, ast.Call):
            found += [(node.lineno, what) for what in _unsafe_call(node)]
    # A second pass: ``import yaml as y`` may come after the function that calls ``y.load``.
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in yaml_names
            and node.func.attr in UNSAFE_YAML
        ):
            found.append((node.lineno, f"{node.func.value.id}.{node.func.attr}()"))
    return [f"{path}:{line}: {what}" for line, what in sorted(found)]


def _unsafe_call(node: ast.Call) -> list[str]:
    func = node.func
    name = func.id if isinstance(func, ast.Name) else None
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.value.id == "builtins":
            name = func.attr
        elif (func.value.id, func.attr) == ("importlib", "import_module"):
            name = "import_module"
    if name in UNSAFE_BUILTINS:
        return [f"{name}()"]
    if name in ("__import__", "import_module") and node.args:
        first = node.args[0]
        if (
            isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and first.value.partition(".")[0] in UNSAFE_MODULES
        ):
            return [f"{name}({first.value!r})"]
    return []


def package_modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_the_package_has_modules_to_check() -> None:
    assert len(package_modules()) > 20
    assert PACKAGE / "queue.py" in package_modules()


def test_no_module_deserialises_code_or_evaluates_text() -> None:
    found = [use for path in package_modules() for use in unsafe_uses(path)]

    assert found == []


@pytest.mark.parametrize(
    ("source", "reported"),
    [
        ("import pickle", "import pickle"),
        ("import cPickle", "import cPickle"),
        ("import pickle as p", "import pickle"),
        ("import os, marshal", "import marshal"),
        ("import shelve", "import shelve"),
        ("import dill.settings", "import dill.settings"),
        ("from pickle import loads", "from pickle import ..."),
        ("from _pickle import Unpickler", "from _pickle import ..."),
        ("from marshal import loads as from_bytes", "from marshal import ..."),
        ("import yaml\nyaml.load(text)", "yaml.load()"),
        ("import yaml\nyaml.load(text, Loader=yaml.Loader)", "yaml.load()"),
        ("import yaml\nyaml.unsafe_load(text)", "yaml.unsafe_load()"),
        ("import yaml\nyaml.full_load(text)", "yaml.full_load()"),
        ("def read():\n    return y.load(text)\nimport yaml as y", "y.load()"),
        ("from yaml import unsafe_load", "from yaml import unsafe_load"),
        ("from yaml import load, safe_load", "from yaml import load, safe_load"),
        ("eval('1 + 1')", "eval()"),
        ("exec(code)", "exec()"),
        ("import builtins\nbuiltins.eval(text)", "eval()"),
        ("__import__('pickle')", "__import__('pickle')"),
        ("import importlib\nimportlib.import_module('dill')", "import_module('dill')"),
    ],
)
def test_the_check_finds_an_unsafe_use(tmp_path: Path, source: str, reported: str) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source + "\n")

    found = unsafe_uses(probe)

    assert len(found) == 1
    assert found[0].endswith(f": {reported}")
    assert found[0].startswith(f"{probe}:")


def test_the_check_lets_safe_code_through(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import ast, json, yaml\n"
        "from yaml import safe_load\n"
        "json.loads(text)\n"
        "yaml.safe_load(text)\n"
        "ast.literal_eval(text)\n"
        "config.load(path)\n"  # a method named load, not yaml's
        "pickled = 'pickle'\n"
        "query.exec_many(rows)\n"
    )

    assert unsafe_uses(probe) == []
