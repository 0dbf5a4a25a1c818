"""Print the changelog's section for a release tag, after checking the tag against the package.

Usage: ``python .github/scripts/release_notes.py v0.2.0``. Exits non-zero, saying why, when the
tag is not ``v`` + ``pyproject.toml``'s version, or when ``CHANGELOG.md`` has no dated section
for that version (``## 0.2.0 (2026-12-01)``; a section still marked ``unreleased`` is refused).
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def notes(tag: str, pyproject: str, changelog: str) -> str:
    """The changelog's text for ``tag``, without its heading.

    Raises:
        ValueError: the tag, the package's version and the changelog disagree.
    """
    version = tomllib.loads(pyproject)["project"]["version"]
    if tag != f"v{version}":
        raise ValueError(f"the tag is {tag}, but pyproject.toml's version is {version}")
    heading = re.search(rf"^## {re.escape(version)} \((?P<when>[^)]*)\)$", changelog, re.M)
    if heading is None:
        raise ValueError(f"CHANGELOG.md has no section '## {version} (date)'")
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", heading["when"]):
        raise ValueError(f"CHANGELOG.md's section for {version} is dated {heading['when']!r}")
    following = re.search(r"^## ", changelog[heading.end() :], re.M)
    end = heading.end() + following.start() if following else len(changelog)
    return changelog[heading.end() : end].strip() + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        text = notes(
            argv[0], (ROOT / "pyproject.toml").read_text(), (ROOT / "CHANGELOG.md").read_text()
        )
    except ValueError as error:
        print(f"release_notes: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
