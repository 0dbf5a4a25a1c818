"""Sessions: tests (both backends), lint, typecheck, audit (known vulnerabilities), validate (the
Dockerfile, compose file and workflows), docs (the site), package (the release artefacts),
example (the demo app), bench."""

import json
import shutil
import tomllib
import urllib.request
from pathlib import Path

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
def docs(session: nox.Session) -> None:
    """The docs site from docs/ (mkdocs.yml): every warning is an error (a broken link, a
    page left out of the navigation, a docstring the API reference cannot read). Into site/."""
    session.install(".", *_group("docs"))
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # the theme's notice of its successor
    session.run("mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs)


@nox.session
def package(session: nox.Session) -> None:
    """The release artefacts: build the sdist and the wheel into ``dist/``, check them with
    twine, then install the wheel in this session's fresh venv and run the example app on it,
    from a folder where the source tree cannot be imported instead: a signup's welcome email
    goes out and the dashboard and its assets are served. The release workflow publishes what
    this leaves in ``dist/``."""
    session.install(*_group("package"))
    dist, run = Path("dist").resolve(), Path(session.create_tmp()).resolve() / "run"
    for folder in (dist, run):
        shutil.rmtree(folder, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    artefacts = sorted(str(path) for path in dist.iterdir())
    session.run("twine", "check", "--strict", *artefacts)
    wheel = next(path for path in artefacts if path.endswith(".whl"))
    session.install(f"{wheel}[postgres]", "httpx")
    shutil.copytree("example_app", run / "example_app")
    session.chdir(run)
    session.run(
        "python",
        "-c",
        WHEEL_SMOKE,
        env={"DATABASE_URL": f"sqlite+aiosqlite:///{run / 'example.db'}", "EXAMPLE_FLAKINESS": "0"},
    )


WHEEL_SMOKE = """
import asyncio
import httpx
import fastapi_equeue
from example_app.main import app
from example_app.tasks import queue

assert "site-packages" in fastapi_equeue.__file__, fastapi_equeue.__file__

async def main():
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url="http://app"
    ) as http:
        signup = await http.post("/signup", json={"email": "wheel@example.com", "name": "Wheel"})
        job_id = signup.json()["welcome_job_id"]
        done = await queue.client.wait(job_id, timeout=30)
        page = await http.get("/jobs/dashboard")
        script = await http.get(page.text.split('src="')[1].split('"')[0])
    assert signup.status_code == 201, signup.text
    assert done.status == "completed", done.last_error
    assert page.status_code == 200 and script.status_code == 200, (page, script)
    print("from the installed wheel: the example ran a job and served the dashboard")

asyncio.run(main())
"""


@nox.session
def validate(session: nox.Session) -> None:
    """The shipping files, checked without a Docker engine: the Dockerfile by hadolint, the
    compose file and the GitHub workflows against the compose specification's and GitHub's
    schemas (as check-jsonschema vendors them), and the ECS task definitions as JSON."""
    session.install(*_group("validate"))
    session.run("hadolint", "Dockerfile")
    session.run("check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    workflows = sorted(str(path) for path in Path(".github/workflows").glob("*.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)
    for task in sorted(Path("deploy/aws").glob("*.json")):
        session.run("python", "-m", "json.tool", str(task), silent=True)


@nox.session
def audit(session: nox.Session) -> None:
    """pip-audit on everything the package and its tests install (every extra), against PyPI's
    advisories. A finding fails the run unless .ci/audit-waivers.toml waives it, with a reason.

    Where PyPI's per-release pages cannot be reached (a mirror that serves only project pages),
    a pin that is its project's latest release is checked against the project page's
    advisories instead, and every pin left unchecked is named: never a silent pass.
    """
    extras = ",".join(PYPROJECT["project"]["optional-dependencies"])
    session.install(f".[{extras}]", *_group("test"))
    # The installed set, pinned; the project itself is not on PyPI. Frozen before pip-audit is
    # installed, so that only what we depend on is audited.
    frozen = session.run(
        "python", "-m", "pip", "freeze", "--exclude", PYPROJECT["project"]["name"], silent=True
    )
    tmp = Path(session.create_tmp())
    requirements = tmp / "installed.txt"
    requirements.write_text(str(frozen))
    session.install(*_group("audit"))
    waived = _audit_waivers(session)
    report = tmp / "audit.json"
    # Every pin is exact: audit them as they are, without resolving or installing them again.
    session.run(
        "pip-audit",
        "--requirement",
        str(requirements),
        "--no-deps",
        "--disable-pip",
        "--progress-spinner=off",
        "--format=json",
        f"--output={report}",
        success_codes=[0, 1],
    )
    pins = dict(_pin(line) for line in str(frozen).split())
    findings, unchecked = [], []
    for dep in json.loads(report.read_text())["dependencies"]:
        name = _normalised(dep["name"])
        if "skip_reason" in dep:
            unchecked.append((name, pins[name]))
        findings += [(name, pins[name], v["id"]) for v in dep.get("vulns", [])]
    unchecked = [pin for pin in unchecked if not _latest_and_clean(pin, findings)]
    findings = [f for f in findings if f[2] not in waived]
    checked = len(pins) - len(unchecked)
    session.log(f"audit: {checked} pins checked, {len(findings)} findings not waived")
    if unchecked:
        session.warn(
            "audit: no advisories reachable from here for "
            + ", ".join(f"{name}=={version}" for name, version in unchecked)
        )
    if findings:
        session.error(
            "known vulnerabilities: "
            + ", ".join(f"{name}=={version} ({vuln})" for name, version, vuln in findings)
        )


def _pin(line: str) -> tuple[str, str]:
    name, _, version = line.partition("==")
    return _normalised(name), version


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _latest_and_clean(pin: tuple[str, str], findings: list[tuple[str, str, str]]) -> bool:
    """Whether ``pin`` is its project's latest release, checked against the advisories on the
    project's page (added to ``findings``); ``False`` when that cannot be told."""
    name, version = pin
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as page:
            project = json.load(page)
    except OSError:
        return False
    if project["info"]["version"] != version:
        return False
    findings += [(name, version, vuln["id"]) for vuln in project.get("vulnerabilities", [])]
    return True


def _audit_waivers(session: nox.Session) -> list[str]:
    """The ids of the known vulnerabilities the audit accepts; each must say why."""
    path = Path(".ci/audit-waivers.toml")
    waivers = tomllib.loads(path.read_text()).get("waiver", [])
    for waiver in waivers:
        if not str(waiver.get("id", "")).strip() or not str(waiver.get("reason", "")).strip():
            session.error(f"{path}: every waiver needs an id and a reason, got {waiver}")
    return [str(waiver["id"]) for waiver in waivers]


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
