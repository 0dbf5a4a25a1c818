"""Loads a backend's named queries from its ``queries.sql``; the only reader of those files.

Internal: not covered by semver. The format is a ``-- name: <query>`` line, one description line,
then the statement; comments inside a statement stay with it.
"""

import re
from functools import cache
from importlib import resources
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: (?P<name>[a-z_]+)\s*$", re.MULTILINE)
# A ``:name`` placeholder, not the second colon of a ``::`` cast; string literals and comments
# are matched first so that a colon inside them is left alone.
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|--[^\n]*|(?<![:\w]):(?P<name>[a-z_][a-z0-9_]*)")


@cache
def load_queries(dialect: str) -> dict[str, LiteralString]:
    """Every named statement of ``backends/<dialect>/queries.sql``, by name."""
    text = resources.files(f"fastapi_equeue.backends.{dialect}").joinpath("queries.sql").read_text()
    matches = list(_NAME.finditer(text))
    queries: dict[str, LiteralString] = {}
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[match.end() : end].strip()
        lines = body.splitlines()
        if not lines or not lines[0].startswith("-- "):
            raise ValueError(f"query {match['name']!r} in {dialect} has no description line")
        statement = "\n".join(lines[1:]).strip().removesuffix(";").strip()
        if not statement:
            raise ValueError(f"query {match['name']!r} in {dialect} is empty")
        if match["name"] in queries:
            raise ValueError(f"query {match['name']!r} is defined twice in {dialect}")
        # The file is package data that ships with the code: its text is as constant as a literal.
        queries[match["name"]] = statement
    return queries


@cache
def load_migrations(dialect: str) -> tuple[tuple[str, tuple[LiteralString, ...]], ...]:
    """The migrations of ``dialect`` in order: (name, statements) pairs.

    Statements are separated by a ``;`` at the end of a line, which is how the files are written.
    """
    folder = resources.files(f"fastapi_equeue.backends.{dialect}").joinpath("migrations")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    migrations = []
    for name in names:
        text = folder.joinpath(name).read_text()
        statements = tuple(
            cast(LiteralString, chunk.strip())
            for chunk in re.split(r";\s*$", text, flags=re.MULTILINE)
            if _has_code(chunk)
        )
        migrations.append((name.removesuffix(".sql"), statements))
    return tuple(migrations)


def positional(statement: LiteralString) -> tuple[LiteralString, tuple[str, ...]]:
    """``statement`` with its ``:name`` placeholders as ``$1, $2, ...``, and the names in order.

    A name used twice keeps one number, so each value is sent once.
    """
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match["name"] is None:
            return match[0]
        if match["name"] not in names:
            names.append(match["name"])
        return f"${names.index(match['name']) + 1}"

    return _PLACEHOLDER.sub(number, statement), tuple(names)


def migration_script(dialect: str) -> str:
    """Every migration of ``dialect`` as one script, with the tracking rows it would record."""
    queries = load_queries(dialect)
    parts = [
        f"-- fastapi_equeue schema for {dialect}; apply in one transaction.",
        queries["migration_table_create"] + ";",
    ]
    for name, statements in load_migrations(dialect):
        parts.append(f"\n-- migration {name}")
        parts.extend(statement + ";" for statement in statements)
        # `name` is one of our own migration file names, never outside input.
        parts.append(f"INSERT INTO equeue_migrations (name) VALUES ('{name}');")  # noqa: S608
    return "\n".join(parts) + "\n"


def _has_code(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())
