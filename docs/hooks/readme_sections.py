"""MkDocs hook: guide pages that show sections of the README, so that the README stays the one
place they are written. ``<!-- readme: Heading -->`` on a page is replaced by the text under
that heading of the README (up to the next heading), with its links made relative to the
docs."""

import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"<!-- readme: (?P<heading>.+?) -->")
README = Path(__file__).resolve().parents[2] / "README.md"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """Replace each README marker with its section."""
    if "<!-- readme:" not in markdown:
        return markdown
    readme = README.read_text()
    return MARKER.sub(lambda match: _section(readme, match["heading"]), markdown)


def _section(readme: str, heading: str) -> str:
    lines = readme.splitlines()
    found = [i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(heading)}", line)]
    if not found:
        raise ValueError(f"README.md has no heading {heading!r}")
    start = found[0]
    end = start + 1
    fenced = False
    while end < len(lines):
        fenced ^= lines[end].startswith("```")
        if not fenced and re.match(r"#+ ", lines[end]):
            break
        end += 1
    return "\n".join(lines[start + 1 : end]).replace("](docs/", "](")
