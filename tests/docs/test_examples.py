"""Every code sample the docs show is a file in ``docs/examples/``, run here on both backends.

Each example defines ``async def main(database_url: str)`` and asserts what the docs say of it.
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
FILES = sorted(EXAMPLES.glob("*.py"))


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_are_found() -> None:
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_example_runs(path: Path, database_url: str) -> None:
    await load(path).main(database_url)
