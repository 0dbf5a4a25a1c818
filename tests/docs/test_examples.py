"""Every code sample the docs and the README show is a file in ``docs/examples/``, run here on
both backends.

Each guide example defines ``async def main(database_url: str)`` and asserts what the docs say
of it. The README's samples live in ``docs/examples/readme/``: an app, and the tests a user
would write of it, called here with the fixtures they name. A page shows an example inline,
after an ``<!-- example: path -->`` marker (relative to the page), and the text it shows must be
the file's.
"""

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
README_SAMPLES = EXAMPLES / "readme"
FILES = sorted(EXAMPLES.glob("*.py"))
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
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


def shown_on(page: Path) -> list[tuple[Path | None, str]]:
    """The Python samples a page shows: the file each names (None if it names none), and the
    text shown."""
    return [
        (page.parent / block["path"] if block["path"] else None, block["body"])
        for block in PYTHON_BLOCK.finditer(page.read_text())
    ]


def test_the_examples_are_found() -> None:
    assert len(FILES) >= 6
    assert len(shown_on(ROOT / "README.md")) >= 3


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
async def test_example_runs(path: Path, database_url: str) -> None:
    await load(path).main(database_url)


@pytest.mark.parametrize("page", PAGES, ids=[page.stem for page in PAGES])
def test_a_page_shows_its_examples_as_they_are(page: Path) -> None:
    for path, body in shown_on(page):
        assert path is not None, f"{page.name}: a Python sample that is not an example file"
        assert body == path.read_text(), f"{page.name}: {path.name} differs"


def test_every_example_is_shown_somewhere() -> None:
    shown = {path for page in PAGES for path, _ in shown_on(page)}
    assert shown == {*FILES, *README_SAMPLES.glob("*.py")}


async def test_the_readme_app_passes_the_readme_test(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    quickstart = load(README_SAMPLES / "quickstart.py")
    testing = load(README_SAMPLES / "testing_drain.py")
    await testing.test_signup_sends_the_welcome_email(app=quickstart.app, queue=quickstart.queue)


async def test_the_readme_clock_test_passes(database_url: str) -> None:
    testing = load(README_SAMPLES / "testing_clock.py")
    await testing.test_the_reminder_waits_an_hour(database_url)
