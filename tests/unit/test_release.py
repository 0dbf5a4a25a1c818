"""The release workflow's gate: a tag publishes only the version the package and the changelog
both name, with that version's changelog section as its notes."""

import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = '[project]\nname = "x"\nversion = "1.2.0"\n'
CHANGELOG = """# Changelog

## 1.2.0 (2026-12-01)

### Added
- Something new.

## 1.1.0 (2026-11-01)

- Older things.
"""


def release_notes() -> ModuleType:
    path = ROOT / ".github" / "scripts" / "release_notes.py"
    spec = importlib.util.spec_from_file_location("release_notes", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notes_are_the_versions_section() -> None:
    notes = release_notes().notes("v1.2.0", PYPROJECT, CHANGELOG)
    assert notes == "### Added\n- Something new.\n"


@pytest.mark.parametrize(
    ("tag", "changelog", "reason"),
    [
        ("v1.1.0", CHANGELOG, "pyproject.toml's version is 1.2.0"),
        ("1.2.0", CHANGELOG, "the tag is 1.2.0"),
        ("v1.2.0", CHANGELOG.replace("2026-12-01", "unreleased"), "dated 'unreleased'"),
        ("v1.2.0", CHANGELOG.replace("## 1.2.0 (2026-12-01)", ""), "no section"),
    ],
)
def test_a_tag_that_disagrees_is_refused(tag: str, changelog: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        release_notes().notes(tag, PYPROJECT, changelog)


def test_the_changelog_has_a_section_for_the_packages_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)} \(", changelog, re.M)
