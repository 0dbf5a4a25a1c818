"""Sessions: tests (both backends), lint, typecheck, example (the demo app), bench."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = False

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite on SQLite and PostgreSQL (EQUEUE_TEST_DATABASE_URL, or a local
    server at 127.0.0.1:5432). Pass ``-- --require-postgres`` to fail instead of skipping
    PostgreSQL cases when no server is reachable."""
    session.install(".[postgres]", *_group("test"))
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, and on tests/typing, which uses the public API."""
    session.install(".[postgres]", *_group("typecheck"))
    session.run("mypy", "fastapi_equeue", "tests/typing")


@nox.session
def example(session: nox.Session) -> None:
    """Start the example app on SQLite with its workers running: http://127.0.0.1:8000/docs."""
    session.install(".", "uvicorn>=0.30")
    session.run("python", "-m", "example_app", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """fastapi_equeue against procrastinate, PgQueuer, oban and chancy on one local PostgreSQL:
    writes docs/benchmarks.md. Each library runs in its own venv under bench/.venvs (oban's
    needs python3.12). ``-- --quick`` is a smoke run; ``-- --help`` lists the options."""
    session.install("psycopg[binary]>=3.1", "matplotlib>=3.8")
    session.run("python", "bench/run.py", *session.posargs)
