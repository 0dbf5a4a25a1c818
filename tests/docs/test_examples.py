"""Every code sample the docs show is a file in ``docs/examples/``, run here on both backends.

Each example defines ``async def main(database_url: str)`` and asserts what the docs say of it.
A guide shows an example inline, after an ``<!-- example: examples/name.py -->`` marker, and
the text it shows must be the file's.
"""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = DOCS / "examples"
FILES = sorted(EXAMPLES.glob("*.py"))
GUIDES = sorted(DOCS.glob("*.md"))
PYTHON_BLOCK = re.compile(
    r"(?:<!-- example: (?P<path>\S+) -->\n)?```python\n(?P<body>.*?)```", re.S
)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_are_found() -> None:
    assert len(FILES) >= 6


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_example_runs(path: Path, database_url: str) -> None:
    await load(path).main(database_url)


@pytest.mark.parametrize("guide", GUIDES, ids=[guide.stem for guide in GUIDES])
def test_a_guide_shows_its_examples_as_they_are(guide: Path) -> None:
    for block in PYTHON_BLOCK.finditer(guide.read_text()):
        shown = block["path"]
        assert shown is not None, f"{guide.name}: a Python sample that is not an example file"
        assert block["body"] == (DOCS / shown).read_text(), f"{guide.name}: {shown} differs"


def test_every_example_is_shown_somewhere() -> None:
    shown = {
        block["path"]
        for guide in GUIDES
        for block in PYTHON_BLOCK.finditer(guide.read_text())
        if block["path"]
    }
    assert shown == {f"examples/{path.name}" for path in FILES}
